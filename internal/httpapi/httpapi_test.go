package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/httpapi"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// node is an httpapi.Node whose answers a test sets; the server's own
// tests run the API against the real node.
type node struct {
	draining, outlives bool
	ready              error
	published          []string
}

var _ httpapi.Node = (*node)(nil)

func (n *node) PublishBatch(_ context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error) {
	n.published = append(n.published, streams...)
	res := make([]broker.Result, len(pubs))
	for i := range res {
		res[i].Pub.Offset = uint64(i + 1)
		res[i].Pos.Epoch = "e"
	}
	return res, nil
}
func (n *node) Deliverable(string, []byte) error { return nil }
func (n *node) ReadHistory(context.Context, string, storage.Query) (storage.Result, error) {
	return storage.Result{}, nil
}
func (n *node) WirePubs(string, string, []storage.Publication, bool) []protocol.Pub { return nil }
func (n *node) Members(context.Context, string) ([]protocol.Member, error)          { return nil, nil }
func (n *node) DisconnectUser(string) int                                           { return 0 }
func (n *node) Stats() httpapi.Stats                                                { return httpapi.Stats{Node: "n1"} }
func (n *node) Draining() bool                                                      { return n.draining }
func (n *node) HistoryOutlivesNode() bool                                           { return n.outlives }
func (n *node) Ready(context.Context) error                                         { return n.ready }

func TestEndpoints(t *testing.T) {
	const key = "k"
	publish := `{"stream":"s","data":1}`
	tests := []struct {
		name           string
		node           node
		method, path   string
		authz, body    string
		want           int
		wantDrainingHd bool
		published      int
	}{
		{name: "no key", method: "GET", path: "/api/stats", want: 401},
		{name: "lower-case bearer", method: "GET", path: "/api/stats", authz: "bearer k", want: 200},
		{name: "metrics need the key", method: "GET", path: "/metrics", want: 401},
		{name: "metrics with the key", method: "GET", path: "/metrics", authz: "Bearer k", want: 200},
		{name: "ready", method: "GET", path: "/readyz", want: 200},
		{name: "backend down", node: node{ready: errors.New("redis: refused")}, method: "GET", path: "/readyz", want: 503},
		{name: "draining readyz", node: node{draining: true}, method: "GET", path: "/readyz", want: 503},
		{name: "publish", method: "POST", path: "/api/publish", authz: "Bearer k", body: publish, want: 200, published: 1},
		{name: "publish while a single node drains", node: node{draining: true}, method: "POST", path: "/api/publish", authz: "Bearer k", body: publish, want: 503, wantDrainingHd: true},
		{name: "publish while a Redis node drains", node: node{draining: true, outlives: true}, method: "POST", path: "/api/publish", authz: "Bearer k", body: publish, want: 200, wantDrainingHd: true, published: 1},
		{name: "unknown key while draining", node: node{draining: true}, method: "GET", path: "/api/stats", want: 401, wantDrainingHd: true},
		{name: "plain GET of the upgrade path", method: "GET", path: "/ws", want: 400},
		{name: "wrong method", method: "GET", path: "/api/publish", authz: "Bearer k", want: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := tt.node
			h := httpapi.New(httpapi.Config{
				APIKey:       key,
				Metrics:      http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
				UpgradePaths: []string{"/ws"},
			}, &n)
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.authz != "" {
				req.Header.Set("Authorization", tt.authz)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, rec.Code, rec.Body, tt.want)
			}
			if got := rec.Header().Get("Huddle-Draining") == "true"; got != tt.wantDrainingHd {
				t.Errorf("Huddle-Draining header %v, want %v", got, tt.wantDrainingHd)
			}
			if len(n.published) != tt.published {
				t.Errorf("published %v, want %d", n.published, tt.published)
			}
		})
	}
}
