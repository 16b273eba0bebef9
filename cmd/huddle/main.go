// Command huddle runs a Huddle real-time collaboration server.
//
// It only turns flags and environment into configuration, wires the parts
// together and handles signals; everything else lives in internal/server.
package main

import (
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/internal/server"
	"github.com/huddle-rt/huddle/internal/tracing"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/whisper"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "huddle:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	if ok, err := command(args, os.Stdout); ok {
		return err
	}
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	logger, err := newLogger(o)
	if err != nil {
		return err
	}
	stopTraces, err := tracing.Setup(context.Background(), versionLine())
	if err != nil {
		return fmt.Errorf("traces (OTEL_EXPORTER_OTLP_*): %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = stopTraces(ctx) // the spans still batched go out
	}()
	if tracing.Enabled() {
		logger.Info("traces go to OTLP over HTTP", "endpoint", cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")))
	}
	if o.compactEvery < 1 {
		return fmt.Errorf("--document-compact-every %d: want at least 1", o.compactEvery)
	}
	deps := server.Deps{}
	switch o.brokerKind {
	case "memory":
		history := storage.NewMemoryLogWith(storage.MemoryConfig{
			MaxBytes: int(o.historyMemory), MaxStreamBytes: int(o.historyStream),
			MaxDocumentBytes: int(o.documentMax), DocumentBudget: int(o.documentMemory),
		})
		defer history.Close() // for the early returns; the server's Shutdown closes it too
		deps.Log = history
	case "redis":
		r, err := newRedis(o)
		if err != nil {
			return err
		}
		defer r.Close()
		r.deps(&deps, logger)
	default:
		return fmt.Errorf("--broker %q: want memory or redis", o.brokerKind)
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen on --addr %s: %w", o.addr, err)
	}
	var dev *devMode
	if o.dev {
		if dev, err = setupDev(o, ln.Addr()); err != nil {
			ln.Close()
			return err
		}
	}
	authn, err := newAuth(o)
	if err != nil {
		ln.Close()
		return err
	}
	origins, err := parseOrigins(o.allowedOrigins)
	if err != nil {
		ln.Close()
		return err
	}
	switch {
	case slices.Contains(origins, "*"):
		logger.Warn("--allowed-origins * lets pages of any web site open WebSockets to this server")
	case len(origins) == 0:
		logger.Info("browser pages may open WebSockets only from this server's own origin and loopback origins; list others in --allowed-origins")
	}
	if o.apiKey == "" {
		logger.Warn("the HTTP API (/api/*) is disabled: set --api-key to enable it")
	}
	cfg := server.Config{
		APIKey:           o.apiKey,
		AllowedOrigins:   origins,
		Node:             o.node,
		MaxMessage:       int(o.maxMessage),
		MaxQueue:         int(o.maxQueue),
		ConnectTimeout:   o.connectTimeout,
		PingInterval:     o.pingInterval,
		CompactEvery:     o.compactEvery,
		Workers:          o.workers,
		ForcePortable:    o.portable,
		Profiling:        o.pprof,
		MaxSubscriptions: o.maxSubs,
		MessageRate:      o.messageRate,
		MessageBurst:     int(2 * o.messageRate),
		Presence: presence.Config{Grace: o.presenceGrace, TTL: o.presenceTTL, Tick: o.presenceTick, MaxState: int(o.maxState),
			MaxMembers: o.maxMembers, UpdateRate: o.updateRate, UpdateBurst: int(2 * o.updateRate)},
		Whisper:         whisper.Config{Rate: o.whisperRate, Burst: o.whisperBurst, MaxData: int(o.maxWhisper), MaxCacheBytes: int(o.whisperCache)},
		HTTPReadTimeout: o.httpReadTimeout,
		WhisperPace:     pace(o.whisperPace),
		DrainWindow:     o.drainWindow,
		AdminPassword:   o.adminPassword,
		Logger:          logger,

		StreamsSecret:     []byte(cmp.Or(o.streamsSecret, o.secret)),
		CableJWTSecret:    []byte(o.secret),
		CablePingInterval: o.cablePing,
		SessionsTTL:       sessionsTTL(o.sessionsTTL),
		RPCURL:            o.rpcURL,
		RPCSecret:         o.rpcSecret,
		RPCConcurrency:    o.rpcConcurrency,
		RPCHeaders:        splitList(o.rpcHeaders),
		DisconnectRate:    o.disconnectRate,
	}
	cfg.Hooks = hooks.Config{
		ConnectURL:       o.connectHook,
		SubscribeURL:     o.subscribeHook,
		PublishURL:       o.publishHook,
		Secret:           o.hookSecret,
		ConnectTimeout:   o.connectHookTimeout,
		SubscribeTimeout: o.subscribeHookTimeout,
		PublishTimeout:   o.publishHookTimeout,
		Concurrency:      o.hookConcurrency,
		Headers:          append([]string{}, splitList(o.hookHeaders)...), // empty: none
	}
	if err := o.webhooks.apply(&cfg); err != nil {
		ln.Close()
		return err
	}
	if dev != nil {
		cfg.Pages = dev.pages()
	}
	deps.Auth = authn
	srv, err := server.New(cfg, deps)
	if err != nil {
		ln.Close()
		return err
	}
	mode := "epoll"
	if srv.Portable() {
		mode = "portable"
	}
	logger.Info("huddle listening", "addr", ln.Addr().String(), "ws", "ws://"+ln.Addr().String()+"/ws", "cable", "ws://"+ln.Addr().String()+"/cable", "events", "http://"+ln.Addr().String()+"/events", "transport", mode, "broker", o.brokerKind, "node", srv.Node())
	if dev != nil {
		dev.announce(os.Stdout)
	}

	serveErr := make(chan error, 2)
	if o.metricsAddr != "" {
		mln, err := net.Listen("tcp", o.metricsAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on --metrics-addr %s: %w", o.metricsAddr, err)
		}
		ms := &http.Server{Handler: metricsMux(srv.MetricsHandler()), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: o.httpReadTimeout}
		defer ms.Close()
		go func() {
			if err := ms.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("--metrics-addr: %w", err)
			}
		}()
		logger.Info("metrics listening", "url", "http://"+mln.Addr().String()+"/metrics")
	}
	go func() { serveErr <- srv.Serve(ln) }()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-serveErr:
		return err
	case sig := <-sigs:
		logger.Info("draining", "signal", sig.String(), "timeout", o.shutdownTimeout)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	go func() {
		// A second signal stops waiting.
		<-sigs
		cancel()
	}()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("drain cut short; remaining connections closed", "err", err, "took", time.Since(start))
		return nil
	}
	logger.Info("drained", "took", time.Since(start))
	return nil
}

