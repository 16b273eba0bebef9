// Package httpapi serves Huddle's HTTP endpoints besides the WebSocket
// upgrades: the server API under /api/ (publish, history, presence,
// disconnect, stats) behind the API key, /healthz and /readyz, /metrics
// and Go profiles, and the pages (the demo) at /.
//
// It reaches the node only through Node and holds no connection, stream
// or presence state of its own; internal/server implements Node.
package httpapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// Node is what the HTTP API needs of a Huddle node.
type Node interface {
	// PublishBatch publishes pubs[i] to streams[i], in order, as one
	// broker batch; see broker.Broker.PublishBatch for what a failure
	// leaves stored.
	PublishBatch(ctx context.Context, streams []string, pubs []storage.Publication) ([]broker.Result, error)
	// Deliverable reports why a publication of data on stream would be
	// too large to deliver to a subscriber; nil if it is not.
	Deliverable(stream string, data []byte) error
	// ReadHistory reads a stream's stored publications.
	ReadHistory(ctx context.Context, stream string, q storage.Query) (storage.Result, error)
	// WirePubs turns stored publications into their wire form.
	// snap says that pubs[0] is a document's snapshot.
	WirePubs(stream, epoch string, pubs []storage.Publication, snap bool) []protocol.Pub
	// Members returns a stream's presence.
	Members(ctx context.Context, stream string) ([]protocol.Member, error)
	// DisconnectUser closes every connection of user (4000, no
	// reconnect) and returns how many there were.
	DisconnectUser(user string) int
	// Stats is the body of GET /api/stats.
	Stats() Stats
	// Draining reports whether the node is shutting down.
	Draining() bool
	// HistoryOutlivesNode reports whether what the node stores survives
	// it (Redis), so publishing may go on while it drains.
	HistoryOutlivesNode() bool
	// Ready reports whether the backends the node depends on answer.
	Ready(ctx context.Context) error
}

// Stats is a node's counters, as GET /api/stats answers them.
type Stats struct {
	Node           string `json:"node"`
	Connections    int    `json:"connections"`
	Clients        int64  `json:"clients"`
	Streams        int    `json:"streams"`
	Subscriptions  int    `json:"subscriptions"`
	QueuedBytesMax int    `json:"queued_bytes_max"`
	WhispersCached int    `json:"whispers_cached"`
	Draining       bool   `json:"draining"`
}

// Config tunes the endpoints.
type Config struct {
	// APIKey guards /api/*, /metrics (unless OpenMetrics) and profiles.
	// Empty disables them (401).
	APIKey string
	// Metrics serves /metrics. Required.
	Metrics http.Handler
	// OpenMetrics serves /metrics without the API key.
	OpenMetrics bool
	// Profiling serves net/http/pprof at /debug/pprof/ behind the API key.
	Profiling bool
	// Pages serves every other path ("/", the demo). Nil: 404.
	Pages http.Handler
	// UpgradePaths are the WebSocket paths; a plain GET of one gets 400.
	UpgradePaths []string
}

// Bounds of a request.
const (
	requestTimeout      = 5 * time.Second
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

type api struct {
	cfg  Config
	node Node
}

const maxAPIBody = 8 << 20

// maxAPIHistoryBytes bounds the publication data of one GET /api/history
// page (at least one publication is always returned); "more" says when it
// cut the page short.
const maxAPIHistoryBytes = 4 << 20

// readyTimeout bounds the backend check of /readyz.
const readyTimeout = time.Second

// New returns the handler of every HTTP endpoint but the WebSocket
// upgrades, which the server takes before a request reaches net/http.
func New(cfg Config, node Node) http.Handler {
	s := &api{cfg: cfg, node: node}
	return s.routes()
}

func (s *api) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.node.Draining() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		err := s.node.Ready(ctx)
		cancel()
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	if s.cfg.OpenMetrics {
		mux.Handle("GET /metrics", s.cfg.Metrics)
	} else {
		mux.HandleFunc("GET /metrics", s.apiKeyed(s.cfg.Metrics.ServeHTTP))
	}
	mux.HandleFunc("POST /api/publish", s.apiKeyed(s.apiPublish))
	mux.HandleFunc("POST /_broadcast", s.apiKeyed(s.apiBroadcast))
	mux.HandleFunc("GET /api/history/{stream}", s.apiKeyed(s.apiHistory))
	mux.HandleFunc("GET /api/presence/{stream}", s.apiKeyed(s.apiPresence))
	mux.HandleFunc("POST /api/disconnect", s.apiKeyed(s.apiDisconnect))
	mux.HandleFunc("GET /api/stats", s.apiKeyed(s.apiStats))
	mux.HandleFunc("/api/", s.apiKeyed(func(w http.ResponseWriter, r *http.Request) {
		if allow := apiMethod(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.URL.Path+" takes "+allow)
			return
		}
		apiError(w, http.StatusNotFound, "not_found", "no API endpoint "+r.Method+" "+r.URL.Path)
	}))
	for _, path := range s.cfg.UpgradePaths {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			apiError(w, http.StatusBadRequest, "not_websocket", "GET "+path+" expects a WebSocket upgrade")
		})
	}
	if s.cfg.Profiling {
		mux.HandleFunc("GET /debug/pprof/", s.apiKeyed(pprof.Index))
		mux.HandleFunc("GET /debug/pprof/profile", s.apiKeyed(pprof.Profile))
		mux.HandleFunc("GET /debug/pprof/trace", s.apiKeyed(pprof.Trace))
	}
	if s.cfg.Pages != nil {
		mux.Handle("/", s.cfg.Pages)
	}
	return mux
}

