// Package server assembles a Huddle node: the core (internal/core), the
// wire protocols' front-ends (internal/frontend/...), the WebSocket
// transport (internal/transport) and the HTTP endpoints (internal/httpapi).
// It routes each upgrade to its front-end by path, refuses upgrades while
// draining or from foreign origins, exports metrics, and drains on
// shutdown.
//
// It holds no connection or stream state of its own.
package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/admin"
	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/frontend/cable"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc"
	"github.com/huddle-rt/huddle/internal/frontend/huddlev1"
	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/internal/httpapi"
	"github.com/huddle-rt/huddle/internal/tracing"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/internal/webhooks"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/whisper"
)

// Config tunes a Server. Zero fields take the documented defaults.
type Config struct {
	// APIKey guards /api/*. Empty disables the HTTP API (every call 401s).
	APIKey string
	// Node names this node in connected messages. Default: a random id.
	Node string
	// MaxMessage is the largest WebSocket message accepted; beyond it the
	// connection closes with 4005. Default 1 MiB.
	MaxMessage int
	// MaxQueue bounds a connection's unsent bytes; beyond it the connection
	// closes with 4008. Default 4 MiB.
	MaxQueue int
	// ConnectTimeout is how long a connection may take to send connect.
	// Default 10s.
	ConnectTimeout time.Duration
	// PingInterval is how often the server pings; a connection silent for
	// two intervals closes with 4011. Default 25s.
	PingInterval time.Duration
	// CompactEvery is how many publications of a document stream pass
	// between two requests for a snapshot. Default 1000.
	CompactEvery int
	// Workers bounds the goroutines that read, process and write for
	// connections. Default 128.
	Workers int
	// ForcePortable uses a goroutine per connection even where epoll exists.
	ForcePortable bool
	// Pages serves non-API paths such as "/" (the demo). Nil serves 404.
	Pages http.Handler
	// AllowedOrigins lists the browser origins whose pages may open a
	// WebSocket (--allowed-origins): "https://app.example.com",
	// "https://*.example.com" for every subdomain, or "*" for any. An
	// upgrade whose Origin header matches none gets HTTP 403; one without
	// Origin (not a browser) is never refused for it, and the server's own
	// origin (Origin host equal to Host) always matches. Empty admits the
	// server's own origin and loopback origins only. See CheckOriginPattern
	// for the syntax; an entry it refuses matches nothing.
	AllowedOrigins []string
	// MaxSubscriptions bounds a connection's subscriptions. Default 1000.
	MaxSubscriptions int
	// MessageRate and MessageBurst bound the messages a connection may send
	// per second; excess messages are dropped with one error 4006 a second,
	// and a connection that keeps flooding (over 10 bursts dropped) is
	// closed with 4006. Defaults 1000 and 2000.
	MessageRate  float64
	MessageBurst int
	// Whisper tunes whispers: rate limit, size limit, cache bounds.
	Whisper whisper.Config
	// WhisperPace is how long whispers for a connection that flushed less
	// than that ago may wait, to go out together in one write (see pacer).
	// Publications, replies and presence never wait. Default 25ms; negative
	// sends every whisper at once.
	WhisperPace time.Duration
	// Presence tunes presence: grace, TTL, tick, limits.
	Presence presence.Config
	// Profiling serves net/http/pprof at /debug/pprof/ behind the API key.
	Profiling bool
	// HTTPReadTimeout bounds reading an HTTP request, body included; a
	// client that sends less than it announced is cut after it. Responses
	// get twice as long to be written, at least a minute. Default 30s.
	HTTPReadTimeout time.Duration
	// OpenMetrics serves /metrics on the main listener without the API
	// key. By default it needs the key, like /api/*; a scraper without it
	// reads MetricsHandler on a listener of its own (--metrics-addr).
	OpenMetrics bool
	// StreamsSecret verifies /cable's signed stream names (Turbo Streams,
	// $pubsub signed_stream_name). Empty: signed streams are rejected.
	StreamsSecret []byte
	// CableJWTSecret verifies /cable's ?jid= tokens (HS256, identifiers in
	// the ext claim). Empty: jid tokens are refused.
	CableJWTSecret []byte
	// RPCURL is /cable's application backend (AnyCable RPC over HTTP:
	// http(s)://host/path). Empty: none; application channels are rejected.
	RPCURL string
	// RPCSecret is sent to the backend as a bearer token.
	RPCSecret string
	// RPCConcurrency bounds the backend calls in flight. Default 28.
	RPCConcurrency int
	// RPCHeaders are the request headers sent with a connect. Default
	// Cookie.
	RPCHeaders []string
	// DisconnectRate bounds the backend's disconnect calls a second. 0:
	// none.
	DisconnectRate float64
	// SessionsTTL is how long /cable keeps a closed connection's session
	// for a restore (?sid=). Default 5m; negative: no restore.
	SessionsTTL time.Duration
	// CablePingInterval is how often /cable pings. Default 3s (Rails'
	// client counts a connection stale after 6s without one).
	CablePingInterval time.Duration
	// Hooks are /ws's application hooks: connect, subscribe and publish
	// URLs, their timeouts, the calls in flight, the connect's headers
	// (see docs/hooks.md). No URL: no hooks.
	Hooks hooks.Config
	// AdminPassword opens /admin (HTTP Basic, any user name); the API key
	// opens it too. Empty and no API key: /admin answers 401.
	AdminPassword string
	// DrainWindow spreads a drain's disconnects (4009) over this long, in
	// a random order, so that the clients of a node that restarts do not
	// all reconnect at once; the connections not told yet keep receiving.
	// It is shortened to tell at least MinDrainRate connections a second,
	// and to end CloseGrace before Shutdown's deadline. Zero: every client
	// is told at once.
	DrainWindow time.Duration
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Webhooks tells the application about presence, streams and users
	// over HTTP (docs/webhooks.md). No Endpoints: no webhooks.
	Webhooks webhooks.Config
	// WebhookNodeTTL is how long this node's streams and users count as
	// held in the cluster without its refresh: a node that dies has them
	// vacated and disconnected by the others within about this. Default 30s.
	WebhookNodeTTL time.Duration
}

