// Package admin is the operators' page at /admin: the live state of every
// node of the cluster (connections, streams, CPU and memory, the busiest
// streams with their subscribers and presence members, recent disconnect
// codes, the publish rate). Each node reports a Snapshot every few seconds
// to a Store (in memory for one node, a Redis hash for several); the page
// reads them all. It knows nothing of how a node counts: the server hands
// it a collect function.
package admin

import (
	"bytes"
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StreamStat is one stream on one node (or, merged, in the cluster).
type StreamStat struct {
	Stream      string `json:"stream"`
	Subscribers int    `json:"subscribers"`
	Members     int    `json:"members"` // presence members (the cluster's)
}

// Counts is what a node counts itself, handed to the reporter.
type Counts struct {
	Connections   int           // transport connections (upgraded or not)
	Clients       int           // connections past connect
	Streams       int           // streams with local subscribers
	Subscriptions int           //
	Published     int64         // publications stored through the node, since start
	Disconnects   map[int]int64 // server closes by code, since start
	Top           []StreamStat  // the busiest streams (by local subscribers)
}

// Snapshot is a node's state as the page shows it.
type Snapshot struct {
	Node              string        `json:"node"`
	At                time.Time     `json:"at"`
	Started           time.Time     `json:"started"`
	Connections       int           `json:"connections"`
	Clients           int           `json:"clients"`
	Streams           int           `json:"streams"`
	Subscriptions     int           `json:"subscriptions"`
	CPU               float64       `json:"cpu_cores"`         // over the last report interval
	RSS               int64         `json:"rss_bytes"`         //
	PublishRate       float64       `json:"publishes_per_sec"` // over the last report interval
	Disconnects       map[int]int64 `json:"disconnects"`       // since start, by code
	RecentDisconnects map[int]int64 `json:"recent_disconnects"`
	Top               []StreamStat  `json:"top_streams"`
}

// Store keeps the nodes' latest snapshots.
type Store interface {
	// Put records s, the node's latest; it counts as live for ttl.
	Put(ctx context.Context, s Snapshot, ttl time.Duration) error
	// All returns every live node's latest snapshot.
	All(ctx context.Context) ([]Snapshot, error)
}

// MemoryStore keeps this node's snapshot: one node.
type MemoryStore struct {
	mu    sync.Mutex
	snaps map[string]memEntry
}

type memEntry struct {
	s    Snapshot
	till time.Time
}

// Put implements Store.
func (m *MemoryStore) Put(_ context.Context, s Snapshot, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snaps == nil {
		m.snaps = map[string]memEntry{}
	}
	m.snaps[s.Node] = memEntry{s, time.Now().Add(ttl)}
	return nil
}

// All implements Store.
func (m *MemoryStore) All(context.Context) ([]Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Snapshot
	for k, e := range m.snaps {
		if time.Now().After(e.till) {
			delete(m.snaps, k)
			continue
		}
		out = append(out, e.s)
	}
	return out, nil
}

// Reporter reports this node's snapshot every interval.
type Reporter struct {
	node      string
	collect   func() Counts
	store     Store
	every     time.Duration
	log       *slog.Logger
	started   time.Time
	stop      chan struct{}
	closeOnce sync.Once
	done      chan struct{}

	// Owned by run.
	lastAt    time.Time
	lastCPU   float64
	lastPub   int64
	minuteAgo []map[int]int64 // disconnect totals of the last reports, a minute's worth
}

// NewReporter starts reporting; Close stops it.
func NewReporter(node string, collect func() Counts, store Store, every time.Duration, log *slog.Logger) *Reporter {
	r := &Reporter{node: node, collect: collect, store: store, every: every, log: log, started: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	r.lastAt, r.lastCPU = time.Now(), cpuSeconds()
	go r.run()
	return r
}

// Close stops the reporter; calling it again does nothing.
func (r *Reporter) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
}

func (r *Reporter) run() {
	defer close(r.done)
	r.report() // at once: the page shows a node as soon as it is up
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.report()
		}
	}
}

