package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
)

// sseEvent is one server-sent event.
type sseEvent struct {
	Event, Data, ID, Retry string
}

// sseStream reads an event stream from a raw socket, so that the test sees
// the status line, the headers and every byte as the server wrote them.
type sseStream struct {
	t      *testing.T
	nc     net.Conn
	br     *bufio.Reader
	Status int
	Header http.Header
	Body   string // a refusal's body
}

// openSSE sends a request to /events and reads the response head (and the
// body of a refusal).
func (h *harness) openSSE(method, query string, header http.Header, body string) *sseStream {
	h.t.Helper()
	return h.openSSEPath(method, "/events", query, header, body)
}

// openSSEPath is openSSE for another path.
func (h *harness) openSSEPath(method, path, query string, header http.Header, body string) *sseStream {
	h.t.Helper()
	nc, err := net.DialTimeout("tcp", h.addr, wait)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { nc.Close() })
	var b strings.Builder
	b.WriteString(method + " " + path + query + " HTTP/1.1\r\nHost: " + h.addr + "\r\n")
	for k, vs := range header {
		for _, v := range vs {
			b.WriteString(k + ": " + v + "\r\n")
		}
	}
	if body != "" {
		b.WriteString("Content-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n")
	}
	b.WriteString("\r\n" + body)
	if _, err := io.WriteString(nc, b.String()); err != nil {
		h.t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	s := &sseStream{t: h.t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(s.br, nil)
	if err != nil {
		h.t.Fatalf("%s %s%s: %v", method, path, query, err)
	}
	s.Status, s.Header = resp.StatusCode, resp.Header
	if resp.StatusCode != http.StatusOK {
		rb, _ := io.ReadAll(resp.Body)
		s.Body = string(rb)
	}
	return s
}

func itoa(n int) string { return jsonInt(n) }

// Next returns the next event (comments are skipped).
func (s *sseStream) Next() sseEvent {
	s.t.Helper()
	_ = s.nc.SetReadDeadline(time.Now().Add(wait))
	var ev sseEvent
	var data []string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading the event stream: %v (event so far %+v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if data == nil && ev.Event == "" {
				continue // a comment's blank line
			}
			ev.Data = strings.Join(data, "\n")
			return ev
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimPrefix(v, " ")
		switch k {
		case "event":
			ev.Event = v
		case "data":
			data = append(data, v)
		case "id":
			ev.ID = v
		case "retry":
			ev.Retry = v
		}
	}
}

// Expect returns the next event that is not a ping, and fails unless its
// event name is name.
func (s *sseStream) Expect(name string) sseEvent {
	s.t.Helper()
	for {
		ev := s.Next()
		if ev.Event == "ping" {
			continue
		}
		if ev.Event != name {
			s.t.Fatalf("event %+v, want event %q", ev, name)
		}
		return ev
	}
}

// Closed reports whether the server ends the response within wait.
func (s *sseStream) Closed() bool {
	_ = s.nc.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, s.br)
	return err == nil
}

func streamQuery(stream string) string { return "?stream=" + url.QueryEscape(stream) }

// TestSSEStream: GET /events?stream= answers 200 with an event stream:
// welcome, confirm_subscription, then each publication's data alone with
// id offset/epoch/stream; a string is sent as itself, a line per data:.
func TestSSEStream(t *testing.T) {
	h := startCable(t)
	s := h.openSSE("GET", streamQuery("room-1"), nil, "")
	if s.Status != 200 || s.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" || !strings.Contains(s.Header.Get("Cache-Control"), "no-cache") {
		t.Fatalf("status %d, headers %v", s.Status, s.Header)
	}
	if ev := s.Expect("welcome"); !strings.Contains(ev.Data, `"type":"welcome"`) {
		t.Fatalf("welcome %+v", ev)
	}
	if ev := s.Expect("confirm_subscription"); !strings.Contains(ev.Data, `stream_name\":\"room-1`) {
		t.Fatalf("confirm %+v", ev)
	}
	_, body := h.apiPublish(`{"stream":"room-1","data":{"text":"hi"}}`)
	var res struct {
		Results []struct {
			Offset uint64
			Epoch  string
		}
	}
	_ = json.Unmarshal([]byte(body), &res)
	epoch := res.Results[0].Epoch
	h.apiPublish(`{"stream":"room-1","data":"<p>\nline two</p>"}`)
	if ev := s.Expect(""); ev.Data != `{"text":"hi"}` || ev.ID != "1/"+epoch+"/room-1" {
		t.Fatalf("publication %+v, want data {\"text\":\"hi\"}, id 1/%s/room-1", ev, epoch)
	}
	if ev := s.Expect(""); ev.Data != "<p>\nline two</p>" || ev.ID != "2/"+epoch+"/room-1" {
		t.Fatalf("string publication %+v", ev)
	}
}

