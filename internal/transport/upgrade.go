package transport

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gobwas/ws"
)

// Request is what an upgrade request says, for a Handler to decide on.
type Request struct {
	Path    string
	Query   url.Values
	Host    string
	Origins []string // every Origin header (browsers send one)
	Offered []string // the subprotocols offered, in the client's order
	Header  http.Header
}

// Refusal is an upgrade refused with an HTTP status and a reason.
type Refusal struct {
	Status int
	Reason string
}

func (r *Refusal) Error() string { return r.Reason }

// Refuse returns a refusal for Accept to return.
func Refuse(status int, reason string) error { return &Refusal{Status: status, Reason: reason} }

// Upgrade answers a WebSocket upgrade request (head is its request line and
// headers) by writing the response to w. keep names the headers to collect
// into Request.Header (canonical form, "Authorization", or a prefix ending
// in '*', "X-*"; none may be empty); accept decides on
// the request and returns the subprotocol to answer ("" for none) or a
// *Refusal, written as the HTTP response. On error the refusal has been
// written.
func Upgrade(head []byte, w io.Writer, keep []string, accept func(r *Request) (string, error)) (*Request, string, error) {
	r := &Request{Header: http.Header{}}
	var chosen string
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			path, q, _ := bytes.Cut(uri, []byte("?"))
			r.Path = string(path)
			if len(q) > 0 {
				if v, err := url.ParseQuery(string(q)); err == nil {
					r.Query = v
				}
			}
			return nil
		},
		ProtocolCustom: func(v []byte) (string, bool) {
			for _, name := range strings.Split(string(v), ",") {
				if name = strings.TrimSpace(name); name != "" {
					r.Offered = append(r.Offered, name)
				}
			}
			return "", true // chosen in OnBeforeUpgrade, once every header is in
		},
		OnHost: func(h []byte) error {
			r.Host = string(h)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			// gobwas canonicalizes keys, so "origin" arrives as "Origin".
			k := string(key)
			if k == "Origin" {
				r.Origins = append(r.Origins, string(value))
				return nil
			}
			for _, name := range keep {
				if k == name || name[len(name)-1] == '*' && strings.HasPrefix(k, name[:len(name)-1]) {
					r.Header.Add(k, string(value))
					break
				}
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if r.Query == nil {
				r.Query = url.Values{}
			}
			p, err := accept(r)
			if err != nil {
				status, reason := http.StatusBadRequest, err.Error()
				if rf, ok := err.(*Refusal); ok {
					status = rf.Status
				}
				return nil, ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
			}
			chosen = p
			if p == "" {
				return nil, nil
			}
			return ws.HandshakeHeaderHTTP(http.Header{"Sec-Websocket-Protocol": []string{p}}), nil
		},
	}
	rw := struct {
		io.Reader
		io.Writer
	}{bytes.NewReader(head), w}
	if _, err := u.Upgrade(rw); err != nil {
		return r, "", err
	}
	return r, chosen, nil
}

// Quote quotes s for a refusal's reason, cut to 100 bytes.
func Quote(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return `"` + strings.ReplaceAll(s, `"`, `'`) + `"`
}