// report collects and stores one snapshot.
func (r *Reporter) report() {
	c := r.collect()
	now := time.Now()
	cpu := cpuSeconds()
	el := now.Sub(r.lastAt).Seconds()
	s := Snapshot{
		Node: r.node, At: now, Started: r.started,
		Connections: c.Connections, Clients: c.Clients, Streams: c.Streams, Subscriptions: c.Subscriptions,
		RSS: rssBytes(), Disconnects: c.Disconnects, Top: c.Top, RecentDisconnects: map[int]int64{},
	}
	if el > 0.1 {
		s.CPU = (cpu - r.lastCPU) / el
		s.PublishRate = float64(c.Published-r.lastPub) / el
	}
	r.lastAt, r.lastCPU, r.lastPub = now, cpu, c.Published
	keep := max(1, int(time.Minute/r.every))
	r.minuteAgo = append(r.minuteAgo, c.Disconnects)
	if len(r.minuteAgo) > keep+1 {
		r.minuteAgo = r.minuteAgo[1:]
	}
	for code, n := range c.Disconnects {
		if d := n - r.minuteAgo[0][code]; d > 0 {
			s.RecentDisconnects[code] = d
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.every)
	defer cancel()
	if err := r.store.Put(ctx, s, 3*r.every); err != nil && r.log != nil {
		r.log.Debug("admin: cannot store this node's snapshot", "err", err)
	}
}

// cpuSeconds is the process's CPU time so far (user + system).
func cpuSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// rssBytes is the process's resident memory.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// Cluster is what the page shows: every node, the totals, and the busiest
// streams of the cluster.
type Cluster struct {
	Nodes   []Snapshot   `json:"nodes"`
	Totals  Snapshot     `json:"totals"`
	Streams []StreamStat `json:"streams"`
}

// Merge sums the nodes' snapshots: subscribers of a stream add up over
// nodes; presence members are the cluster's already (the largest count
// wins, as nodes read it at different moments).
func Merge(nodes []Snapshot, top int) Cluster {
	slices.SortFunc(nodes, func(a, b Snapshot) int { return strings.Compare(a.Node, b.Node) })
	c := Cluster{Nodes: nodes, Totals: Snapshot{Node: "cluster", Disconnects: map[int]int64{}, RecentDisconnects: map[int]int64{}}}
	byStream := map[string]*StreamStat{}
	for _, n := range nodes {
		t := &c.Totals
		t.Connections += n.Connections
		t.Clients += n.Clients
		t.Subscriptions += n.Subscriptions
		t.CPU += n.CPU
		t.RSS += n.RSS
		t.PublishRate += n.PublishRate
		for k, v := range n.Disconnects {
			t.Disconnects[k] += v
		}
		for k, v := range n.RecentDisconnects {
			t.RecentDisconnects[k] += v
		}
		for _, s := range n.Top {
			m := byStream[s.Stream]
			if m == nil {
				m = &StreamStat{Stream: s.Stream}
				byStream[s.Stream] = m
			}
			m.Subscribers += s.Subscribers
			m.Members = max(m.Members, s.Members)
		}
	}
	c.Totals.Streams = len(byStream)
	for _, s := range byStream {
		c.Streams = append(c.Streams, *s)
	}
	slices.SortFunc(c.Streams, func(a, b StreamStat) int {
		if a.Subscribers != b.Subscribers {
			return b.Subscribers - a.Subscribers
		}
		return strings.Compare(a.Stream, b.Stream)
	})
	c.Streams = c.Streams[:min(top, len(c.Streams))]
	return c
}

//go:embed page.html
var page []byte

// Handler serves the page (GET /admin) and its data (GET /admin/api/cluster)
// to a client that gives the password (HTTP Basic, any user name) or the
// API key (Bearer, or as the Basic password).
func Handler(store Store, password, apiKey string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /admin/api/cluster", func(w http.ResponseWriter, r *http.Request) {
		nodes, err := store.All(r.Context())
		if err != nil {
			http.Error(w, "cannot read the nodes: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(Merge(nodes, 20))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r, password, apiKey) {
			w.Header().Set("WWW-Authenticate", `Basic realm="huddle admin", charset="UTF-8"`)
			http.Error(w, "the admin page needs --admin-password (or the API key)", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func allowed(r *http.Request, password, apiKey string) bool {
	same := func(a, b string) bool { return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
	if _, pw, ok := r.BasicAuth(); ok {
		return same(pw, password) || same(pw, apiKey)
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return same(tok, apiKey) || same(tok, password)
	}
	return false
}
