package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Message types the server sends ("type").
const (
	typeWelcome    = "welcome"
	typePing       = "ping"
	typeDisconnect = "disconnect"
	typePresence   = "presence"
)

// ReplyType is the type of a server reply about one subscription.
type ReplyType string

// The replies. History replies are an extension: AppendReply writes nothing
// for them in plain dialects.
const (
	ConfirmSubscription ReplyType = "confirm_subscription"
	RejectSubscription  ReplyType = "reject_subscription"
	ConfirmHistory      ReplyType = "confirm_history"
	RejectHistory       ReplyType = "reject_history"
)

// ExtOnly reports whether t exists only in ext dialects.
func (t ReplyType) ExtOnly() bool { return t == ConfirmHistory || t == RejectHistory }

// Disconnect reasons that clients know. @anycable/core fetches a new token
// and reconnects on ReasonTokenExpired.
const (
	ReasonUnauthorized  = "unauthorized"
	ReasonServerRestart = "server_restart"
	ReasonRemote        = "remote"
	ReasonTokenExpired  = "token_expired"
	ReasonIdleTimeout   = "idle_timeout"
	ReasonNoPong        = "no_pong"
)

// Welcome is the server's first message on an accepted connection.
type Welcome struct {
	// SID is the session id a client presents (?sid=) to restore the session
	// after a reconnect. Ext dialects only; omitted when empty.
	SID string
	// Restored reports that this connection restored a previous session,
	// whose subscriptions are RestoredIDs. Ext dialects only.
	Restored    bool
	RestoredIDs []string
}

// AppendWelcome appends a welcome message. Plain dialects get only the type:
// Rails' client knows nothing of sessions.
func AppendWelcome(dst []byte, d Dialect, w Welcome) []byte {
	n := 1
	if d.Ext() {
		if w.SID != "" {
			n++
		}
		if w.Restored {
			n += 2
		}
	}
	e := enc{d: d, b: dst}
	e.open(n)
	e.key("type")
	e.str(typeWelcome)
	if n > 1 {
		if w.SID != "" {
			e.key("sid")
			e.str(w.SID)
		}
		if w.Restored {
			e.key("restored")
			e.bool(true)
			e.key("restored_ids")
			e.strs(w.RestoredIDs)
		}
	}
	return e.close()
}

// AppendPing appends a ping carrying the server's unix time in seconds.
func AppendPing(dst []byte, d Dialect, unix int64) []byte {
	e := enc{d: d, b: dst}
	e.open(2)
	e.key("type")
	e.str(typePing)
	e.key("message")
	e.int(unix)
	return e.close()
}

// AppendReply appends a reply of type t about the subscription identifier.
// For an ExtOnly type and a plain dialect it appends nothing and returns dst
// unchanged: Rails' client has no history.
func AppendReply(dst []byte, d Dialect, t ReplyType, identifier string) []byte {
	if t.ExtOnly() && !d.Ext() {
		return dst
	}
	e := enc{d: d, b: dst}
	e.open(2)
	e.key("type")
	e.str(string(t))
	e.key("identifier")
	e.str(identifier)
	return e.close()
}

// AppendDisconnect appends a disconnect message; reconnect tells the client
// whether to try again.
func AppendDisconnect(dst []byte, d Dialect, reason string, reconnect bool) []byte {
	e := enc{d: d, b: dst}
	e.open(3)
	e.key("type")
	e.str(typeDisconnect)
	e.key("reason")
	e.str(reason)
	e.key("reconnect")
	e.bool(reconnect)
	return e.close()
}

// PresenceRecord is one member of a presence set.
type PresenceRecord struct {
	ID   string
	Info []byte // JSON; nil omits it
}

// AppendPresenceInfo appends the answer to a presence command:
// {"type":"presence","identifier":I,"message":{"type":"info","total":N,
// "records":[{"id":..,"info":..}]}}. records nil omits "records" (the client
// asked for no records). Presence is an extension: plain dialects get
// nothing and dst is returned unchanged.
func AppendPresenceInfo(dst []byte, d Dialect, identifier string, total int, records []PresenceRecord) []byte {
	if !d.Ext() {
		return dst
	}
	e := presenceReply(d, dst, identifier)
	n := 2
	if records != nil {
		n++
	}
	e.open(n)
	e.key("type")
	e.str("info")
	e.key("total")
	e.int(int64(total))
	if records != nil {
		e.key("records")
		e.array(len(records))
		for i, r := range records {
			e.elem(i)
			m := 1
			if r.Info != nil {
				m++
			}
			e.open(m)
			e.key("id")
			e.str(r.ID)
			if r.Info != nil {
				e.key("info")
				e.json(r.Info)
			}
			e.close()
		}
		e.closeArray()
	}
	e.close()
	return e.close()
}

