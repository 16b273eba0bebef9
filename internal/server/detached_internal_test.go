package server

import (
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
)

// detachedConn returns a session on a connection with no socket whose
// queue is never written, for benchmarks of the delivery path.
func (s *Server) detachedConn(codec protocol.Codec) *conn {
	var c *conn
	s.tr.Detached(func(tc *transport.Conn) transport.Session {
		c = &conn{tc: tc, srv: s, codec: codec}
		return c
	})
	return c
}