func newLogger(o *options) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level, ReplaceAttr: readableDurations}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", o.logFormat)
}

// readableDurations writes durations as Go spells them ("1.5s", "250ms")
// in both formats: the JSON handler would write nanoseconds.
func readableDurations(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

// minSecretLen is the shortest --secret accepted outside --dev: 32 bytes is
// HS256's own output size (RFC 7518 section 3.2), and a shorter secret,
// typically a human-chosen word, can be guessed offline from any single
// token, after which anyone can sign tokens for any user.
const minSecretLen = 32

func newAuth(o *options) (*auth.Authenticator, error) {
	if o.secret != "" && len(o.secret) < minSecretLen && !o.dev {
		return nil, fmt.Errorf("refusing to start: --secret (HUDDLE_SECRET) is %d bytes; it must be at least %d random bytes, or anyone who guesses it can sign tokens (generate one with: openssl rand -hex 32)", len(o.secret), minSecretLen)
	}
	cfg := auth.Config{
		Secret:             []byte(o.secret),
		Audience:           o.jwtAudience,
		Issuer:             o.jwtIssuer,
		AllowAnonymous:     o.allowAnonymous || o.public,
		ConnectHook:        o.connectHook != "",
		DefaultHistorySize: o.historySize,
		DefaultHistoryTTL:  o.historyTTL,
	}
	if o.historySize == 0 {
		cfg.DefaultHistorySize = auth.HistoryDisabled
	}
	if o.jwtPublicKey != "" {
		pem, err := os.ReadFile(o.jwtPublicKey)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key: %w", err)
		}
		keys, err := auth.ParsePublicKeysPEM(pem)
		if err != nil {
			return nil, fmt.Errorf("--jwt-public-key %s: %w", o.jwtPublicKey, err)
		}
		cfg.PublicKeys = append([]crypto.PublicKey(nil), keys...)
	}
	rules := o.rules
	if o.public {
		// Every stream for everyone but publishing; a rule's deny= still
		// wins, as denial always does.
		rules = append(rules[:len(rules):len(rules)], "=sub,whisper,presence,history")
	}
	for _, r := range rules {
		rule, err := auth.ParseRule(r)
		if err != nil {
			return nil, fmt.Errorf("--rule: %w", err)
		}
		cfg.Rules = append(cfg.Rules, rule)
	}
	a, err := auth.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("refusing to start: %w (for a local trial run: huddle --dev)", err)
	}
	return a, nil
}

// parseOrigins splits --allowed-origins at commas and checks every entry, so
// that a typo fails at startup instead of refusing every browser.
func parseOrigins(list string) ([]string, error) {
	var origins []string
	for _, e := range strings.Split(list, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		if err := server.CheckOriginPattern(e); err != nil {
			return nil, fmt.Errorf("--allowed-origins: %w", err)
		}
		origins = append(origins, e)
	}
	return origins, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// splitList splits a comma-separated flag, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// sessionsTTL maps the flag's 0 (off) to the server's "no restore".
func sessionsTTL(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// pace maps the flag's 0 (off) to the server's "never pace".
func pace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// metricsMux serves h at /metrics and nothing else.
func metricsMux(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	return mux
}
