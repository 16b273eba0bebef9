package core

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// testNode is a node with huddle.v1's two formats (JSON at 0, msgpack at
// 1, as the huddlev1 front-end registers them) and a transport whose
// connections have no socket.
type testNode struct {
	*Node
	tr *transport.Transport
}

// codecOutput encodes replies as huddle.v1 in one codec.
type codecOutput protocol.Codec

func (o codecOutput) Encode(m protocol.Message) ([]byte, error) {
	return protocol.AppendMessage(protocol.Codec(o), nil, m)
}

func newTestNode(tb testing.TB, cfg Config, a *auth.Authenticator) *testNode {
	tb.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 4 << 20
	}
	if cfg.MaxSubscriptions == 0 {
		cfg.MaxSubscriptions = 1000
	}
	cfg.Whisper = cfg.Whisper.WithDefaults()
	cfg.Presence = presence.Config{}.WithDefaults()
	n, err := New(cfg, Deps{Auth: a})
	if err != nil {
		tb.Fatal(err)
	}
	for _, codec := range []protocol.Codec{protocol.JSON, protocol.Msgpack} {
		n.AddFormat(&Format{Name: codec.Subprotocol(), Textual: codec == protocol.JSON, Relay: codec == protocol.Msgpack, Encode: codecOutput(codec).Encode})
	}
	tr, err := transport.New(transport.Config{MaxQueue: cfg.MaxQueue, Workers: 1, Logger: cfg.Logger}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		tr.Close()
		n.Close()
	})
	return &testNode{Node: n, tr: tr}
}

// detached returns a session on a connection with no socket whose queue is
// never written, for benchmarks of the delivery path.
func (n *testNode) detached(codec protocol.Codec) *Session {
	var c *Session
	n.tr.Detached(func(tc *transport.Conn) transport.Session {
		c = &Session{}
		c.Init(tc, n.Node, codecOutput(codec), int(codec))
		return sessionOnly{c}
	})
	return c
}

// sessionOnly completes a bare Session as a transport.Session.
type sessionOnly struct{ *Session }

func (sessionOnly) OnMessage([]byte)      {}
func (s sessionOnly) Check(now time.Time) {}