// TestSSEResume: a response reopened with Last-Event-ID gets exactly the
// publications after that event, in order, then confirm_history, then the
// live ones; history_since gets those since a time.
func TestSSEResume(t *testing.T) {
	h := startCable(t)
	var epoch string
	for i := 1; i <= 5; i++ {
		_, body := h.apiPublish(`{"stream":"doc","data":` + itoa(i) + `}`)
		var res struct{ Results []struct{ Epoch string } }
		_ = json.Unmarshal([]byte(body), &res)
		epoch = res.Results[0].Epoch
	}
	s := h.openSSE("GET", streamQuery("doc"), http.Header{"Last-Event-ID": {"2/" + epoch + "/doc"}}, "")
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	for i := 3; i <= 5; i++ {
		if ev := s.Expect(""); ev.Data != itoa(i) || ev.ID != itoa(i)+"/"+epoch+"/doc" {
			t.Fatalf("missed publication %+v, want %d", ev, i)
		}
	}
	s.Expect("confirm_history")
	h.apiPublish(`{"stream":"doc","data":6}`)
	if ev := s.Expect(""); ev.Data != "6" {
		t.Fatalf("live publication %+v", ev)
	}
	// A position in another epoch cannot be resumed: reject_history, then
	// live publications.
	s = h.openSSE("GET", streamQuery("doc"), http.Header{"Last-Event-ID": {"2/0000000000000000/doc"}}, "")
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	s.Expect("reject_history")
	// history_since: everything since a minute ago.
	s = h.openSSE("GET", streamQuery("doc")+"&history_since="+itoa(int(time.Now().Add(-time.Minute).Unix())), nil, "")
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	for i := 1; i <= 6; i++ {
		if ev := s.Expect(""); ev.Data != itoa(i) {
			t.Fatalf("history since: %+v, want %d", ev, i)
		}
	}
	s.Expect("confirm_history")
}

// TestSSEBadRequests: every bad request gets a status and a reason at
// once, never a response that hangs.
func TestSSEBadRequests(t *testing.T) {
	h := startCable(t, func(o *harnessOpts) { o.rules = append(o.rules, "secret:*=;deny=sub") })
	for _, tc := range []struct {
		name, method, query string
		header              http.Header
		status              int
		reason              string
	}{
		{"no channel", "GET", "", nil, 400, "name a channel"},
		{"bad Last-Event-ID", "GET", streamQuery("x"), http.Header{"Last-Event-ID": {"x/y/z"}}, 400, "Last-Event-ID"},
		{"bad history_since", "GET", streamQuery("x") + "&history_since=yesterday", nil, 400, "history_since"},
		{"forbidden stream", "GET", streamQuery("secret:1"), nil, 400, "rejected"},
		{"application channel without a backend", "GET", "?channel=ChatChannel", nil, 400, "rejected"},
		{"bad signature", "GET", "?signed_stream=InJvb20i--bad", nil, 400, "rejected"},
		{"method", "DELETE", streamQuery("x"), nil, 405, "GET or POST"},
		{"foreign origin", "GET", streamQuery("x"), http.Header{"Origin": {"https://evil.example"}}, 403, "not allowed"},
	} {
		s := h.openSSE(tc.method, tc.query, tc.header, "")
		if s.Status != tc.status || !strings.Contains(s.Body, tc.reason) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, s.Status, s.Body, tc.status, tc.reason)
		}
	}
	// A page of an allowed origin: a preflight, and a response it may read.
	s := h.openSSE("OPTIONS", "", http.Header{"Origin": {"http://127.0.0.1:3000"}, "Access-Control-Request-Method": {"POST"}}, "")
	if s.Status != 204 || s.Header.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:3000" || !strings.Contains(s.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight: %d %v", s.Status, s.Header)
	}
	s = h.openSSE("GET", streamQuery("x"), http.Header{"Origin": {"http://127.0.0.1:3000"}}, "")
	if s.Status != 200 || s.Header.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:3000" || s.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("cross-origin GET: %d %v", s.Status, s.Header)
	}
}

