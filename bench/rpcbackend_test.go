package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// rpcCall POSTs body to the backend's path and decodes the answer.
func rpcCall(t *testing.T, base, path, secret, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/_anycable/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s answered %s: %v", path, b, err)
	}
	return resp.StatusCode, m
}

// TestRPCBackend: the backend's answers to each call, in the JSON the
// servers send (AnyCable's rpc.proto, as anycable-go and Huddle encode it).
func TestRPCBackend(t *testing.T) {
	b := NewRPCBackend(RPCBackendConfig{Secret: "s3"})
	srv := httptest.NewServer(b)
	defer srv.Close()
	mustJSON := func(v any) string {
		out, err := json.Marshal(v) // escapes & < > as \u0026...: the backend must unescape
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	connect := func(url, cookie string) map[string]any {
		env := map[string]any{"url": url}
		if cookie != "" {
			env["headers"] = map[string]string{"cookie": cookie}
		}
		code, m := rpcCall(t, srv.URL, "connect", "s3", mustJSON(map[string]any{"env": env}))
		if code != 200 {
			t.Fatalf("connect: %d", code)
		}
		return m
	}
	// By cookie, among others; by query; none.
	m := connect("ws://h/cable", "_session=abc; bench_user=u42; x=y")
	if m["status"] != 1.0 || m["identifiers"] != `{"current_user":"u42"}` || mustJSON(m["transmissions"]) != `["{\"type\":\"welcome\"}"]` {
		t.Fatalf("connect by cookie: %v", m)
	}
	m = connect("ws://h/cable?a=1&bench_user=u7&b=2", "")
	if m["status"] != 1.0 || m["identifiers"] != `{"current_user":"u7"}` {
		t.Fatalf("connect by query: %v", m)
	}
	for _, c := range [][2]string{{"ws://h/cable", ""}, {"ws://h/cable?bench_user=", "other=1"}, {"ws://h/cable?bench_user=a%22b", ""}} {
		if m := connect(c[0], c[1]); m["status"] != 2.0 || !strings.Contains(mustJSON(m["transmissions"]), "unauthorized") {
			t.Fatalf("connect %q %q: %v, want FAILURE", c[0], c[1], m)
		}
	}

	command := func(cmd, ident, ids string) map[string]any {
		req := map[string]any{"command": cmd, "identifier": ident, "env": map[string]any{"url": "ws://h/cable"}}
		if ids != "" {
			req["connection_identifiers"] = ids
		}
		code, m := rpcCall(t, srv.URL, "command", "s3", mustJSON(req))
		if code != 200 {
			t.Fatalf("command: %d", code)
		}
		return m
	}
	ident := `{"channel":"BenchChannel","stream":"bench:idle:3"}`
	m = command("subscribe", ident, `{"current_user":"u42"}`)
	if m["status"] != 1.0 || mustJSON(m["streams"]) != `["bench:idle:3"]` {
		t.Fatalf("subscribe: %v", m)
	}
	tr := m["transmissions"].([]any)
	var confirm map[string]string
	if len(tr) != 1 || json.Unmarshal([]byte(tr[0].(string)), &confirm) != nil ||
		confirm["type"] != "confirm_subscription" || confirm["identifier"] != ident {
		t.Fatalf("subscribe transmissions %v", tr)
	}
	for _, c := range [][2]string{
		{`{"channel":"ChatChannel","stream":"x"}`, `{"current_user":"u42"}`}, // another channel
		{ident, ""}, // no identifiers
		{`{"channel":"BenchChannel"}`, `{"current_user":"u42"}`}, // no stream
	} {
		m := command("subscribe", c[0], c[1])
		var reject map[string]string
		tr, _ := m["transmissions"].([]any)
		if m["status"] != 2.0 || len(tr) != 1 || json.Unmarshal([]byte(tr[0].(string)), &reject) != nil ||
			reject["type"] != "reject_subscription" || reject["identifier"] != c[0] {
			t.Fatalf("subscribe %s %s: %v, want a rejection", c[0], c[1], m)
		}
	}
	if m := command("unsubscribe", ident, `{"current_user":"u42"}`); m["status"] != 1.0 || m["stop_streams"] != true {
		t.Fatalf("unsubscribe: %v", m)
	}
	if m := command("message", ident, `{"current_user":"u42"}`); m["status"] != 1.0 {
		t.Fatalf("message: %v", m)
	}
	if code, m := rpcCall(t, srv.URL, "disconnect", "s3", `{"identifiers":"{\"current_user\":\"u42\"}","subscriptions":[],"env":{"url":"ws://h/cable"}}`); code != 200 || m["status"] != 1.0 {
		t.Fatalf("disconnect: %d %v", code, m)
	}
	// Refused: wrong secret, not JSON, unknown call.
	if code, _ := rpcCall(t, srv.URL, "connect", "wrong", `{"env":{}}`); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", code)
	}
	if code, _ := rpcCall(t, srv.URL, "command", "s3", `not json`); code != http.StatusUnprocessableEntity {
		t.Fatalf("not JSON: %d", code)
	}
	if code, _ := rpcCall(t, srv.URL, "perform", "s3", `{}`); code != http.StatusNotFound {
		t.Fatalf("unknown call: %d", code)
	}

	bt := &BackendTarget{StatsURL: srv.URL + "/_anycable/stats"}
	got, err := bt.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := RPCCounts{Connect: 2, ConnectRefused: 3, Subscribe: 1, SubscribeRejected: 3, OtherCommands: 2, Disconnect: 1, Bad: 3}
	got.MaxInFlight, got.TCPConns = 0, 0 // httptest's server has no ConnState hook of ours
	if got != want || got.Calls() != 15 {
		t.Fatalf("counts %+v, want %+v", got, want)
	}
	if d := got.Sub(RPCCounts{Connect: 1, Disconnect: 1}); d.Connect != 1 || d.Disconnect != 0 || d.Bad != 3 {
		t.Fatalf("Sub: %+v", d)
	}
	if u, err := StatsURLFor("http://127.0.0.1:9/_anycable"); err != nil || u != "http://127.0.0.1:9/_anycable/stats" {
		t.Fatalf("StatsURLFor = %q, %v", u, err)
	}
}