func (c *Config) setDefaults() {
	if c.Node == "" {
		c.Node = uuid.NewString()[:8]
	}
	if c.MaxMessage <= 0 {
		c.MaxMessage = 1 << 20
	}
	if c.MaxQueue <= 0 {
		c.MaxQueue = 4 << 20
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 25 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 128
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPReadTimeout <= 0 {
		c.HTTPReadTimeout = 30 * time.Second
	}
	c.Whisper = c.Whisper.WithDefaults()
	if c.WhisperPace == 0 {
		c.WhisperPace = 25 * time.Millisecond
	}
	if c.MaxSubscriptions <= 0 {
		c.MaxSubscriptions = 1000
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 1000
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 2000
	}
	c.Presence = c.Presence.WithDefaults()
}

// Deps are the parts a Server is built on.
type Deps struct {
	// Auth verifies tokens and grants. Required.
	Auth *auth.Authenticator
	// Log is the history. Default: a new storage.MemoryLog.
	Log storage.Log
	// Presence stores members. Default: a new presence.MemoryStore.
	Presence presence.Store
	// NewBroker builds the broker that delivers to the server's handler.
	// Default: the memory broker over Log. The server closes the broker in
	// Shutdown if it has a Close method.
	NewBroker func(h broker.Handler) (broker.Broker, error)
	// Sessions keeps /cable sessions for restore. Default: in memory, up
	// to 100,000 (one node; with several, a store they share).
	Sessions cable.SessionStore
	// Check reports whether the backends the node depends on are reachable;
	// /readyz answers 503 while it fails. Nil: always reachable.
	Check func(ctx context.Context) error
	// Occupancy counts the streams and users of every node for webhooks.
	// Default: in memory (one node; with several, a store they share).
	Occupancy occupancy.Store
	// RedisErrors counts the Redis commands that failed, for metrics. Nil:
	// no Redis.
	RedisErrors func() int64
	// Admin keeps the nodes' snapshots for /admin. Default: in memory
	// (this node only; with several, a store they share).
	Admin admin.Store
}

// ErrClosed is returned by Serve once Shutdown has begun stopping the
// accept loops.
var ErrClosed = errors.New("server: closed")

// Server is one Huddle node.
type Server struct {
	cfg      Config
	log      *slog.Logger
	node     *core.Node
	huddle   *huddlev1.Frontend
	cable    *cable.Frontend
	rpc      *rpc.Guard    // /cable's application backend; nil without one
	hooks    *hooks.Client // /ws clients' hooks; nil without any
	check    func(ctx context.Context) error
	docBytes func() int64 // what document streams hold in memory; nil when not known
	metrics  *metrics
	tr       *transport.Transport
	api      http.Handler
	http     *http.Server
	webhooks *webhookSink // nil: no webhooks

	// handshakeFailures counts refused WebSocket upgrades.
	handshakeFailures atomic.Int64
	redisErrors       func() int64 // nil without Redis
	admin             *admin.Reporter

	draining atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup // sweeper
	acceptWG sync.WaitGroup // accept loops

	mu        sync.Mutex // guards listeners
	listeners []net.Listener
}

// New builds a server. Call Serve to accept connections and Shutdown to
// drain.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if deps.Auth == nil {
		return nil, errors.New("server: Deps.Auth is required")
	}
	s := &Server{cfg: cfg, log: cfg.Logger, check: deps.Check, redisErrors: deps.RedisErrors, stop: make(chan struct{})}
	var err error
	if s.webhooks, err = newWebhookSink(&cfg, &deps); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if d, ok := deps.Log.(interface{ DocumentBytes() int64 }); ok {
		s.docBytes = d.DocumentBytes
	}
	s.node, err = core.New(core.Config{
		MaxMessage:       cfg.MaxMessage,
		MaxQueue:         cfg.MaxQueue,
		MaxSubscriptions: cfg.MaxSubscriptions,
		MessageRate:      cfg.MessageRate,
		MessageBurst:     cfg.MessageBurst,
		PingInterval:     cfg.PingInterval,
		CompactEvery:     cfg.CompactEvery,
		Whisper:          cfg.Whisper,
		Presence:         cfg.Presence,
		Logger:           cfg.Logger,
	}, core.Deps{Auth: deps.Auth, Log: deps.Log, Presence: deps.Presence, NewBroker: deps.NewBroker, Events: s.webhooks.events()})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var hookClient *hooks.Client
	if h := cfg.Hooks; h.ConnectURL != "" || h.SubscribeURL != "" || h.PublishURL != "" {
		if hookClient, err = hooks.New(h); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.hooks = hookClient
	}
	s.huddle = huddlev1.New(s.node, huddlev1.Config{
		Node:             cfg.Node,
		PingInterval:     cfg.PingInterval,
		ConnectTimeout:   cfg.ConnectTimeout,
		Gate:             s.gate,
		Refused:          func() { s.handshakeFailures.Add(1) },
		Hooks:            hookClient,
		MaxSubscriptions: cfg.MaxSubscriptions,
	})
	sessions := deps.Sessions
	if sessions == nil {
		sessions = cable.NewMemorySessions(100_000)
	}
	if cfg.SessionsTTL < 0 {
		sessions = nil
	}
	var backend rpc.Backend
	if cfg.RPCURL != "" {
		c, err := dialRPC(rpc.Config{URL: cfg.RPCURL, Secret: cfg.RPCSecret, Concurrency: cfg.RPCConcurrency})
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.rpc = rpc.NewGuard(c, rpc.GuardConfig{Logger: s.log})
		backend = s.rpc
	}
	s.cable = cable.New(s.node, cable.Config{
		RPC:            backend,
		RPCHeaders:     cfg.RPCHeaders,
		DisconnectRate: cfg.DisconnectRate,
		Sessions:       sessions,
		SessionTTL:     cfg.SessionsTTL,
		PingInterval:   cfg.CablePingInterval,
		JWTSecret:      cfg.CableJWTSecret,
		StreamsSecret:  cfg.StreamsSecret,
		Gate:           s.gate,
		Refused:        func() { s.handshakeFailures.Add(1) },
	})
	s.tr, err = transport.New(transport.Config{
		MaxQueue:      cfg.MaxQueue,
		Workers:       cfg.Workers,
		WhisperPace:   cfg.WhisperPace,
		ForcePortable: cfg.ForcePortable,
		Logger:        s.log,
	}, s)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if s.metrics, err = newMetrics(s); err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.api = httpapi.New(httpapi.Config{
		APIKey:       cfg.APIKey,
		Metrics:      s.metrics.handler,
		OpenMetrics:  cfg.OpenMetrics,
		Profiling:    cfg.Profiling,
		Pages:        cfg.Pages,
		UpgradePaths: []string{huddlev1.Path, cable.Path},
	}, httpNode{s})
	s.huddle.UseTransport(s.tr)
	adminStore := deps.Admin
	if adminStore == nil {
		adminStore = &admin.MemoryStore{}
	}
	s.admin = admin.NewReporter(s.cfg.Node, s.adminCounts, adminStore, 2*time.Second, s.log)
	adminPage := admin.Handler(adminStore, cfg.AdminPassword, cfg.APIKey)
	// Each request is a span when traces are on (internal/tracing).
	traced := tracing.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/admin" || strings.HasPrefix(r.URL.Path, "/admin/") {
			adminPage.ServeHTTP(w, r)
			return
		}
		if huddlev1.IsHTTPPath(r.URL.Path) {
			s.huddle.ServeHTTP(w, r) // huddle.v1 over HTTP: polls and sends
			return
		}
		s.api.ServeHTTP(w, r)
	}))
	s.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 1 && s.UpgradePath(r.URL.Path) {
				s.adopt(w, r) // a keep-alive connection's next request is the transport's
				return
			}
			traced.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: min(10*time.Second, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      max(time.Minute, 2*cfg.HTTPReadTimeout),
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() { _ = s.http.Serve(s.tr.HTTPListener()) }()
	s.wg.Add(1)
	go s.sweep()
	return s, nil
}

