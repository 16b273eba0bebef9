package server

import (
	"context"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/httpapi"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// httpNode is the server as the HTTP API sees it (httpapi.Node).
type httpNode struct{ s *Server }

var _ httpapi.Node = httpNode{}

func (n httpNode) PublishBatch(ctx context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error) {
	return n.s.publishBatch(ctx, streams, pubs)
}

func (n httpNode) Deliverable(stream string, data []byte) error {
	return n.s.deliverable(stream, "", "", data)
}

func (n httpNode) ReadHistory(ctx context.Context, stream string, q storage.Query) (storage.Result, error) {
	return n.s.history.Read(ctx, stream, q)
}

func (n httpNode) WirePubs(stream, epoch string, pubs []storage.Publication) []protocol.Pub {
	return wirePubs(stream, epoch, pubs)
}

func (n httpNode) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	return n.s.presence.Members(ctx, stream)
}

func (n httpNode) DisconnectUser(user string) int {
	k := 0
	for _, tc := range n.s.tr.Conns(nil) {
		c, ok := tc.Session().(*conn)
		if !ok {
			continue
		}
		if id := c.ident.Load(); id != nil && id.User == user {
			c.closeWith(protocol.CodeNormal, "disconnected by the server", false)
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
		Clients:        s.metrics.connected.Load(),
		WhispersCached: s.whispers.Len(),
		Draining:       s.draining.Load(),
	}
	st.Streams, st.Subscriptions = s.hub.Stats()
	for _, tc := range s.tr.Conns(nil) {
		tc.Lock()
		st.QueuedBytesMax = max(st.QueuedBytesMax, tc.QueuedLocked())
		tc.Unlock()
	}
	return st
}

func (n httpNode) Draining() bool { return n.s.draining.Load() }

func (n httpNode) HistoryOutlivesNode() bool { return n.s.relaying }

func (n httpNode) Ready(ctx context.Context) error {
	if n.s.check == nil {
		return nil
	}
	return n.s.check(ctx)
}
