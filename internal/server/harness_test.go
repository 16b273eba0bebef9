package server_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/server"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

const (
	testSecret = "test-secret-0123456789"
	testAPIKey = "test-api-key"
	wait       = 5 * time.Second
)

// harness is a real server on a loopback port.
type harness struct {
	t    *testing.T
	srv  *server.Server
	addr string
	URL  string // ws://.../ws
	HTTP string // http://...
}

type harnessOpts struct {
	cfg   server.Config
	auth  auth.Config
	rules []string
	deps  server.Deps // Auth is set by start
}

func start(t *testing.T, opts ...func(*harnessOpts)) *harness {
	t.Helper()
	o := harnessOpts{
		cfg:  server.Config{APIKey: testAPIKey, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		auth: auth.Config{Secret: []byte(testSecret)},
	}
	// CI runs the suite once more on the goroutine-per-connection transport.
	o.cfg.ForcePortable = os.Getenv("HUDDLE_TEST_PORTABLE") != ""
	for _, f := range opts {
		f(&o)
	}
	for _, r := range o.rules {
		rule, err := auth.ParseRule(r)
		if err != nil {
			t.Fatal(err)
		}
		o.auth.Rules = append(o.auth.Rules, rule)
	}
	a, err := auth.New(o.auth)
	if err != nil {
		t.Fatal(err)
	}
	o.deps.Auth = a
	srv, err := server.New(o.cfg, o.deps)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	h := &harness{t: t, srv: srv, addr: ln.Addr().String()}
	h.URL = "ws://" + h.addr + "/ws"
	h.HTTP = "http://" + h.addr
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return h
}

// allStreams grants every op on every stream.
var allStreams = map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}

// token signs a token for user with full grants, valid for an hour.
func token(t *testing.T, user string) string {
	t.Helper()
	return tokenWith(t, user, time.Now().Add(time.Hour), allStreams)
}

func tokenWith(t *testing.T, user string, exp time.Time, streams map[string][]string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(testSecret), user, exp, map[string]any{"name": strings.ToUpper(user)}, streams)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects a msgpack client as user.
func (h *harness) dial(user string, opts ...func(*wsclient.Options)) *wsclient.Client {
	h.t.Helper()
	return h.dialToken(token(h.t, user), opts...)
}

func (h *harness) dialToken(tok string, opts ...func(*wsclient.Options)) *wsclient.Client {
	h.t.Helper()
	var o wsclient.Options
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := wsclient.DialConnected(ctx, h.URL, tok, o)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

// subscribe subscribes c to stream and returns the reply.
func subscribe(t *testing.T, c *wsclient.Client, id uint64, stream string, recover *protocol.Position) *protocol.Subscribed {
	t.Helper()
	if err := c.Send(&protocol.Subscribe{ID: id, S: stream, Recover: recover}); err != nil {
		t.Fatal(err)
	}
	m, err := wsclient.Wait[*protocol.Subscribed](c, wait)
	if err != nil {
		t.Fatalf("subscribe %s: %v", stream, err)
	}
	return m
}

// apiPublish publishes through the HTTP API and returns the response body.
func (h *harness) apiPublish(body string) (int, string) {
	h.t.Helper()
	return h.post("/api/publish", testAPIKey, body)
}