// adminCounts is what /admin shows of this node.
func (s *Server) adminCounts() admin.Counts {
	cm := s.node.Metrics()
	streams, subs := s.node.Stats()
	c := admin.Counts{
		Connections: s.tr.Count(), Clients: int(cm.Connected.Load()), Streams: streams, Subscriptions: subs,
		Published: cm.Published.Load(), Disconnects: map[int]int64{},
	}
	for code, n := range cm.Disconnects {
		if v := n.Load(); v > 0 {
			c.Disconnects[int(code)] = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, t := range s.node.TopStreams(10) {
		st := admin.StreamStat{Stream: t.Stream, Subscribers: t.Subscribers}
		if members, err := s.node.Members(ctx, t.Stream); err == nil {
			st.Members = len(members)
		}
		c.Top = append(c.Top, st)
	}
	return c
}

// adopt hands the connection of r, which net/http was serving (a
// keep-alive connection), to the transport, which serves r (an endpoint it
// holds: a WebSocket upgrade, server-sent events) and what follows.
func (s *Server) adopt(w http.ResponseWriter, r *http.Request) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "open a new connection for "+r.URL.Path, http.StatusBadRequest)
		return
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	var head bytes.Buffer
	head.WriteString(r.Method + " " + r.RequestURI + " HTTP/1.1\r\nHost: " + r.Host + "\r\n")
	if len(r.TransferEncoding) > 0 {
		head.WriteString("Transfer-Encoding: " + strings.Join(r.TransferEncoding, ", ") + "\r\n")
	}
	_ = r.Header.Write(&head)
	head.WriteString("\r\n")
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		head.Write(b)
	}
	s.tr.Adopt(nc, head.Bytes())
}

