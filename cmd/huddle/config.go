package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// envName is the environment twin of a flag: --api-key <-> HUDDLE_API_KEY.
func envName(flagName string) string {
	return "HUDDLE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// anycableEnv maps AnyCable's environment names to the flags they mean, so
// an AnyCable deployment's environment carries over. A HUDDLE_* twin wins
// over them; docs/anycable.md lists them.
var anycableEnv = map[string][]string{
	"secret":          {"ANYCABLE_SECRET"},
	"streams-secret":  {"ANYCABLE_STREAMS_SECRET"},
	"api-key":         {"ANYCABLE_BROADCAST_KEY", "ANYCABLE_HTTP_BROADCAST_SECRET"},
	"public":          {"ANYCABLE_PUBLIC"},
	"allow-anonymous": {"ANYCABLE_NOAUTH"},
	"redis-url":       {"ANYCABLE_REDIS_URL"},
	"log-level":       {"ANYCABLE_LOG_LEVEL"},
	"rpc-url":         {"ANYCABLE_RPC_HOST"},
	"rpc-secret":      {"ANYCABLE_HTTP_RPC_SECRET"},
	"rpc-concurrency": {"ANYCABLE_RPC_CONCURRENCY"},
	"rpc-headers":     {"ANYCABLE_HEADERS"},
	"disconnect-rate": {"ANYCABLE_DISCONNECT_RATE"},
}

// applyEnv sets every flag not given on the command line from its
// environment twin (or, failing that, its AnyCable name), so the command
// line wins over the environment.
// It marks in set the flags it set.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool), set map[string]bool) error {
	cli := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { cli[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if cli[f.Name] || err != nil {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		for _, alt := range anycableEnv[f.Name] {
			if ok {
				break
			}
			name = alt
			v, ok = lookup(alt)
		}
		if !ok {
			return
		}
		set[f.Name] = true
		if lv, isList := f.Value.(*listFlag); isList {
			for _, item := range strings.Fields(v) {
				if e := lv.Set(item); e != nil {
					err = fmt.Errorf("%s: %w", name, e)
				}
			}
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s=%q: %w", name, v, e)
		}
	})
	return err
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// sizeFlag reads byte sizes such as 4096, 64KiB or 1MiB.
type sizeFlag int

func (s *sizeFlag) String() string { return fmt.Sprint(int(*s)) }
func (s *sizeFlag) Set(v string) error {
	mult := 1
	num := strings.TrimSpace(v)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	var n int
	if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != num {
		return fmt.Errorf("bad size %q (want e.g. 4096, 64KiB, 1MiB)", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

type options struct {
	configFile      string
	addr            string
	secret          string
	jwtPublicKey    string
	jwtAudience     string
	jwtIssuer       string
	allowAnonymous  bool
	allowedOrigins  string
	apiKey          string
	brokerKind      string
	redisURL        string
	redisPrefix     string
	historySize     int
	historyTTL      time.Duration
	historyMemory   sizeFlag // memory broker only
	historyStream   sizeFlag // both brokers
	documentMemory  sizeFlag // memory broker only
	documentMax     sizeFlag // both brokers
	compactEvery    int
	rules           listFlag
	maxMessage      sizeFlag
	maxQueue        sizeFlag
	connectTimeout  time.Duration
	pingInterval    time.Duration
	shutdownTimeout time.Duration
	drainWindow     time.Duration
	adminPassword   string
	workers         int
	node            string
	dev             bool
	logLevel        string
	logFormat       string
	portable        bool
	pprof           bool
	whisperRate     float64
	whisperBurst    int
	whisperPace     time.Duration
	maxWhisper      sizeFlag
	presenceGrace   time.Duration
	presenceTick    time.Duration
	presenceTTL     time.Duration
	maxState        sizeFlag
	maxMembers      int
	updateRate      float64
	maxSubs         int
	messageRate     float64
	whisperCache    sizeFlag
	httpReadTimeout time.Duration
	metricsAddr     string
	public          bool
	streamsSecret   string
	cablePing       time.Duration
	sessionsTTL     time.Duration
	rpcURL          string
	rpcSecret       string
	rpcConcurrency  int
	rpcHeaders      string
	disconnectRate  float64

	webhooks webhookOptions // --webhook-* (webhooks.go)

	// /ws's application hooks (docs/hooks.md).
	connectHook          string
	subscribeHook        string
	publishHook          string
	hookSecret           string
	connectHookTimeout   time.Duration
	subscribeHookTimeout time.Duration
	publishHookTimeout   time.Duration
	hookConcurrency      int
	hookHeaders          string
}

func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("huddle", flag.ContinueOnError)
	fs.StringVar(&o.configFile, configFlag, "", "TOML file of settings: every flag is a key of the same name (api-key = \"…\", rule = [\"…\"]); the environment and the command line override it (huddle config prints the effective settings)")
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on (WebSocket at /ws, HTTP API, metrics)")
	fs.StringVar(&o.secret, "secret", "", "HS256 secret that signs client tokens, at least 32 bytes (e.g. openssl rand -hex 32)")
	fs.StringVar(&o.jwtPublicKey, "jwt-public-key", "", "PEM file with RS256/ES256 public key(s) that verify client tokens")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "require this value in every token's aud claim (string or array); tokens without it are refused")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "require every token's iss claim to equal this; tokens without it are refused")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated browser origins allowed to open a WebSocket, e.g. https://app.example.com,https://*.example.com, or * for any (default: the server's own origin and loopback origins)")
	fs.BoolVar(&o.allowAnonymous, "allow-anonymous", false, "let clients connect without a token")
	fs.StringVar(&o.apiKey, "api-key", "", "bearer key for the HTTP API (/api/*); empty disables the API")
	fs.StringVar(&o.brokerKind, "broker", "memory", "broker backend: memory (single node) or redis (several nodes on one Redis)")
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis for --broker redis: redis://[user:pass@]host:port/db (rediss:// for TLS), or a comma-separated list of Redis Cluster seed nodes")
	fs.StringVar(&o.redisPrefix, "redis-prefix", "huddle:", "start of every Redis key and channel name, so deployments can share a Redis")
	fs.IntVar(&o.historySize, "history-size", 100, "publications kept per stream unless a rule says otherwise (0 disables history)")
	fs.DurationVar(&o.historyTTL, "history-ttl", 5*time.Minute, "how long publications are kept unless a rule says otherwise")
	o.historyMemory, o.historyStream = 256<<20, 16<<20 // storage.DefaultMaxBytes, storage.DefaultMaxStreamBytes
	fs.Var(&o.historyMemory, "history-memory", "history kept in memory by --broker memory, all streams together; over it the oldest publications of any stream go (0: no bound)")
	fs.Var(&o.historyStream, "history-stream-memory", "history kept per stream, in memory or in Redis; over it the stream's oldest publications go, never its newest (0: no bound)")
	o.documentMemory, o.documentMax = 1<<30, 64<<20 // storage.DefaultDocumentBudget, storage.DefaultMaxDocumentBytes
	fs.Var(&o.documentMemory, "document-memory", "document streams (rule option document=on) kept in memory by --broker memory, all together; over it publishes to documents are refused with 4005 (0: no bound)")
	fs.Var(&o.documentMax, "document-max-bytes", "what one document stream may hold, its snapshot and the publications since, in memory or in Redis; over it publishes are refused with 4005 until a snapshot makes room (0: no bound)")
	fs.IntVar(&o.compactEvery, "document-compact-every", 1000, "publications of a document stream between two requests to the publisher for a snapshot (ack.compact)")
	fs.Var(&o.rules, "rule", "stream rule PREFIX=OPS[;deny=OPS][;history=N][;ttl=D][;presence=on|off][;whisper=on|off][;subscribe-hook=on|off][;publish-hook=on|off][;document=on|off] (repeatable)")
	o.maxMessage, o.maxQueue = 1<<20, 4<<20
	fs.Var(&o.maxMessage, "max-message", "largest WebSocket message accepted (larger closes with 4005)")
	fs.Var(&o.maxQueue, "max-queue", "per-connection outbound queue bound (over it closes with 4008)")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "time a client has to send connect (else 4001)")
	fs.DurationVar(&o.pingInterval, "ping-interval", 25*time.Second, "server ping interval; two silent intervals close with 4011")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "longest graceful drain on SIGTERM")
	fs.DurationVar(&o.drainWindow, "drain-window", 5*time.Second, "a drain's disconnects (4009) are spread over this long, at least 200 a second, ending 2s before --shutdown-timeout (0: all at once)")
	fs.StringVar(&o.adminPassword, "admin-password", "", "password of the /admin page (HTTP Basic, any user name); the API key opens it too (empty and no API key: closed)")
	fs.IntVar(&o.workers, "workers", 128, "worker goroutines that read, process and write for connections")
	fs.StringVar(&o.node, "node", "", "node name shown to clients (default: random)")
	fs.BoolVar(&o.dev, "dev", false, "development mode (loopback only): generated secret, token printed, demo page at /")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.BoolVar(&o.portable, "portable", false, "use a goroutine per connection instead of epoll")
	fs.Float64Var(&o.whisperRate, "whisper-rate", 60, "whispers per second a connection may send (excess dropped, one 4006 error a second)")
	fs.IntVar(&o.whisperBurst, "whisper-burst", 120, "whispers a connection may send at once")
	fs.DurationVar(&o.whisperPace, "whisper-pace", 25*time.Millisecond, "longest a whisper may wait to share a write with the next ones, for a receiver written to less than this ago (0: send each at once)")
	o.maxWhisper = 4096
	fs.Var(&o.maxWhisper, "max-whisper", "largest whisper data (larger gets error 4005)")
	fs.DurationVar(&o.presenceGrace, "presence-grace", 5*time.Second, "how long a member whose connection dropped stays before its leave goes out")
	fs.DurationVar(&o.presenceTick, "presence-tick", 50*time.Millisecond, "a member's updates go out at most once a tick; a stream's changes go out as one diff every half tick")
	fs.DurationVar(&o.presenceTTL, "presence-ttl", 30*time.Second, "how long a member lives without its node's heartbeat")
	o.maxState = 4096
	fs.Var(&o.maxState, "max-presence-state", "largest presence state (larger gets error 4005)")
	fs.IntVar(&o.maxMembers, "max-presence-members", 10000, "most presence members per stream (more get error 4003)")
	fs.Float64Var(&o.updateRate, "presence-update-rate", 30, "presence updates per second a connection may send (burst twice that)")
	fs.IntVar(&o.maxSubs, "max-subscriptions", 1000, "subscriptions per connection (more get error 4006)")
	fs.Float64Var(&o.messageRate, "message-rate", 1000, "messages per second a connection may send (burst twice that); excess dropped with error 4006, a sustained flood closes with 4006")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go profiles at /debug/pprof/ (needs --api-key)")
	o.whisperCache = 64 << 20
	fs.Var(&o.whisperCache, "whisper-cache", "latest whispers kept for late joiners, all streams together; a whisper over it is relayed but not cached")
	fs.DurationVar(&o.httpReadTimeout, "http-read-timeout", 30*time.Second, "longest time to read an HTTP request, body included (a slower client is cut)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "also serve /metrics here without the API key (e.g. 127.0.0.1:9090); on --addr, /metrics needs the API key")
	fs.BoolVar(&o.public, "public", false, "anonymous clients may connect, and every stream allows sub, whisper, presence and history to anyone (like anycable-go's --public; --rule deny= still applies; publishing stays with the API)")
	fs.StringVar(&o.streamsSecret, "streams-secret", "", "secret that verifies /cable's signed stream names (Turbo Streams, $pubsub signed_stream_name); default: --secret")
	fs.DurationVar(&o.cablePing, "cable-ping-interval", 3*time.Second, "how often /cable pings (Rails' client counts a connection stale after 6s without one)")
	fs.DurationVar(&o.sessionsTTL, "sessions-ttl", 5*time.Minute, "how long /cable keeps a dropped connection's session, so that a client reconnecting with ?sid= gets restored: true and its subscriptions back (0: no restore)")
	fs.StringVar(&o.rpcURL, "rpc-url", "", "/cable's application backend, AnyCable RPC: http(s)://host/path gets POSTs to path/connect, path/command and path/disconnect; grpc://host:port (or host:port) calls the anycable.RPC gRPC service (empty: channels other than $pubsub and Turbo Streams are rejected)")
	fs.StringVar(&o.rpcSecret, "rpc-secret", "", "sent to an http(s) --rpc-url as Authorization: Bearer")
	fs.IntVar(&o.rpcConcurrency, "rpc-concurrency", 28, "backend calls in flight at most; more wait for a slot")
	fs.StringVar(&o.rpcHeaders, "rpc-headers", "cookie", "comma-separated request headers sent to the backend with a connect")
	fs.Float64Var(&o.disconnectRate, "disconnect-rate", 100, "backend disconnect calls a second at most, so a mass disconnect does not flood it (0: no bound)")
	fs.StringVar(&o.connectHook, "connect-hook", "", "/ws: http(s) URL the application answers connects at, for tokens that are not Huddle JWTs (no token, a session cookie, an opaque token); see docs/hooks.md")
	fs.StringVar(&o.subscribeHook, "subscribe-hook", "", "/ws: http(s) URL the application allows or denies subscribes at (every stream unless a --rule says subscribe-hook=off)")
	fs.StringVar(&o.publishHook, "publish-hook", "", "/ws: http(s) URL the application allows, denies or rewrites client publishes at (every stream unless a --rule says publish-hook=off)")
	fs.StringVar(&o.hookSecret, "hook-secret", "", "sent to the hooks as Authorization: Bearer, so the application can tell Huddle's calls")
	fs.DurationVar(&o.connectHookTimeout, "connect-hook-timeout", 3*time.Second, "longest wait for the connect hook's answer; past it the client is closed with 4500 and reconnects")
	fs.DurationVar(&o.subscribeHookTimeout, "subscribe-hook-timeout", 3*time.Second, "longest wait for the subscribe hook's answer; past it the sub gets error 4500")
	fs.DurationVar(&o.publishHookTimeout, "publish-hook-timeout", 3*time.Second, "longest wait for the publish hook's answer; past it the pub gets error 4500")
	fs.IntVar(&o.hookConcurrency, "hook-concurrency", 28, "hook calls in flight at most, all hooks together; more wait for a slot within their timeout")
	fs.StringVar(&o.hookHeaders, "hook-headers", "cookie,authorization,origin,user-agent,x-*", "comma-separated upgrade request headers sent to the connect hook; a trailing * matches a prefix")
	o.webhooks.flags(fs)
	fs.Usage = func() { usage(fs) }
	return fs
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: huddle [flags]\n       huddle token ...    mint a client token (huddle token --help)\n       huddle config ...   print the effective settings, secrets masked\n       huddle version      print the version and commit\n\nHuddle is a real-time collaboration server. Every flag has an environment twin\n(--api-key <-> HUDDLE_API_KEY) and a key of the same name in the --config\nfile; the command line wins over the environment, which wins over the file.\n\nFlags:\n")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  --%s  [%s]\n      %s%s\n", n, envName(n), f.Usage, def)
	}
}

func parseOptions(args []string) (*options, error) {
	o, _, err := parseFlags(args)
	return o, err
}

// parseFlags reads the configuration: the flags' defaults, then the
// --config file, then the environment, then the command line, each over
// the one before.
func parseFlags(args []string) (*options, *flag.FlagSet, error) {
	o := &options{}
	fs := newFlagSet(o)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected argument %q (flags start with --; commands: token, config, version)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyEnv(fs, os.LookupEnv, set); err != nil {
		return nil, nil, err
	}
	if o.configFile != "" {
		if err := applyFile(fs, o.configFile, set); err != nil {
			return nil, nil, err
		}
	}
	return o, fs, nil
}