// apiMethod returns the method an API path takes, or "" for no such path;
// the catch-all route answers 405 rather than 404 for a known path.
func apiMethod(path string) string {
	switch {
	case path == "/api/publish", path == "/api/disconnect":
		return http.MethodPost
	case path == "/api/stats",
		strings.HasPrefix(path, "/api/history/") && len(path) > len("/api/history/"),
		strings.HasPrefix(path, "/api/presence/") && len(path) > len("/api/presence/"):
		return http.MethodGet
	}
	return ""
}

// apiKeyed guards an endpoint with the API key.
func (s *api) apiKeyed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.node.Draining() {
			// The caller can tell a draining node from every API answer.
			w.Header().Set("Huddle-Draining", "true")
		}
		key, ok := auth.BearerToken(r.Header.Get("Authorization"))
		if s.cfg.APIKey == "" {
			apiError(w, http.StatusUnauthorized, "unauthorized", "the HTTP API is disabled: start the server with --api-key (/metrics: or --metrics-addr)")
			return
		}
		if !ok || subtle.ConstantTimeCompare([]byte(key), []byte(s.cfg.APIKey)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="huddle"`)
			apiError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key (Authorization: Bearer <api key>)")
			return
		}
		h(w, r)
	}
}

type apiPub struct {
	Stream string          `json:"stream"`
	Data   json.RawMessage `json:"data"`
}

// apiPubResult is one item's outcome in a POST /api/publish response:
// where it was stored, or why not (offsets start at 1, so a failed item
// has none).
type apiPubResult struct {
	Offset uint64  `json:"offset,omitempty"`
	Epoch  string  `json:"epoch,omitempty"`
	Error  *apiErr `json:"error,omitempty"`
}

// apiPublish publishes one item or a batch, in order, as one broker batch.
// The response lists one result per item. When an item fails, the
// response carries the first failure as "error" and the status says what
// kind it was (503: the backend is unreachable or timed out, 500: it
// refused); each failed item's result says, by its code, what happened
// to it: "skipped" (not stored: an earlier item of its stream, or with
// the memory broker of the batch, failed), "unavailable" (it may have
// been stored) or "publish_failed" (not stored). The items of a stream
// that were stored are always a prefix of that stream's items.
func (s *api) apiPublish(w http.ResponseWriter, r *http.Request) {
	if s.node.Draining() && !s.node.HistoryOutlivesNode() {
		// A single node's history ends with the process: what it stored
		// now, its clients would find under a new epoch after the restart
		// (recovered: false). Refuse, so the caller retries on the node
		// that replaces it. With Redis the history outlives the node, and
		// publishing goes on (to the clients still here and everywhere else).
		w.Header().Set("Retry-After", "1")
		apiError(w, http.StatusServiceUnavailable, "draining", "this node is shutting down and keeps no history past it: retry on the node that replaces it")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "too_large", "request body over "+strconv.Itoa(maxAPIBody)+" bytes")
		return
	}
	var batch []apiPub
	trimmed := strings.TrimSpace(string(body))
	if strings.HasPrefix(trimmed, "[") {
		err = json.Unmarshal(body, &batch)
	} else {
		var one apiPub
		err = json.Unmarshal(body, &one)
		batch = []apiPub{one}
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", "body must be {\"stream\", \"data\"} or an array of them: "+err.Error())
		return
	}
	s.publishItems(w, r, batch, func(results []apiPubResult) {
		writeJSON(w, http.StatusOK, map[string]any{"results": results})
	})
}

// publishItems validates and publishes a batch (nothing is published when
// an item is invalid), answers a failure, and calls ok with the results.
func (s *api) publishItems(w http.ResponseWriter, r *http.Request, batch []apiPub, ok func([]apiPubResult)) {
	if len(batch) == 0 {
		apiError(w, http.StatusBadRequest, "bad_request", "empty batch")
		return
	}
	// Validate everything first so a bad item publishes nothing.
	streams := make([]string, len(batch))
	pubs := make([]storage.Publication, len(batch))
	for i, p := range batch {
		if !auth.ValidStream(p.Stream) {
			apiError(w, http.StatusBadRequest, "bad_stream", "item "+strconv.Itoa(i)+": invalid stream name")
			return
		}
		streams[i] = p.Stream
		if len(p.Data) == 0 {
			pubs[i].Data = protocol.RawNil
			continue
		}
		var err error
		if pubs[i].Data, err = protocol.RawFromJSON(p.Data); err != nil {
			apiError(w, http.StatusBadRequest, "bad_data", "item "+strconv.Itoa(i)+": "+err.Error())
			return
		}
		if err := s.node.Deliverable(p.Stream, pubs[i].Data); err != nil {
			apiError(w, http.StatusRequestEntityTooLarge, "too_large", "item "+strconv.Itoa(i)+": "+err.Error())
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	res, err := s.node.PublishBatch(ctx, streams, pubs)
	results := make([]apiPubResult, len(res))
	for i, r := range res {
		if r.Err != nil {
			results[i].Error = &apiErr{Code: publishErrCode(r.Err), Message: r.Err.Error()}
			continue
		}
		results[i] = apiPubResult{Offset: r.Pub.Offset, Epoch: r.Pos.Epoch}
	}
	if err != nil {
		status := http.StatusInternalServerError
		switch publishErrCode(err) {
		case "unavailable":
			status = http.StatusServiceUnavailable
		case "document_full":
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, map[string]any{
			"error":   apiErr{Code: "publish_failed", Message: err.Error()},
			"results": results,
		})
		return
	}
	ok(results)
}

// publishErrCode names what a failed publish left stored: "skipped",
// "document_full" and "publish_failed" stored nothing, "unavailable" may
// have stored it.
func publishErrCode(err error) string {
	switch {
	case errors.Is(err, broker.ErrSkipped):
		return "skipped"
	case errors.Is(err, storage.ErrDocumentFull):
		return "document_full"
	case errors.Is(err, storage.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "unavailable"
	}
	return "publish_failed"
}

func (s *api) apiHistory(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if !auth.ValidStream(stream) {
		apiError(w, http.StatusBadRequest, "bad_stream", "invalid stream name")
		return
	}
	q := storage.Query{Limit: defaultHistoryLimit, MaxBytes: maxAPIHistoryBytes}
	qs := r.URL.Query()
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			apiError(w, http.StatusBadRequest, "bad_request", "limit must be a positive integer")
			return
		}
		q.Limit = min(n, maxHistoryLimit)
	}
	if v := qs.Get("since_offset"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			apiError(w, http.StatusBadRequest, "bad_request", "since_offset must be a non-negative integer")
			return
		}
		q.After.Offset = n
	}
	q.After.Epoch = qs.Get("epoch")
	q.Reverse = qs.Get("reverse") == "true"
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	res, err := s.node.ReadHistory(ctx, stream, q)
	if errors.Is(err, storage.ErrEpochMismatch) {
		apiError(w, http.StatusConflict, "epoch_mismatch", "epoch "+q.After.Epoch+" is gone; the stream is now at epoch "+res.Top.Epoch)
		return
	}
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "history_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"stream": stream, "epoch": res.Top.Epoch, "offset": res.Top.Offset,
		"pubs": s.node.WirePubs(stream, res.Top.Epoch, res.Pubs, res.Snapshot), "more": res.More,
	})
}

func (s *api) apiDisconnect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User string `json:"user"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil || req.User == "" {
		apiError(w, http.StatusBadRequest, "bad_request", `body must be {"user": "..."}`)
		return
	}
	n := s.node.DisconnectUser(req.User)
	writeJSON(w, http.StatusOK, map[string]int{"disconnected": n})
}

func (s *api) apiStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.node.Stats())
}

type apiErr struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func apiError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]apiErr{"error": {Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *api) apiPresence(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if !auth.ValidStream(stream) {
		apiError(w, http.StatusBadRequest, "bad_stream", "invalid stream name")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	members, err := s.node.Members(ctx, stream)
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "presence_failed", err.Error())
		return
	}
	if members == nil {
		members = []protocol.Member{}
	}
	users := make(map[string]struct{}, len(members))
	for _, m := range members {
		users[m.User] = struct{}{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"stream": stream, "members": members, "users": len(users), "clients": len(members)})
}
