package server_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// ---- helpers shared by connect_test.go, pubsub_test.go and recovery_test.go ----

// jsonOpts makes a client speak huddle.v1.json.
func jsonOpts(o *wsclient.Options) { o.Subprotocols = []string{protocol.SubprotocolJSON} }

// codecOpts returns the dial option for codec.
func codecOpts(codec protocol.Codec) func(*wsclient.Options) {
	return func(o *wsclient.Options) { o.Subprotocols = []string{codec.Subprotocol()} }
}

// dialRaw opens a WebSocket to url without sending connect.
func dialRaw(t *testing.T, url string, o wsclient.Options) *wsclient.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := wsclient.Dial(ctx, url, o)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialConnect dials h and connects with tok, returning the connected reply
// too (h.dial drops it).
func dialConnect(t *testing.T, h *harness, tok string, opts ...func(*wsclient.Options)) (*wsclient.Client, *protocol.Connected) {
	t.Helper()
	var o wsclient.Options
	for _, f := range opts {
		f(&o)
	}
	c := dialRaw(t, h.URL, o)
	cm, err := c.Connect(tok, wait)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c, cm
}

// dialUser connects a client as user with full grants. Unlike h.dial it
// reports to t, so it is safe in subtests.
func dialUser(t *testing.T, h *harness, user string, opts ...func(*wsclient.Options)) *wsclient.Client {
	t.Helper()
	c, _ := dialConnect(t, h, token(t, user), opts...)
	return c
}

// dialTok connects a client with tok; see dialUser.
func dialTok(t *testing.T, h *harness, tok string, opts ...func(*wsclient.Options)) *wsclient.Client {
	t.Helper()
	c, _ := dialConnect(t, h, tok, opts...)
	return c
}

// nextMsg returns the next message from c other than a server ping.
func nextMsg(t *testing.T, c *wsclient.Client) protocol.Message {
	t.Helper()
	for {
		m, err := c.Next(wait)
		if err != nil {
			code, reason := c.CloseCode()
			t.Fatalf("next message: %v (close code %d %q)", err, code, reason)
		}
		if _, ok := m.(*protocol.Ping); !ok {
			return m
		}
	}
}

// nextAs returns the next message (pings aside) and fails unless it is a T.
// Unlike wsclient.Wait it skips nothing else, so stray messages are caught.
func nextAs[T protocol.Message](t *testing.T, c *wsclient.Client) T {
	t.Helper()
	m := nextMsg(t, c)
	v, ok := m.(T)
	if !ok {
		var zero T
		t.Fatalf("got %s %+v, want %T", m.Type(), m, zero)
	}
	return v
}

// wantError reads the next message and checks that it is an error reply
// with id and code.
func wantError(t *testing.T, c *wsclient.Client, id uint64, code protocol.Code) *protocol.ErrorReply {
	t.Helper()
	e := nextAs[*protocol.ErrorReply](t, c)
	if e.ID != id || e.Code != code {
		t.Fatalf("error reply id=%d code=%d (%q), want id=%d code=%d", e.ID, e.Code, e.Reason, id, code)
	}
	if e.Reason == "" {
		t.Errorf("error reply %d has no reason", e.Code)
	}
	return e
}

// wantDisconnect checks that the next message is disconnect with code and
// reconnect, and that the close frame that follows carries the same code.
func wantDisconnect(t *testing.T, c *wsclient.Client, code protocol.Code, reconnect bool) {
	t.Helper()
	d := nextAs[*protocol.Disconnect](t, c)
	if d.Code != code || d.Reconnect != reconnect {
		t.Fatalf("disconnect code=%d reconnect=%v (%q), want code=%d reconnect=%v", d.Code, d.Reconnect, d.Reason, code, reconnect)
	}
	got, err := c.WaitClosed(wait)
	if err != nil {
		t.Fatal(err)
	}
	if got != int(code) {
		t.Fatalf("close frame code %d, want %d", got, code)
	}
}

// wantAlive checks that c still answers a ping, and that nothing else was
// queued before the pong.
func wantAlive(t *testing.T, c *wsclient.Client) {
	t.Helper()
	if err := c.Send(&protocol.Ping{}); err != nil {
		t.Fatalf("send ping: %v", err)
	}
	nextAs[*protocol.Pong](t, c)
}

// codecName names a codec in subtest names.
func codecName(c protocol.Codec) string {
	if c == protocol.JSON {
		return "json"
	}
	return "msgpack"
}

// ---- tests ----