// MetricsHandler serves the Prometheus metrics with no authentication, for
// a listener of their own (the main listener's /metrics needs the API key
// unless Config.OpenMetrics).
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler }

// BrokerHandler returns what the broker delivers to: the node's core.
func (s *Server) BrokerHandler() broker.Handler { return s.node }

// Node returns the node's name, as clients see it in connected.node.
func (s *Server) Node() string { return s.cfg.Node }

// Portable reports whether the server runs a goroutine per connection
// instead of epoll.
func (s *Server) Portable() bool { return s.tr.Portable() }

// Handler returns the HTTP handler of the API and pages, for tests and for
// embedding behind another listener (WebSocket upgrades need Serve).
func (s *Server) Handler() http.Handler { return s.api }

// Serve accepts connections on ln until Shutdown. It returns nil after a
// Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	// The accept loop is counted under s.mu, where Shutdown looks at the
	// listeners after closing stop: either Shutdown waits for this loop, or
	// this loop sees stop and never starts.
	s.mu.Lock()
	select {
	case <-s.stop:
		s.mu.Unlock()
		return ErrClosed
	default:
	}
	s.listeners = append(s.listeners, ln)
	s.acceptWG.Add(1)
	s.mu.Unlock()
	defer s.acceptWG.Done()
	if s.tr.Raw(ln) {
		return s.tr.AcceptRaw(ln.(*net.TCPListener))
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.stop:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		delay = 0
		go s.tr.Handshake(nc)
	}
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Shutdown drains the node: /readyz fails and new WebSocket upgrades get
// 503, every client gets disconnect 4009 with reconnect, queues are flushed,
// and it waits until every connection is closed or ctx ends, when it closes
// the rest. Then it stops accepting and releases everything.
func (s *Server) Shutdown(ctx context.Context) error {
	// Keep listening while draining: /readyz must answer 503 to the load
	// balancer, and new WebSocket upgrades get 503 so clients go elsewhere.
	s.draining.Store(true)
	start := time.Now()
	s.log.Info("drain: /readyz answers 503 and new connections are refused; telling every client to reconnect elsewhere (4009)", "connections", s.tr.Count())
	err := s.tellDraining(ctx)
	if err == nil {
		s.log.Info("drain: every client was told; waiting for their connections to close", "left", s.tr.Count(), "took", time.Since(start).Round(time.Millisecond).String())
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for s.tr.Count() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-tick.C:
		}
	}
	if left := s.tr.Count(); left > 0 {
		s.log.Warn("drain: the shutdown timeout passed; closing the connections left", "left", left)
	}
	for _, tc := range s.tr.Conns(nil) {
		tc.Destroy()
	}
	s.stopOnce.Do(func() { close(s.stop) })
	s.tr.StopAccepting()
	// Portable accept loops end when their listener closes; raw ones see
	// stop within 100ms and must end before their descriptor is closed.
	s.mu.Lock()
	for _, ln := range s.listeners {
		if !s.tr.Raw(ln) {
			_ = ln.Close()
		}
	}
	s.mu.Unlock()
	s.acceptWG.Wait()
	s.mu.Lock()
	for _, ln := range s.listeners {
		_ = ln.Close()
	}
	s.mu.Unlock()
	// Sockets a raw accept loop took between the first pass and seeing
	// stop (up to 100ms): refused as draining, but nothing would close them
	// once the workers are gone.
	for _, tc := range s.tr.Conns(nil) {
		tc.Destroy()
	}
	s.admin.Close()
	s.cable.Close(ctx)
	if s.rpc != nil {
		s.rpc.Close()
		if c, ok := s.rpc.Backend().(io.Closer); ok {
			_ = c.Close()
		}
	}
	hctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_ = s.http.Shutdown(hctx)
	cancel()
	s.wg.Wait()
	s.node.Close()
	s.webhooks.close() // after the node's last presence leaves
	s.tr.Close()
	return err
}