// presenceReply starts a presence reply: its type and identifier, and the
// "message" key, whose value the caller writes before closing.
func presenceReply(d Dialect, dst []byte, identifier string) enc {
	e := enc{d: d, b: dst}
	e.open(3)
	e.key("type")
	e.str(typePresence)
	e.key("identifier")
	e.str(identifier)
	e.key("message")
	return e
}

// AppendPresenceError appends the answer to a presence command the server
// could not serve, {"type":"presence","identifier":I,"message":{"type":"error"}},
// which @anycable/core turns into a rejected promise. Plain dialects get
// nothing.
func AppendPresenceError(dst []byte, d Dialect, identifier string) []byte {
	if !d.Ext() {
		return dst
	}
	e := presenceReply(d, dst, identifier)
	e.open(1)
	e.key("type")
	e.str("error")
	e.close()
	return e.close()
}

// AppendTransmission appends a complete message given as JSON, such as a
// transmission from the application backend, in dialect d. JSON dialects get
// the bytes as they are; msgpack dialects get them converted. It fails only
// when msg is not valid JSON.
func AppendTransmission(dst []byte, d Dialect, msg []byte) ([]byte, error) {
	if !d.Msgpack() {
		if !json.Valid(msg) {
			return dst, errInvalidJSON
		}
		return append(dst, msg...), nil
	}
	return appendMsgpackFromJSON(dst, msg)
}

// enc writes one message in either family. Msgpack needs every container's
// size up front, so open and array take the count of what follows; JSON
// tracks separators.
type enc struct {
	d   Dialect
	b   []byte
	sep bool // JSON: the next key needs a comma before it
}

func (e *enc) open(n int) {
	if e.d.Msgpack() {
		e.b = appendMsgpackMapHeader(e.b, n)
		return
	}
	e.b = append(e.b, '{')
	e.sep = false
}

func (e *enc) key(k string) {
	if e.d.Msgpack() {
		e.b = appendMsgpackString(e.b, k)
		return
	}
	if e.sep {
		e.b = append(e.b, ',')
	}
	e.b = appendJSONKey(e.b, k)
	e.sep = true
}

func (e *enc) close() []byte {
	if !e.d.Msgpack() {
		e.b = append(e.b, '}')
		e.sep = true // a closed object is a value: what follows is separated
	}
	return e.b
}

func (e *enc) array(n int) {
	if e.d.Msgpack() {
		e.b = appendMsgpackArrayHeader(e.b, n)
		return
	}
	e.b = append(e.b, '[')
}

// elem starts the i-th element of an array.
func (e *enc) elem(i int) {
	if !e.d.Msgpack() && i > 0 {
		e.b = append(e.b, ',')
	}
}

func (e *enc) closeArray() {
	if !e.d.Msgpack() {
		e.b = append(e.b, ']')
		e.sep = true
	}
}

func (e *enc) str(s string) {
	if e.d.Msgpack() {
		e.b = appendMsgpackString(e.b, s)
		return
	}
	e.b = appendJSONString(e.b, s)
}

func (e *enc) strs(ss []string) {
	e.array(len(ss))
	for i, s := range ss {
		e.elem(i)
		e.str(s)
	}
	e.closeArray()
}

func (e *enc) int(v int64) {
	if e.d.Msgpack() {
		e.b = appendMsgpackInt(e.b, v)
		return
	}
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *enc) uint(v uint64) {
	if e.d.Msgpack() {
		e.b = appendMsgpackUint(e.b, v)
		return
	}
	e.b = strconv.AppendUint(e.b, v, 10)
}

func (e *enc) bool(v bool) {
	if e.d.Msgpack() {
		e.b = appendMsgpackBool(e.b, v)
		return
	}
	if v {
		e.b = append(e.b, "true"...)
	} else {
		e.b = append(e.b, "false"...)
	}
}

// json writes an application payload. Bytes that are not one valid JSON
// value are sent as a string, as anycable-go does with broadcast data.
func (e *enc) json(raw []byte) {
	if e.d.Msgpack() {
		if b, err := appendMsgpackFromJSON(e.b, raw); err == nil {
			e.b = b
		} else {
			e.b = appendMsgpackString(e.b, string(raw))
		}
		return
	}
	if json.Valid(raw) {
		e.b = append(e.b, bytes.TrimSpace(raw)...)
	} else {
		e.b = appendJSONString(e.b, string(raw))
	}
}
