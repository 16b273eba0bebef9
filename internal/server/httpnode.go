package server

import (
	"context"
	"fmt"
	"time"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/httpapi"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// httpNode is the server as the HTTP API sees it (httpapi.Node).
type httpNode struct{ s *Server }

var _ httpapi.Node = httpNode{}

func (n httpNode) PublishBatch(ctx context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error) {
	return n.s.node.PublishBatch(ctx, streams, pubs)
}

func (n httpNode) Deliverable(stream string, data []byte) error {
	return n.s.node.Deliverable(stream, data)
}

func (n httpNode) ReadHistory(ctx context.Context, stream string, q storage.Query) (storage.Result, error) {
	return n.s.node.ReadHistory(ctx, stream, q)
}

func (n httpNode) WirePubs(stream, epoch string, pubs []storage.Publication, snap bool) []protocol.Pub {
	return core.WirePubs(stream, epoch, pubs, snap)
}

func (n httpNode) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	return n.s.node.Members(ctx, stream)
}

func (n httpNode) DisconnectUser(user string) int {
	k := 0
	for _, tc := range n.s.tr.Conns(nil) {
		c, ok := tc.Session().(session)
		if !ok {
			continue
		}
		if id := c.Ident(); id != nil && id.User == user {
			c.CloseWith(protocol.CodeNormal, "disconnected by the server", false)
			k++
		}
	}
	return k
}

func (n httpNode) Stats() httpapi.Stats {
	s := n.s
	st := httpapi.Stats{
		Node:           s.cfg.Node,
		Connections:    s.tr.Count(),
		Clients:        s.node.Metrics().Connected.Load(),
		WhispersCached: s.node.WhispersCached(),
		Draining:       s.draining.Load(),
	}
	st.Streams, st.Subscriptions = s.node.Stats()
	for _, tc := range s.tr.Conns(nil) {
		tc.Lock()
		st.QueuedBytesMax = max(st.QueuedBytesMax, tc.QueuedLocked())
		tc.Unlock()
	}
	return st
}

func (n httpNode) Draining() bool { return n.s.draining.Load() }

func (n httpNode) HistoryOutlivesNode() bool { return n.s.node.Relaying() }

func (n httpNode) Ready(ctx context.Context) error {
	if g := n.s.rpc; g != nil {
		if down, since, err := g.Health(); down {
			return fmt.Errorf("the application backend (--rpc-url) has not answered since %s: %w", since.UTC().Format(time.RFC3339), err)
		}
	}
	if n.s.check == nil {
		return nil
	}
	return n.s.check(ctx)
}