func TestConnectGoodToken(t *testing.T) {
	h := start(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			c1, m1 := dialConnect(t, h, tokenWith(t, "alice", exp, allStreams), codecOpts(codec))
			_, m2 := dialConnect(t, h, tokenWith(t, "alice", exp, allStreams), codecOpts(codec))
			if c1.Codec != codec {
				t.Fatalf("negotiated %v, want %v", c1.Codec, codec)
			}
			if m1.ID != 1 {
				t.Errorf("connected id %d, want 1 (the connect's id)", m1.ID)
			}
			if _, err := uuid.Parse(m1.Client); err != nil {
				t.Errorf("client %q is not a uuid: %v", m1.Client, err)
			}
			if m1.Client == m2.Client {
				t.Errorf("two connections share client id %q", m1.Client)
			}
			if m1.User != "alice" {
				t.Errorf("user %q, want alice", m1.User)
			}
			if m1.Ping != 25 {
				t.Errorf("ping %d, want the default 25", m1.Ping)
			}
			if m1.Exp != exp.Unix() {
				t.Errorf("exp %d, want %d", m1.Exp, exp.Unix())
			}
			// A second connect on a connected connection is refused, not fatal.
			if err := c1.Send(&protocol.Connect{ID: 9, Token: token(t, "alice")}); err != nil {
				t.Fatal(err)
			}
			wantError(t, c1, 9, protocol.CodeBadRequest)
			wantAlive(t, c1)
		})
	}
}

func TestConnectNoExpiry(t *testing.T) {
	h := start(t)
	_, m := dialConnect(t, h, tokenWith(t, "bob", time.Time{}, allStreams))
	if m.Exp != 0 || m.User != "bob" {
		t.Fatalf("connected %+v, want user bob and no exp", m)
	}
}

func TestConnectRejected(t *testing.T) {
	h := start(t)
	otherSecret, err := auth.SignHS256([]byte("some-other-secret-0123"), "alice", time.Now().Add(time.Hour), nil, allStreams)
	if err != nil {
		t.Fatal(err)
	}
	noSub, err := auth.SignHS256([]byte(testSecret), "", time.Now().Add(time.Hour), nil, allStreams)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		first     protocol.Message
		code      protocol.Code
		reconnect bool
	}{
		{"bad signature", &protocol.Connect{ID: 1, Token: otherSecret}, protocol.CodeUnauthorized, false},
		{"malformed token", &protocol.Connect{ID: 1, Token: "not.a.jwt"}, protocol.CodeUnauthorized, false},
		{"no sub", &protocol.Connect{ID: 1, Token: noSub}, protocol.CodeUnauthorized, false},
		{"no token", &protocol.Connect{ID: 1}, protocol.CodeUnauthorized, false},
		{"expired", &protocol.Connect{ID: 1, Token: tokenWith(t, "alice", time.Now().Add(-time.Minute), allStreams)}, protocol.CodeTokenExpired, true},
		{"first message sub", &protocol.Subscribe{ID: 1, S: "room"}, protocol.CodeUnauthorized, false},
		{"first message ping", &protocol.Ping{}, protocol.CodeUnauthorized, false},
	}
	for _, tt := range tests {
		for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
			t.Run(tt.name+"/"+codecName(codec), func(t *testing.T) {
				c := dialRaw(t, h.URL, wsclient.Options{Subprotocols: []string{codec.Subprotocol()}})
				if err := c.Send(tt.first); err != nil {
					t.Fatal(err)
				}
				wantDisconnect(t, c, tt.code, tt.reconnect)
			})
		}
	}
}

func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	h := start(t, func(o *harnessOpts) { o.cfg.ConnectTimeout = 300 * time.Millisecond })
	began := time.Now()
	silent := dialRaw(t, h.URL, wsclient.Options{})
	// A connection that does connect in time is not affected.
	ok, _ := dialConnect(t, h, token(t, "alice"))
	wantDisconnect(t, silent, protocol.CodeUnauthorized, false)
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the connect timeout", d)
	}
	// The sweep runs every second; give it one more.
	time.Sleep(1100 * time.Millisecond)
	wantAlive(t, ok)
}

