package server

import (
	"io"
	"net/http"
	"strings"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/frontend/cable"
	"github.com/huddle-rt/huddle/internal/frontend/huddlev1"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
)

// session is what the node asks of every front-end's connections: a
// disconnect (a drain, /api/disconnect) and the identity.
type session interface {
	transport.Session
	CloseWith(code protocol.Code, reason string, reconnect bool)
	Ident() *auth.Identity
}

// UpgradePath implements transport.Handler: the WebSocket endpoints, and
// the server-sent events that the transport holds like them.
func (s *Server) UpgradePath(path string) bool {
	path = strings.TrimSuffix(path, "/")
	return path == huddlev1.Path || path == cable.Path || path == cable.EventsPath || path == huddlev1.EventsPath
}

// Upgrade implements transport.Handler: the path picks the front-end.
func (s *Server) Upgrade(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	switch strings.TrimSuffix(transport.RequestPath(head), "/") {
	case cable.Path:
		return s.cable.Upgrade(tc, head, w)
	case cable.EventsPath:
		return s.cable.ServeEvents(tc, head, w)
	case huddlev1.EventsPath:
		return s.huddle.ServeEvents(tc, head, w)
	}
	return s.huddle.Upgrade(tc, head, w)
}

// gate refuses upgrades every front-end refuses: while draining (503, so
// clients go elsewhere) and from a page of a foreign origin (403). Browsers
// always send Origin on a WebSocket upgrade and let any page open one to
// any host, so this is the only place a page of a foreign site can be told
// no. Clients that are not browsers send none and are not cross-site
// requests.
func (s *Server) gate(r *transport.Request) error {
	if s.draining.Load() {
		return transport.Refuse(http.StatusServiceUnavailable, "server is draining")
	}
	if len(r.Origins) > 1 || len(r.Origins) == 1 && !originAllowed(r.Origins[0], r.Host, s.cfg.AllowedOrigins) {
		s.log.Debug("websocket upgrade refused: origin not allowed", "origin", strings.Join(r.Origins, ", "), "host", r.Host)
		return transport.Refuse(http.StatusForbidden, "origin "+transport.Quote(strings.Join(r.Origins, ", "))+" is not allowed (see --allowed-origins)")
	}
	return nil
}