// TestCableRPCDial: with Identity and Channel, the cable adapter sends the
// user as a cookie or in the query, and subscribes to the application
// channel with the stream in its identifier.
func TestCableRPCDial(t *testing.T) {
	for _, identity := range []string{identityCookie, identityQuery} {
		t.Run(identity, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type seen struct{ uri, cookie, subscribe string }
			got := make(chan seen, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				var s seen
				u := ws.Upgrader{
					Protocol: func(p []byte) bool { return string(p) == cableExtJSON },
					OnRequest: func(uri []byte) error {
						s.uri = string(uri)
						return nil
					},
					OnHeader: func(k, v []byte) error {
						if strings.EqualFold(string(k), "Cookie") {
							s.cookie = string(v)
						}
						return nil
					},
				}
				if _, err := u.Upgrade(nc); err != nil {
					return
				}
				_ = wsutil.WriteServerText(nc, []byte(`{"type":"welcome"}`))
				p, err := wsutil.ReadClientText(nc)
				if err != nil {
					return
				}
				s.subscribe = string(p)
				var cmd map[string]string
				_ = json.Unmarshal(p, &cmd)
				reply, _ := json.Marshal(map[string]string{"type": "confirm_subscription", "identifier": cmd["identifier"]})
				_ = wsutil.WriteServerText(nc, reply)
				got <- s
				_, _ = io.Copy(io.Discard, nc)
			}()
			a, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws://" + ln.Addr().String() + "/cable", Channel: "BenchChannel", Identity: identity})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var events []event
			c, err := a.Dial(ctx, DialOptions{User: "u5"}, collect(&events))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Subscribe(ctx, "bench:idle:5", SubOptions{}); err != nil {
				t.Fatal(err)
			}
			s := <-got
			wantURI, wantCookie := "/cable", "bench_user=u5"
			if identity == identityQuery {
				wantURI, wantCookie = "/cable?bench_user=u5", ""
			}
			if s.uri != wantURI || s.cookie != wantCookie {
				t.Fatalf("request %q with cookie %q; want %q, %q", s.uri, s.cookie, wantURI, wantCookie)
			}
			if want := `{"command":"subscribe","identifier":"{\"channel\":\"BenchChannel\",\"stream\":\"bench:idle:5\"}"}`; s.subscribe != want {
				t.Fatalf("subscribe\n got %s\nwant %s", s.subscribe, want)
			}
		})
	}
	if _, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws://x/cable", Identity: "header"}); err == nil {
		t.Fatal("an unknown identity accepted")
	}
	a := &cableAdapter{url: "ws://x/cable?v=1", ident: identityQuery}
	if u := a.dialURL("u 1"); u != "ws://x/cable?v=1&bench_user=u+1" {
		t.Fatalf("dialURL = %q", u)
	}
	if !bytes.Equal(newChannelSub(`C"h`, "s").identQ, []byte(`{\"channel\":\"C\\\"h\",\"stream\":\"s\"}`)) {
		t.Fatalf("identQ %s", newChannelSub(`C"h`, "s").identQ)
	}
}

// TestConnectRPCEndToEnd: the connect storm against Huddle with --rpc-url
// pointing at the backend: every client connects through the backend's
// connect and subscribes through its command, and the result counts them.
func TestConnectRPCEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := NewRPCBackend(RPCBackendConfig{Secret: "s3"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	go func() { _ = b.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String() + "/_anycable"
	e := e2eEnv(t, []string{"--rpc-url", base, "--rpc-secret", "s3"})
	e.Adapter = AdapterConfig{Name: "cable", URL: strings.TrimSuffix(e.Target.URL, "/ws") + "/cable", Channel: DefaultBenchChannel, Identity: identityCookie}
	e.Backend = &BackendTarget{StatsURL: base + "/stats"}
	r, err := RunConnect(ctx, e, ConnectConfig{N: 40, Concurrency: 8, Streams: 4})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	WriteTable(&out, r)
	t.Log("\n" + out.String())
	if r.Connected != 40 || r.Failed != 0 || r.Welcome.Count != 40 || r.Connect.Count != 40 || r.Backend == nil {
		t.Fatalf("%+v", r)
	}
	if c := r.Backend.Calls; c.Connect != 40 || c.Subscribe != 40 || c.ConnectRefused+c.SubscribeRejected+c.Bad != 0 || r.Backend.PerSec <= 0 {
		t.Fatalf("backend calls %+v", c)
	}
}
