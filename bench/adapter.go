package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
)

// Adapter speaks one server's wire protocol. Scenarios use only Adapter and
// Conn, so the same scenarios drive any server that has the features they
// need (a server without presence simply cannot run the presence
// scenario: its Conn returns ErrUnsupported).
//
// Payloads cross the seam as opaque bytes (a stamp, see AppendStamp): the
// adapter wraps them in its protocol's message format on the way out and
// hands back the same bytes on the way in.
type Adapter interface {
	// Name is the adapter's registry name.
	Name() string
	// Dial opens a connection and authenticates as o.User. h receives
	// everything the server sends, from the connection's reader goroutine.
	Dial(ctx context.Context, o DialOptions, h Handler) (Conn, error)
}

// Conn is one client connection.
type Conn interface {
	// Subscribe subscribes to stream and waits for the server to confirm.
	Subscribe(ctx context.Context, stream string, o SubOptions) error
	// Publish sends data to every subscriber of stream. It does not wait for
	// the server's acknowledgement.
	Publish(stream string, data []byte) error
	// Whisper sends an ephemeral event to the stream's other subscribers.
	Whisper(stream, ev string, data []byte) error
	// Join enters the stream's presence with state; Leave leaves it.
	Join(stream string, state []byte) error
	Leave(stream string) error
	// Pause stops reading from the socket (true) or resumes (false): a slow
	// consumer. What the server sends meanwhile waits in socket buffers and
	// the server's queue.
	Pause(paused bool)
	// Close closes the connection without a closing handshake.
	Close() error
	// Done is closed once the connection has ended.
	Done() <-chan struct{}
}

// ErrUnsupported is returned by a Conn for an operation its protocol lacks.
var ErrUnsupported = errors.New("bench: not supported by this protocol adapter")

// DialOptions say who connects and from where.
type DialOptions struct {
	// User is the identity to authenticate as.
	User string
	// Local is the source address; nil lets the system choose.
	Local net.IP
	// RecvBuf sets SO_RCVBUF in bytes before connecting; 0 keeps the
	// system default. Slow consumers use a small one.
	RecvBuf int
}

// SubOptions modify a subscription.
type SubOptions struct {
	// Presence asks for the stream's presence diffs.
	Presence bool
	// Join, when not nil, enters presence at once with this state (opaque
	// bytes, handed back in the Join events of others).
	Join []byte
	// Recover, when not nil, asks for the publications after this position
	// (delivered as EventPub with Recovered set, after the EventSubscribed
	// that says whether they could all be recovered).
	Recover *Position
}

// Position is a place in a stream: its epoch and an offset in it.
type Position struct {
	Epoch  string
	Offset uint64
}

// EventKind says what an Event is.
type EventKind uint8

// Kinds of events a connection delivers.
const (
	EventPub        EventKind = iota + 1 // a publication: Stream, Data
	EventWhisper                         // a whisper: Stream, Name (its event name), Data
	EventJoin                            // a member joined: Stream, User, Client, Data (its state)
	EventLeave                           // a member left: Stream, User, Client
	EventError                           // an error reply: Code
	EventClosed                          // the connection ended: Code (0: no close code)
	EventSubscribed                      // a subscription was confirmed: Stream, Epoch, Offset (its top), Recovered
)

// Event is one thing the server sent. Its byte slices are valid only during
// the Handler call.
type Event struct {
	Kind   EventKind
	At     int64 // receipt time, unix nanoseconds
	Stream []byte
	Name   []byte
	User   []byte
	Client []byte
	Data   []byte
	Code   int
	// Offset and Epoch place a publication in its stream (for
	// EventSubscribed: the stream's top when it subscribed).
	Offset uint64
	Epoch  []byte
	// Recovered marks a publication that came in a subscription's reply
	// (missed while away); for EventSubscribed, that a recovery asked for
	// got every missed publication.
	Recovered bool
}

// Handler receives a connection's events, one at a time, from its reader
// goroutine. It must not block.
type Handler func(e *Event)

// AdapterConfig selects and configures an adapter; it travels to worker
// processes as JSON.
type AdapterConfig struct {
	// Name is the adapter: "huddle" (the default), "cable" (Action
	// Cable's $pubsub channel, as anycable-go serves it) or "sse" (one
	// stream per GET /events response; publications go through the
	// broadcast endpoint, as with cable).
	Name string `json:"name"`
	// URL is the server's WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
	URL string `json:"url"`
	// Secret signs client tokens (HS256) where the protocol uses them.
	Secret string `json:"secret,omitempty"`
	// Codec is the wire format where the protocol has several: for
	// Huddle "msgpack" (the default) or "json"; for cable "ext-json"
	// (actioncable-v1-ext-json, the default) or "json"
	// (actioncable-v1-json).
	Codec string `json:"codec,omitempty"`
	// BroadcastURL is where the cable adapter POSTs publications; empty:
	// the WebSocket URL's origin + /_broadcast.
	BroadcastURL string `json:"broadcast_url,omitempty"`
	// BroadcastKey, when set, is sent with each publication as
	// "Authorization: Bearer <key>" (anycable-go's --broadcast_key).
	BroadcastKey string `json:"broadcast_key,omitempty"`
	// Channel, for the cable adapter, is an application channel to
	// subscribe through instead of $pubsub: the identifier becomes
	// {"channel":Channel,"stream":S}, which the server hands to its RPC
	// backend (see RPCBackend). Empty: $pubsub.
	Channel string `json:"channel,omitempty"`
	// Identity, for the cable adapter, is how a connection tells an RPC
	// backend who it is: "cookie" sends "Cookie: bench_user=<user>",
	// "query" adds ?bench_user=<user> to the URL; empty sends nothing.
	Identity string `json:"identity,omitempty"`
}

// adapters holds every adapter by name.
var adapters = map[string]func(AdapterConfig) (Adapter, error){
	"huddle": newHuddleAdapter,
	"cable":  newCableAdapter,
	"sse":    newSSEAdapter,
}

// NewAdapter returns the adapter cfg names.
func NewAdapter(cfg AdapterConfig) (Adapter, error) {
	name := cfg.Name
	if name == "" {
		name = "huddle"
	}
	f, ok := adapters[name]
	if !ok {
		return nil, fmt.Errorf("bench: unknown adapter %q (have: %s)", name, strings.Join(AdapterNames(), ", "))
	}
	return f(cfg)
}

// AdapterNames lists the registered adapters.
func AdapterNames() []string {
	var out []string
	for n := range adapters {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