// TestSSEIdentity: without --public a response needs a token (?token= or
// Authorization), 401 otherwise; an expired one gets 401 too; the token's
// grants decide the streams.
func TestSSEIdentity(t *testing.T) {
	h := start(t)
	if s := h.openSSE("GET", streamQuery("mine:1"), nil, ""); s.Status != 401 || !strings.Contains(s.Body, "unauthorized") {
		t.Fatalf("anonymous: %d %q", s.Status, s.Body)
	}
	expired := tokenWith(t, "u", time.Now().Add(-time.Minute), allStreams)
	if s := h.openSSE("GET", streamQuery("mine:1")+"&token="+expired, nil, ""); s.Status != 401 || !strings.Contains(s.Body, "token_expired") {
		t.Fatalf("expired: %d %q", s.Status, s.Body)
	}
	tok := tokenWith(t, "u", time.Now().Add(time.Hour), map[string][]string{"mine:*": {"sub"}})
	s := h.openSSE("GET", streamQuery("mine:1")+"&token="+tok, nil, "")
	if s.Status != 200 {
		t.Fatalf("token in the query: %d %q", s.Status, s.Body)
	}
	s = h.openSSE("GET", streamQuery("mine:2"), http.Header{"Authorization": {"Bearer " + tok}}, "")
	if s.Status != 200 {
		t.Fatalf("token in Authorization: %d %q", s.Status, s.Body)
	}
	if s := h.openSSE("GET", streamQuery("theirs:1"), http.Header{"Authorization": {"Bearer " + tok}}, ""); s.Status != 400 {
		t.Fatalf("a stream the token does not grant: %d %q", s.Status, s.Body)
	}
}

// TestSSEPostRawPing: POST takes subscribe commands as JSON lines and sends
// whole messages; raw=1 sends publications only, and comments to keep the
// response alive; pings are events.
func TestSSEPostRawPing(t *testing.T) {
	h := startCable(t, func(o *harnessOpts) { o.cfg.CablePingInterval = 200 * time.Millisecond })
	body := `{"command":"subscribe","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"a\"}"}` + "\n" +
		`{"command":"subscribe","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"b\"}"}` + "\n"
	s := h.openSSE("POST", "", nil, body)
	if s.Status != 200 {
		t.Fatalf("POST: %d %q", s.Status, s.Body)
	}
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	s.Expect("confirm_subscription")
	h.apiPublish(`{"stream":"b","data":{"n":1}}`)
	ev := s.Expect("")
	var m struct {
		Identifier string
		Message    map[string]int
	}
	if json.Unmarshal([]byte(ev.Data), &m) != nil || m.Identifier != pubsub("b") || m.Message["n"] != 1 {
		t.Fatalf("POST publication %+v", ev)
	}
	if ev := s.Next(); ev.Event != "ping" || !strings.Contains(ev.Data, `"type":"ping"`) {
		t.Fatalf("ping %+v", ev)
	}
	if s := h.openSSE("POST", "", nil, `{"command":"message","identifier":"x","data":"{}"}`); s.Status != 400 {
		t.Fatalf("a POST that is not subscribes: %d %q", s.Status, s.Body)
	}

	raw := h.openSSE("GET", streamQuery("c")+"&raw=1", nil, "")
	_ = raw.nc.SetReadDeadline(time.Now().Add(wait))
	line, _ := raw.br.ReadString('\n') // a comment: welcome and confirm are not sent
	if line != ": ping\n" {
		t.Fatalf("raw: first line %q, want the keep-alive comment", line)
	}
	h.apiPublish(`{"stream":"c","data":"plain"}`)
	if ev := raw.Next(); ev.Event != "" || ev.Data != "plain" {
		t.Fatalf("raw publication %+v", ev)
	}
}

// TestSSEDrain: a drain ends a response with event disconnect
// (server_restart, reconnect), and then the response.
func TestSSEDrain(t *testing.T) {
	h := startCable(t)
	s := h.openSSE("GET", streamQuery("d"), nil, "")
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	}()
	defer func() { <-drained }() // before the harness's own Shutdown
	ev := s.Expect("disconnect")
	if !strings.Contains(ev.Data, wire.ReasonServerRestart) || ev.Retry != "" {
		t.Fatalf("drain: %+v", ev)
	}
	if !s.Closed() {
		t.Fatal("the response did not end after the disconnect")
	}
}

