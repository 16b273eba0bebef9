package server

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
)

// wsPath is the huddle.v1 endpoint.
const wsPath = "/ws"

// upgradeHead answers a WebSocket upgrade request (head is its request line
// and headers) by writing the response to w. It picks the codec from the
// offered subprotocols and takes a token from ?token= or Authorization. On
// error the refusal (HTTP 400, 403, 503...) has been written.
func (s *Server) upgradeHead(head []byte, w io.Writer) (codec protocol.Codec, token string, err error) {
	codec = protocol.JSON // no subprotocol offered: JSON, for debugging
	var (
		offered     bool
		chosen      bool
		offeredList string
		host        string
		origins     []string
	)
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			if s.draining.Load() {
				return ws.RejectConnectionError(ws.RejectionStatus(http.StatusServiceUnavailable), ws.RejectionReason("server is draining"))
			}
			if _, q, ok := bytes.Cut(uri, []byte("?")); ok {
				if v, err := url.ParseQuery(string(q)); err == nil {
					token = v.Get("token")
				}
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			offered = true
			offeredList = string(v)
			for _, name := range strings.Split(string(v), ",") {
				if c, ok := protocol.CodecFor(strings.TrimSpace(name)); ok {
					codec, chosen = c, true
					return c.Subprotocol(), true
				}
			}
			return "", true
		},
		OnHost: func(h []byte) error {
			host = string(h)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			// gobwas canonicalizes keys, so "origin" arrives as "Origin".
			switch string(key) {
			case "Authorization":
				if t, ok := auth.BearerToken(string(value)); ok && token == "" {
					token = t
				}
			case "Origin":
				origins = append(origins, string(value))
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			// Browsers always send Origin on a WebSocket upgrade and let
			// any page open one to any host, so this is the only place a
			// page of a foreign site can be told no. Clients that are not
			// browsers send none and are not cross-site requests.
			if len(origins) > 1 || len(origins) == 1 && !originAllowed(origins[0], host, s.cfg.AllowedOrigins) {
				s.log.Debug("websocket upgrade refused: origin not allowed", "origin", strings.Join(origins, ", "), "host", host)
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusForbidden),
					ws.RejectionReason("origin "+strconvQuote(strings.Join(origins, ", "))+" is not allowed (see --allowed-origins)"),
				)
			}
			if offered && !chosen {
				return nil, ws.RejectConnectionError(
					ws.RejectionStatus(http.StatusBadRequest),
					ws.RejectionReason("unsupported subprotocol "+strconvQuote(offeredList)+"; offer "+protocol.SubprotocolMsgpack+" or "+protocol.SubprotocolJSON),
				)
			}
			return nil, nil
		},
	}
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), w}
	if _, err := u.Upgrade(rw); err != nil {
		s.metrics.handshakeFailures.Add(1)
		return codec, "", err
	}
	return codec, token, nil
}

func strconvQuote(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return `"` + strings.ReplaceAll(s, `"`, `'`) + `"`
}
