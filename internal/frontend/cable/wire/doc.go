// Package wire is the codec of the Action Cable protocol family spoken at
// /cable: Rails' actioncable-v1-json, AnyCable's extended
// actioncable-v1-ext-json, and their msgpack twins. It also owns the two
// credentials that travel inside that protocol: signed stream names (Rails'
// MessageVerifier format, as Turbo and AnyCable sign them) and "jid" JWT
// connection identification.
//
// The package turns bytes into values and values into bytes, nothing more. It
// knows nothing of connections, subscriptions, streams, brokers or the server:
// it does no I/O, keeps no state, starts no goroutines, reads no clock except
// where a caller passes one in, and never decides what to answer. Callers hand
// it whole WebSocket message payloads and get a Command back, or append server
// messages to their own buffers.
//
// # Protocol flow
//
// The client picks a dialect with Sec-WebSocket-Protocol (Negotiate). The
// server opens with welcome (ext dialects add sid, and restored/restored_ids
// after a session restore) or with disconnect, then pings every few seconds
// with the unix time. The client subscribes with an identifier, itself a JSON
// string such as {"channel":"$pubsub","stream_name":"room-1"}, that every
// reply must echo byte for byte; the server answers confirm_subscription or
// reject_subscription. Broadcasts arrive as {"identifier":I,"message":M}, and
// in ext dialects with "stream_id", "epoch" and "offset" so that the client
// can ask for what it missed with the history command (answered by the
// missed messages, then confirm_history, or by reject_history). Ext clients
// also whisper (a transient message to the other subscribers), join and leave
// a presence set, ask for presence info, and may send pong.
//
// # Broadcast frames
//
// A publication is encoded once per dialect into a Body and shared by every
// subscriber; each subscription computes its Prefix once, at subscribe. A
// frame is the prefix followed by the body (AppendFrame, or Prefix.For for a
// vectored write). In msgpack dialects the map header that opens the prefix
// must count the body's entries too, so a Prefix holds one variant per body
// shape and Prefix.For picks the one matching the body.
//
// # Payloads
//
// Application payloads (broadcast data, whisper data, presence info, RPC
// transmissions) are JSON. Msgpack dialects get them converted to msgpack
// values: integers that fit 64 bits stay exact, other numbers become float64,
// object key order is kept. Client msgpack commands are converted to JSON on
// the way in, so callers see one representation whatever the dialect.
package wire