// TestSSENoGoroutinePerSession: on the epoll transport an open response
// holds no goroutine, as a WebSocket holds none.
func TestSSENoGoroutinePerSession(t *testing.T) {
	h := startCable(t)
	if h.srv.Portable() {
		t.Skip("the portable transport runs a goroutine pair per connection")
	}
	before := runtime.NumGoroutine()
	const n = 200
	for i := range n {
		s := h.openSSE("GET", streamQuery("idle:"+itoa(i%10)), nil, "")
		s.Expect("welcome")
		s.Expect("confirm_subscription")
	}
	time.Sleep(100 * time.Millisecond)
	if grown := runtime.NumGoroutine() - before; grown > n/4 {
		t.Fatalf("%d open responses added %d goroutines", n, grown)
	}
}

// TestSSERPC: with an application backend, ?channel= is the application's
// channel: the connect carries the request's cookie, a refused connect is
// 401, a rejected subscribe 400; a confirmed one streams the channel's
// broadcasts, resumes with Last-Event-ID, and the backend hears the
// disconnect when the response ends.
func TestSSERPC(t *testing.T) {
	var disconnects atomic.Int32
	h := startRPC(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/_anycable/connect":
			if !strings.Contains(string(body), "user=ann") {
				_, _ = w.Write([]byte(`{"status":2,"transmissions":["{\"type\":\"disconnect\",\"reason\":\"unauthorized\",\"reconnect\":false}"]}`))
				return
			}
			_, _ = w.Write([]byte(`{"status":1,"identifiers":"{\"user\":\"ann\"}","transmissions":["{\"type\":\"welcome\"}"]}`))
		case "/_anycable/command":
			if !strings.Contains(string(body), `Chat`) {
				_, _ = w.Write([]byte(`{"status":2,"transmissions":["{\"type\":\"reject_subscription\",\"identifier\":\"{\\\"channel\\\":\\\"Other\\\"}\"}"]}`))
				return
			}
			_, _ = w.Write([]byte(`{"status":1,"streams":["chat:1"],"transmissions":["{\"type\":\"confirm_subscription\",\"identifier\":\"{\\\"channel\\\":\\\"Chat\\\"}\"}"]}`))
		case "/_anycable/disconnect":
			disconnects.Add(1)
			_, _ = w.Write([]byte(`{"status":1}`))
		}
	}))
	cookie := http.Header{"Cookie": {"user=ann"}}
	if s := h.openSSE("GET", "?channel=Chat", nil, ""); s.Status != 401 {
		t.Fatalf("refused connect: %d %q", s.Status, s.Body)
	}
	if s := h.openSSE("GET", "?channel=Other", cookie, ""); s.Status != 400 {
		t.Fatalf("rejected subscribe: %d %q", s.Status, s.Body)
	}
	var epoch string
	for i := 1; i <= 3; i++ {
		_, body := h.apiPublish(`{"stream":"chat:1","data":{"n":` + itoa(i) + `}}`)
		var res struct{ Results []struct{ Epoch string } }
		_ = json.Unmarshal([]byte(body), &res)
		epoch = res.Results[0].Epoch
	}
	s := h.openSSE("GET", "?channel=Chat", http.Header{"Cookie": {"user=ann"}, "Last-Event-ID": {"1/" + epoch + "/chat:1"}}, "")
	if s.Status != 200 {
		t.Fatalf("channel: %d %q", s.Status, s.Body)
	}
	s.Expect("welcome")
	s.Expect("confirm_subscription")
	for i := 2; i <= 3; i++ {
		if ev := s.Expect(""); ev.Data != `{"n":`+itoa(i)+`}` || ev.ID != itoa(i)+"/"+epoch+"/chat:1" {
			t.Fatalf("resumed %+v, want n=%d", ev, i)
		}
	}
	s.Expect("confirm_history")
	h.apiPublish(`{"stream":"chat:1","data":{"n":4}}`)
	if ev := s.Expect(""); ev.Data != `{"n":4}` {
		t.Fatalf("live %+v", ev)
	}
	before := disconnects.Load()
	s.nc.Close()
	deadline := time.Now().Add(wait)
	for disconnects.Load() == before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if disconnects.Load() == before {
		t.Fatal("the backend did not hear the disconnect of a closed response")
	}
}

// TestSSEKeepAlive: a request for /events on a connection that served
// another request first (browsers reuse idle connections) is an event
// stream all the same.
func TestSSEKeepAlive(t *testing.T) {
	h := startCable(t)
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(h.HTTP + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	reused := false
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, _ := http.NewRequestWithContext(ctx, "GET", h.HTTP+"/events?stream=ka", nil)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !reused {
		t.Fatal("the client did not reuse its connection; the test proves nothing")
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("/events on a kept-alive connection: %s", resp.Status)
	}
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "event: welcome\n" {
		t.Fatalf("first line %q", line)
	}
}