// MinDrainRate is the fewest connections a second a drain tells to go:
// DrainWindow is shortened to keep above it.
const MinDrainRate = 200

// tellDraining sends every connection disconnect 4009, spread over
// DrainWindow (cut to end CloseGrace before ctx's deadline) in a random
// order, in steps of 10ms. It returns ctx's error if ctx ends first; the
// connections not told by then are left for Shutdown to close.
func (s *Server) tellDraining(ctx context.Context) error {
	conns := s.tr.Conns(nil)
	// A few connections are told at once: the window spreads a crowd, it
	// never holds a handful back.
	window := min(s.cfg.DrainWindow, time.Duration(len(conns))*time.Second/MinDrainRate)
	if dl, ok := ctx.Deadline(); ok {
		window = min(window, time.Until(dl)-transport.CloseGrace)
	}
	const step = 10 * time.Millisecond
	steps := int(window / step)
	if steps <= 1 {
		for _, tc := range conns {
			tellOne(tc)
		}
		return nil
	}
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	s.log.Info("spreading the drain's disconnects", "connections", len(conns), "window", window)
	start := time.Now()
	tick := time.NewTicker(step)
	defer tick.Stop()
	told := 0
	for told < len(conns) {
		// By now, the share of the window that has passed.
		due := len(conns)
		if el := time.Since(start); el < window {
			due = int(int64(len(conns)) * int64(el) / int64(window))
		}
		for ; told < due; told++ {
			tellOne(conns[told])
			conns[told] = nil
		}
		if told == len(conns) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// tellOne sends one connection the drain's disconnect; one that was not
// upgraded yet is closed.
func tellOne(tc *transport.Conn) {
	if c, ok := tc.Session().(session); ok {
		c.CloseWith(protocol.CodeShutdown, "server shutting down", true)
	} else {
		tc.Destroy()
	}
}

// sweep runs the per-second checks of every connection: connect timeout,
// token expiry, pings, silent peers and closes that did not finish.
func (s *Server) sweep() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var batch []*transport.Conn
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			batch = s.tr.Sweep(now, batch)
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// dialRPC returns the client for the application backend at cfg.URL:
// http(s):// is AnyCable's HTTP RPC, grpc:// and grpcs:// its gRPC service,
// and a bare host:port gRPC too, as anycable-go reads its RPC host.
func dialRPC(cfg rpc.Config) (rpc.Backend, error) {
	if !strings.Contains(cfg.URL, "://") {
		cfg.URL = "grpc://" + cfg.URL
	}
	if strings.HasPrefix(cfg.URL, "grpc://") || strings.HasPrefix(cfg.URL, "grpcs://") {
		return grpcrpc.New(cfg)
	}
	return rpc.New(cfg)
}
