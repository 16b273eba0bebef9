// Package huddlev1 is the huddle.v1 front-end at /ws: it negotiates the
// subprotocol (msgpack or JSON), turns a connection's messages into core
// operations and encodes the core's events and replies as huddle.v1
// messages. huddle.v1 is the core's own vocabulary, so the mapping is one
// to one; what this package adds is the handshake, decoding, the connect
// exchange, pings and the message rate limit.
//
// It must not reach into another front-end, and it holds no state of its
// own beyond a connection's core.Session.
package huddlev1

import (
	"io"
	"net/http"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
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
}

// Frontend serves huddle.v1.
type Frontend struct {
	cfg     Config
	node    *core.Node
	formats [2]int // core format index by protocol.Codec
	outputs [2]*output
}

// New registers huddle.v1's formats with node and returns the front-end.
// It must be the first front-end registered: its msgpack format is the
// relay format between nodes.
func New(node *core.Node, cfg Config) *Frontend {
	f := &Frontend{cfg: cfg, node: node}
	for _, codec := range []protocol.Codec{protocol.JSON, protocol.Msgpack} {
		f.formats[codec] = node.AddFormat(&core.Format{
			Name:    codec.Subprotocol(),
			Textual: codec == protocol.JSON,
			Relay:   codec == protocol.Msgpack,
			Encode:  output{codec: codec}.Encode,
		})
		f.outputs[codec] = &output{fe: f, codec: codec}
	}
	return f
}

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
func (c *conn) out() *output { return c.Output().(*output) }

var _ transport.Session = (*conn)(nil)

// Upgrade answers the upgrade request in head and starts a session on tc.
// No subprotocol means JSON, for debugging; a token may come from ?token=
// or an Authorization bearer header.
func (f *Frontend) Upgrade(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	codec := protocol.JSON
	r, _, err := transport.Upgrade(head, w, []string{"Authorization"}, func(r *transport.Request) (string, error) {
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
	c.Init(tc, f.node, f.outputs[codec], f.formats[codec])
	token := r.Query.Get("token")
	if token == "" {
		token, _ = auth.BearerToken(r.Header.Get("Authorization"))
	}
	c.SetUpgradeToken(token)
	if codec.Binary() {
		tc.SetFraming(transport.BinaryConcat)
	} else {
		tc.SetFraming(transport.TextLines)
	}
	return c, nil
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
	if c.CheckDeadlines(now, c.out().fe.cfg.ConnectTimeout) && c.PingDue(now, 0) {
		c.Send(&protocol.Ping{})
	}
}