// handshake sends a WebSocket upgrade request for path with the given
// Sec-WebSocket-Protocol header lines and returns the response.
func handshake(t *testing.T, h *harness, path string, protocols []string, extra http.Header) *http.Response {
	t.Helper()
	nc, err := net.DialTimeout("tcp", h.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, h.addr)
	b.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	for _, p := range protocols {
		fmt.Fprintf(&b, "Sec-WebSocket-Protocol: %s\r\n", p)
	}
	for k, vs := range extra {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	b.WriteString("\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Fatalf("read handshake response: %v", err)
	}
	return resp
}

func TestConnectSubprotocolNegotiation(t *testing.T) {
	h := start(t)
	const (
		mp = protocol.SubprotocolMsgpack
		js = protocol.SubprotocolJSON
	)
	tests := []struct {
		name   string
		header []string // Sec-WebSocket-Protocol lines
		status int
		chosen string
	}{
		{"none offered", nil, http.StatusSwitchingProtocols, ""},
		{"msgpack", []string{mp}, http.StatusSwitchingProtocols, mp},
		{"json", []string{js}, http.StatusSwitchingProtocols, js},
		{"unknown then json", []string{"foo, " + js}, http.StatusSwitchingProtocols, js},
		{"unknown then msgpack then json", []string{"foo," + mp + "," + js}, http.StatusSwitchingProtocols, mp},
		{"json before msgpack", []string{js + ", " + mp}, http.StatusSwitchingProtocols, js},
		{"unknown line then json line", []string{"foo", js}, http.StatusSwitchingProtocols, js},
		{"unknown only", []string{"foo"}, http.StatusBadRequest, ""},
		{"several unknown", []string{"foo, bar, huddle.v2.json"}, http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := handshake(t, h, "/ws", tt.header, nil)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); resp.StatusCode == http.StatusSwitchingProtocols && got != tt.chosen {
				t.Fatalf("chosen subprotocol %q, want %q", got, tt.chosen)
			}
		})
	}
}

func TestConnectSubprotocolClients(t *testing.T) {
	h := start(t)
	t.Run("unknown only fails with 400", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		c, err := wsclient.Dial(ctx, h.URL, wsclient.Options{Subprotocols: []string{"huddle.v0.xml"}})
		if err == nil {
			c.Close()
			t.Fatal("dial succeeded with only an unknown subprotocol")
		}
		var se ws.StatusError
		if !errors.As(err, &se) || int(se) != http.StatusBadRequest {
			t.Fatalf("dial error %v, want HTTP 400", err)
		}
	})
	tests := []struct {
		name   string
		opts   wsclient.Options
		stream string
		want   protocol.Codec
	}{
		{"no subprotocol speaks json", wsclient.Options{NoSubprotocol: true}, "debug", protocol.JSON},
		{"unknown then json", wsclient.Options{Subprotocols: []string{"foo", protocol.SubprotocolJSON}}, "json2", protocol.JSON},
		{"unknown then msgpack", wsclient.Options{Subprotocols: []string{"foo", protocol.SubprotocolMsgpack}}, "mp2", protocol.Msgpack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, h.URL, tt.opts)
			if c.Codec != tt.want {
				t.Fatalf("client codec %v, want %v", c.Codec, tt.want)
			}
			if _, err := c.Connect(token(t, "dbg"), wait); err != nil {
				t.Fatal(err)
			}
			subscribe(t, c, 2, tt.stream, nil)
			if code, body := apiPublishT(t, h, `{"stream":"`+tt.stream+`","data":{"hello":"world"}}`); code != 200 {
				t.Fatalf("publish %d %s", code, body)
			}
			p := nextAs[*protocol.Pub](t, c)
			if p.S != tt.stream || p.Offset != 1 || !strings.Contains(string(p.Data), "world") {
				t.Fatalf("pub %+v", p)
			}
		})
	}
}

func TestConnectUpgradeToken(t *testing.T) {
	h := start(t)
	tests := []struct {
		name string
		url  func(tok string) string
		opts func(tok string) wsclient.Options
	}{
		{"query", func(tok string) string { return h.URL + "?token=" + url.QueryEscape(tok) },
			func(string) wsclient.Options { return wsclient.Options{} }},
		{"bearer header", func(string) string { return h.URL },
			func(tok string) wsclient.Options {
				return wsclient.Options{Header: http.Header{"Authorization": {"Bearer " + tok}}}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := token(t, "carol")
			c := dialRaw(t, tt.url(tok), tt.opts(tok))
			cm, err := c.Connect("", wait) // connect carries no token
			if err != nil {
				t.Fatal(err)
			}
			if cm.User != "carol" {
				t.Fatalf("user %q, want carol", cm.User)
			}
			subscribe(t, c, 2, "room", nil)
		})
		t.Run(tt.name+"/bad token", func(t *testing.T) {
			bad := tokenWith(t, "carol", time.Now().Add(time.Hour), allStreams) + "x"
			c := dialRaw(t, tt.url(bad), tt.opts(bad))
			if err := c.Send(&protocol.Connect{ID: 1}); err != nil {
				t.Fatal(err)
			}
			wantDisconnect(t, c, protocol.CodeUnauthorized, false)
		})
	}
	t.Run("connect still required", func(t *testing.T) {
		c := dialRaw(t, h.URL+"?token="+url.QueryEscape(token(t, "carol")), wsclient.Options{})
		if err := c.Send(&protocol.Subscribe{ID: 2, S: "room"}); err != nil {
			t.Fatal(err)
		}
		wantDisconnect(t, c, protocol.CodeUnauthorized, false)
	})
}

