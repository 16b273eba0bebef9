// Package huddlev1 is the huddle.v1 front-end at /ws: it negotiates the
// subprotocol (msgpack or JSON), turns a connection's messages into core
// operations and encodes the core's events and replies as huddle.v1
// messages. huddle.v1 is the core's own vocabulary, so the mapping is one
// to one; what this package adds is the handshake, decoding, the connect
// exchange, pings, the message rate limit and the application's hooks
// (connect, subscribe, publish; see hooks.go), and the same protocol over
// HTTP for clients without a working WebSocket (see http.go).
//
// It must not reach into another front-end, and it holds no state of its
// own beyond a connection's core.Session and, with hooks, its queue of
// hook calls and what they granted; over HTTP, the sessions by id.
package huddlev1

import (
	"cmp"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
)

// Path is the endpoint huddle.v1 is served at.
const Path = "/ws"

// Config tunes the front-end.
type Config struct {
	// Node names the node in connected messages.
	Node string
	// PingInterval is how often the server pings (connected.ping).
	PingInterval time.Duration
	// ConnectTimeout is how long a connection may take to send connect.
	ConnectTimeout time.Duration
	// Gate refuses an upgrade before the subprotocol is looked at (a
	// draining node, a foreign origin). Nil admits all.
	Gate func(r *transport.Request) error
	// Refused counts refused upgrades. Nil: not counted.
	Refused func()
	// Hooks asks the application about connects, subscribes and
	// publishes (see hooks.go and docs/hooks.md). Nil: no hooks.
	Hooks *hooks.Client
	// HookQueue bounds a connection's requests waiting for or behind a
	// hook call; beyond it a request gets error 4006. Default
	// DefaultHookQueue.
	HookQueue int
	// MaxSubscriptions bounds the streams the subscribe hook's grants of
	// one connection cover, like the core's bound on its subscriptions.
	// Default 1000.
	MaxSubscriptions int
}

// Frontend serves huddle.v1.
type Frontend struct {
	cfg     Config
	node    *core.Node
	formats [2]int // core format index by protocol.Codec
	outputs [2]*output
	keep    []string // upgrade headers kept: Authorization, and the connect hook's

	sessions sync.Map             // session id -> *httpConn: the sessions over HTTP
	tr       *transport.Transport // holds polled sessions (UseTransport)
	tag      string               // starts this node's session ids
	relayed  chan []byte          // POSTs other nodes relayed here
	polled   atomic.Int64         // polled sessions open
}

// New registers huddle.v1's formats with node and returns the front-end.
// It must be the first front-end registered: its msgpack format is the
// relay format between nodes.
func New(node *core.Node, cfg Config) *Frontend {
	f := &Frontend{cfg: cfg, node: node, tag: newNodeTag()}
	for _, codec := range []protocol.Codec{protocol.JSON, protocol.Msgpack} {
		f.formats[codec] = node.AddFormat(&core.Format{
			Name:    codec.Subprotocol(),
			Textual: codec == protocol.JSON,
			Relay:   codec == protocol.Msgpack,
			Encode:  output{codec: codec}.Encode,
		})
		f.outputs[codec] = &output{fe: f, codec: codec}
	}
	f.keep = []string{"Authorization"}
	if cfg.Hooks.Has(hooks.Connect) {
		f.keep = append(f.keep, cfg.Hooks.Headers()...)
	}
	return f
}

func (f *Frontend) maxSubs() int { return cmp.Or(f.cfg.MaxSubscriptions, 1000) }

// output encodes huddle.v1 messages in one codec. A session's Output also
// leads back to its front-end (see conn.fe), which saves a field per
// connection.
type output struct {
	fe    *Frontend
	codec protocol.Codec
}

func (o output) Encode(m protocol.Message) ([]byte, error) {
	return protocol.AppendMessage(o.codec, nil, m)
}

// conn is a huddle.v1 connection: the core session is all its state.
type conn struct {
	core.Session
}

// out returns the connection's output: its codec and front-end.
func (c *conn) out() *output {
	if h, ok := c.Output().(*hookConn); ok {
		return h.out
	}
	return c.Output().(*output)
}

var _ transport.Session = (*conn)(nil)

// Upgrade answers the upgrade request in head and starts a session on tc.
// No subprotocol means JSON, for debugging; a token may come from ?token=
// or an Authorization bearer header.
func (f *Frontend) Upgrade(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	codec := protocol.JSON
	r, _, err := transport.Upgrade(head, w, f.keep, func(r *transport.Request) (string, error) {
		if f.cfg.Gate != nil {
			if err := f.cfg.Gate(r); err != nil {
				return "", err
			}
		}
		if len(r.Offered) == 0 {
			return "", nil
		}
		for _, name := range r.Offered {
			if c, ok := protocol.CodecFor(name); ok {
				codec = c
				return c.Subprotocol(), nil
			}
		}
		return "", transport.Refuse(http.StatusBadRequest, "unsupported subprotocol "+transport.Quote(joinOffered(r.Offered))+"; offer "+protocol.SubprotocolMsgpack+" or "+protocol.SubprotocolJSON)
	})
	if err != nil {
		if f.cfg.Refused != nil {
			f.cfg.Refused()
		}
		return nil, err
	}
	c := &conn{}
	f.initConn(c, tc, r, codec)
	if codec.Binary() {
		tc.SetFraming(transport.BinaryConcat)
	} else {
		tc.SetFraming(transport.TextLines)
	}
	return c, nil
}

// initConn sets up c as a session of tc for the request r, in codec: its
// output (through the hooks when there are any) and the token the request
// carries (?token= or an Authorization bearer header).
func (f *Frontend) initConn(c *conn, tc *transport.Conn, r *transport.Request, codec protocol.Codec) {
	if f.cfg.Hooks == nil {
		c.Init(tc, f.node, f.outputs[codec], f.formats[codec])
	} else {
		h := &hookConn{c: c, out: f.outputs[codec]}
		if f.cfg.Hooks.Has(hooks.Connect) {
			u := r.Path
			if len(r.Query) > 0 {
				u += "?" + r.Query.Encode()
			}
			h.env = &hooks.ConnectRequest{URL: u, Headers: f.cfg.Hooks.CollectHeaders(r.Header), Addr: tc.RemoteIP()}
		}
		c.Init(tc, f.node, h, f.formats[codec])
	}
	token := r.Query.Get("token")
	if token == "" {
		token, _ = auth.BearerToken(r.Header.Get("Authorization"))
	}
	c.SetUpgradeToken(token)
}

func joinOffered(list []string) string {
	s := ""
	for i, p := range list {
		if i > 0 {
			s += ", "
		}
		s += p
	}
	return s
}

// Check implements transport.Session: deadlines, then a ping when due.
func (c *conn) Check(now time.Time) {
	timeout := c.out().fe.cfg.ConnectTimeout
	if h := c.hooks(); h != nil && h.connecting() {
		// The application's answer may take the hook's timeout.
		timeout += h.client().Timeout(hooks.Connect)
	}
	if c.CheckDeadlines(now, timeout) && c.PingDue(now, 0) {
		c.Send(&protocol.Ping{})
	}
}