// shortToken signs a token for user that expires about two seconds from now
// (exp is whole seconds, so between one and two) and returns it with its
// expiry.
func shortToken(t *testing.T, user string) (string, time.Time) {
	t.Helper()
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second)
	if time.Until(exp) < 1200*time.Millisecond {
		exp = exp.Add(time.Second)
	}
	return tokenWith(t, user, exp, allStreams), exp
}

func TestRefreshExtendsExpiry(t *testing.T) {
	t.Parallel()
	h := start(t)
	tok, exp := shortToken(t, "dave")
	c, cm := dialConnect(t, h, tok)
	if cm.Exp != exp.Unix() {
		t.Fatalf("connected exp %d, want %d", cm.Exp, exp.Unix())
	}
	later := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := c.Send(&protocol.Refresh{ID: 7, Token: tokenWith(t, "dave", later, allStreams)}); err != nil {
		t.Fatal(err)
	}
	r := nextAs[*protocol.Refreshed](t, c)
	if r.ID != 7 || r.Exp != later.Unix() {
		t.Fatalf("refreshed %+v, want id 7 exp %d", r, later.Unix())
	}
	// Wait past the first expiry plus a full sweep.
	time.Sleep(time.Until(exp) + 1200*time.Millisecond)
	wantAlive(t, c)
}

func TestTokenExpiresWithoutRefresh(t *testing.T) {
	t.Parallel()
	h := start(t)
	tok, exp := shortToken(t, "erin")
	c, _ := dialConnect(t, h, tok)
	subscribe(t, c, 2, "room", nil)
	d := nextAs[*protocol.Disconnect](t, c)
	if now := time.Now(); now.Before(exp) {
		t.Fatalf("disconnected at %v, before the token's expiry %v", now, exp)
	}
	if late := time.Since(exp); late > 2500*time.Millisecond {
		t.Errorf("disconnected %v after expiry", late)
	}
	if d.Code != protocol.CodeTokenExpired || !d.Reconnect {
		t.Fatalf("disconnect %+v, want 4002 with reconnect", d)
	}
	if code, err := c.WaitClosed(wait); err != nil || code != int(protocol.CodeTokenExpired) {
		t.Fatalf("close code %d %v, want 4002", code, err)
	}
}

func TestRefreshRejected(t *testing.T) {
	h := start(t)
	otherSecret, err := auth.SignHS256([]byte("some-other-secret-0123"), "frank", time.Now().Add(time.Hour), nil, allStreams)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		code  protocol.Code
	}{
		{"other user", token(t, "mallory"), protocol.CodeUnauthorized},
		{"bad signature", otherSecret, protocol.CodeUnauthorized},
		{"garbage", "garbage", protocol.CodeUnauthorized},
		{"empty", "", protocol.CodeUnauthorized},
		{"expired", tokenWith(t, "frank", time.Now().Add(-time.Minute), allStreams), protocol.CodeTokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cm := dialConnect(t, h, token(t, "frank"))
			if err := c.Send(&protocol.Refresh{ID: 3, Token: tt.token}); err != nil {
				t.Fatal(err)
			}
			wantError(t, c, 3, tt.code)
			wantAlive(t, c)
			// The identity is unchanged: publications still come from frank.
			stream := "refresh:" + strings.ReplaceAll(tt.name, " ", "-")
			subscribe(t, c, 4, stream, nil)
			if err := c.Send(&protocol.Publish{ID: 5, S: stream, Data: protocol.MustRaw(1)}); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				switch m := nextMsg(t, c).(type) {
				case *protocol.Ack:
				case *protocol.Pub:
					if m.From == nil || m.From.User != "frank" || m.From.Client != cm.Client {
						t.Fatalf("pub from %+v, want frank/%s", m.From, cm.Client)
					}
				default:
					t.Fatalf("unexpected %s %+v", m.Type(), m)
				}
			}
		})
	}
}
