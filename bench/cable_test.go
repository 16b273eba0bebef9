package bench

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/huddle-rt/huddle/protocol"
)

// The cable adapter's wire format is checked here piece by piece (JSON
// scanning, the messages it writes, the messages it reads as anycable-go
// 1.6 sends them, the HTTP broadcast requests). Whether a server accepts
// them is checked by running the scenarios against anycable-go itself,
// which CI does not have (see /work/ext/bin/README.txt on the bench
// machine).

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "room", `a"b\c`, "tab\tnl\ncr\r", "\x00\x01\x1f", "ünïcödé ✓", "$pubsub", "</script>&"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("appendJSONString(%q) = %s: decodes to %q, %v", s, b, got, err)
		}
	}
}

func TestJSONUnescape(t *testing.T) {
	for _, s := range []string{"plain", `a\"b`, `\\`, `\/\b\f\n\r\t`, `\u0024pubsub`, `\u00fc`, `\ud83d\ude00`, `x\u2713y`} {
		var want string
		if err := json.Unmarshal([]byte(`"`+s+`"`), &want); err != nil {
			t.Fatal(err)
		}
		got, ok := jsonUnescape(nil, []byte(s))
		if !ok || string(got) != want {
			t.Errorf("jsonUnescape(%s) = %q, %v; want %q", s, got, ok, want)
		}
	}
	for _, s := range []string{`\`, `\x`, `\u12`, `\u12g4`} {
		if _, ok := jsonUnescape(nil, []byte(s)); ok {
			t.Errorf("jsonUnescape(%s) accepted", s)
		}
	}
}

func TestJSONObject(t *testing.T) {
	in := ` { "a" : "x\"}y" , "b":{"c":[1,{"d":"]}"}],"e":null}, "n": 42 ,"t":true,"f":-1.5e3,"s":"\u0024"} `
	o, ok := newJSONObject([]byte(in))
	if !ok {
		t.Fatal("no object")
	}
	var got []string
	for {
		k, v, ok := o.next()
		if !ok {
			break
		}
		got = append(got, string(k)+"="+string(v))
	}
	want := []string{`a="x\"}y"`, `b={"c":[1,{"d":"]}"}],"e":null}`, `n=42`, `t=true`, `f=-1.5e3`, `s="\u0024"`}
	if o.bad || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("members %q (bad %v), want %q", got, o.bad, want)
	}
	for _, bad := range []string{`{"a" 1}`, `{"a":1 "b":2}`, `{"a":"x`, `{"a":{"b":1}`, `{a:1}`} {
		o, _ := newJSONObject([]byte(bad))
		for {
			if _, _, ok := o.next(); !ok {
				break
			}
		}
		if !o.bad {
			t.Errorf("%s: not reported malformed", bad)
		}
	}
	if n, ok := jsonUint([]byte("18446744073709551615")); !ok || n != 1<<64-1 {
		t.Errorf("jsonUint = %d, %v", n, ok)
	}
	if _, ok := jsonUint([]byte("-1")); ok {
		t.Error("jsonUint(-1) accepted")
	}
}

func TestDefaultBroadcastURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:8090/cable":    "http://127.0.0.1:8090/_broadcast",
		"ws://localhost/cable?jid=x#f": "http://localhost/_broadcast",
		"wss://example.com:443/cable":  "https://example.com:443/_broadcast",
	} {
		if got, err := defaultBroadcastURL(in); err != nil || got != want {
			t.Errorf("defaultBroadcastURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := defaultBroadcastURL("tcp://x"); err == nil {
		t.Error("tcp:// accepted")
	}
}

func TestNewCableAdapter(t *testing.T) {
	for codec, want := range map[string]string{"": cableExtJSON, "ext-json": cableExtJSON, "json": cableJSON, cableJSON: cableJSON} {
		a, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws://127.0.0.1:1/cable", Codec: codec})
		if err != nil {
			t.Fatal(err)
		}
		if ca := a.(*cableAdapter); ca.proto != want || ca.ext != (want == cableExtJSON) || ca.bc.addr != "127.0.0.1:1" {
			t.Errorf("codec %q: proto %q ext %v broadcast to %q", codec, ca.proto, ca.ext, ca.bc.addr)
		}
	}
	if _, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws://x/cable", Codec: "msgpack"}); err == nil {
		t.Error("msgpack accepted")
	}
	if _, err := NewAdapter(AdapterConfig{Name: "cable"}); err == nil {
		t.Error("no URL accepted")
	}
	if _, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws://x/cable", BroadcastURL: "https://x/_broadcast"}); err == nil {
		t.Error("https broadcast accepted (not supported)")
	}
}

// testCableConn is a cableConn subscribed to "room" whose handler collects
// events; writes go to a socket pair whose other end is returned.
func testCableConn(t *testing.T, ext bool, got *[]event) (*cableConn, *os.File) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]) })
	srv := os.NewFile(uintptr(fds[1]), "server")
	t.Cleanup(func() { srv.Close() })
	c := &cableConn{a: &cableAdapter{ext: ext}, user: "u7", answers: make(chan bool, 1), welcome: make(chan struct{})}
	c.t = &huddleConn{fd: fds[0], codec: protocol.JSON, h: collect(got), done: make(chan struct{}), mask: 12345, onFrame: c.frame}
	c.setSubs(newCableSub("room"), nil)
	return c, srv
}

// readCommands reads n client frames from srv and decodes each as JSON.
func readCommands(t *testing.T, srv *os.File, n int) []map[string]any {
	t.Helper()
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf []byte
	var out []map[string]any
	chunk := make([]byte, 4096)
	for len(out) < n {
		k, err := srv.Read(chunk)
		if err != nil {
			t.Fatalf("read: %v (have %d of %d)", err, len(out), n)
		}
		buf = append(buf, chunk[:k]...)
		for {
			op, fin, p, used, err := parseFrame(buf)
			if err != nil {
				t.Fatal(err)
			}
			if used == 0 {
				break
			}
			if op != 1 || !fin {
				t.Fatalf("frame op %d fin %v, want one text frame", op, fin)
			}
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out = append(out, m)
			buf = buf[used:]
		}
	}
	return out
}

const roomIdent = `{"channel":"$pubsub","stream_name":"room"}`

func TestCableCommands(t *testing.T) {
	var got []event
	c, srv := testCableConn(t, true, &got)
	stamp := AppendStamp(nil, 7, 123456789, 0, 40)
	b64 := base64.StdEncoding.EncodeToString(stamp)
	if err := c.Whisper("room", "cursor", stamp); err != nil {
		t.Fatal(err)
	}
	if err := c.Join("room", stamp); err != nil {
		t.Fatal(err)
	}
	if err := c.Leave("room"); err != nil {
		t.Fatal(err)
	}
	if err := c.Whisper(`other "one"`, "w", stamp); err != nil { // not subscribed: the identifier is made on the spot
		t.Fatal(err)
	}
	// A subscribe with a join, answered by a confirmation.
	errc := make(chan error, 1)
	go func() { errc <- c.Subscribe(t.Context(), "lobby", SubOptions{Join: stamp, Presence: true}) }()
	cmds := readCommands(t, srv, 5)
	want := []string{
		`{"command":"whisper","data":{"b":"` + b64 + `","event":"cursor"},"identifier":` + string(appendJSONString(nil, roomIdent)) + `}`,
		`{"command":"join","identifier":` + string(appendJSONString(nil, roomIdent)) + `,"presence":{"id":"u7","info":{"b":"` + b64 + `"}}}`,
		`{"command":"leave","identifier":` + string(appendJSONString(nil, roomIdent)) + `}`,
		`{"command":"whisper","data":{"b":"` + b64 + `","event":"w"},"identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"other \\\"one\\\"\"}"}`,
		`{"command":"subscribe","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"lobby\"}","presence":{"id":"u7","info":{"b":"` + b64 + `"}}}`,
	}
	for i, m := range cmds {
		b, _ := json.Marshal(m) // sorted keys
		if string(b) != want[i] {
			t.Errorf("command %d:\n got %s\nwant %s", i, b, want[i])
		}
	}
	if err := c.frame([]byte(`{"type":"confirm_subscription","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"lobby\"}"}`), 1, &c.t.ev); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if c.sub("lobby") == nil {
		t.Fatal("lobby not kept as a subscription")
	}
	// A rejected one.
	go func() { errc <- c.Subscribe(t.Context(), "private", SubOptions{}) }()
	readCommands(t, srv, 1)
	_ = c.frame([]byte(`{"type":"reject_subscription","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"private\"}"}`), 1, &c.t.ev)
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("rejected subscribe: %v", err)
	}
	if c.sub("private") != nil {
		t.Fatal("a rejected subscription was kept")
	}
	if err := c.Subscribe(t.Context(), "x", SubOptions{Recover: &Position{}}); err != ErrUnsupported {
		t.Fatalf("recover: %v", err)
	}
	if len(got) != 1 || got[0] != (event{kind: EventSubscribed, stream: "lobby"}) {
		t.Fatalf("events %+v", got)
	}
}

// TestCableFrames: messages as anycable-go 1.6 sends them (recorded from
// it), and variants a server may send (other key orders, other escaping,
// the plain protocol without positions), become the seam's events.
func TestCableFrames(t *testing.T) {
	stamp := AppendStamp(nil, 9, 987654321, 5, 32)
	b64 := base64.StdEncoding.EncodeToString(stamp)
	id := string(appendJSONString(nil, roomIdent))
	frames := []string{
		`{"type":"welcome","sid":"kAQ7e4Jdvk-2gh8Kr0tpu"}`,
		`{"type":"ping","message":1733240156}`,
		`{"type":"confirm_subscription","identifier":` + id + `}`,
		`{"identifier":` + id + `,"message":"` + b64 + `","stream_id":"room","epoch":"3dHf","offset":12}`,
		`{"offset":13,"epoch":"3dHf","message":"` + strings.ReplaceAll(b64, "/", `\/`) + `","stream_id":"room","identifier":` + id + `}`,
		`{"identifier":"{\"channel\":\"\u0024pubsub\",\"stream_name\":\"room\"}","message":"` + b64 + `"}`,
		`{"identifier":` + id + `,"message":{"b":"` + b64 + `","event":"cursor"}}`,
		`{"type":"presence","identifier":` + id + `,"message":{"id":"u3","info":{"b":"` + b64 + `"},"type":"join"}}`,
		`{"type":"presence","identifier":` + id + `,"message":{"id":"u3","type":"leave"}}`,
		`{"type":"presence","identifier":` + id + `,"message":{"type":"info","total":1,"records":[]}}`,
		`{"identifier":` + id + `,"message":{"text":"not a bench message"}}`,
		`{"identifier":` + id + `,"message":"not base64!"}`,
		`not json`,
		`{"type":"confirm_history","identifier":` + id + `}`,
		`{"type":"disconnect","reason":"server_restart","reconnect":true}`,
	}
	var got []event
	c, srv := testCableConn(t, true, &got)
	var offsets []uint64
	h := c.t.h
	c.t.h = func(e *Event) {
		offsets = append(offsets, e.Offset)
		h(e)
	}
	for _, f := range frames {
		if err := c.frame([]byte(f), 1, &c.t.ev); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	s := string(stamp)
	want := []event{
		{kind: EventSubscribed, stream: "room"},
		{kind: EventPub, stream: "room", data: s},
		{kind: EventPub, stream: "room", data: s},
		{kind: EventPub, stream: "room", data: s},
		{kind: EventWhisper, stream: "room", name: "cursor", data: s},
		{kind: EventJoin, stream: "room", user: "u3", data: s},
		{kind: EventLeave, stream: "room", user: "u3"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events:\n got %+v\nwant %+v", got, want)
	}
	if fmt.Sprint(offsets) != "[0 12 13 0 0 0 0]" {
		t.Fatalf("offsets %v", offsets)
	}
	select {
	case <-c.welcome:
	default:
		t.Fatal("welcome not signalled")
	}
	if r := c.reason.Load(); r == nil || *r != "server_restart" {
		t.Fatalf("disconnect reason %v", r)
	}
	// The extended protocol answers the ping.
	if cmds := readCommands(t, srv, 1); cmds[0]["command"] != "pong" {
		t.Fatalf("ping answered with %v", cmds[0])
	}
}

// TestCablePlainNoPong: the plain protocol leaves pings unanswered.
func TestCablePlainNoPong(t *testing.T) {
	var got []event
	c, srv := testCableConn(t, false, &got)
	_ = c.frame([]byte(`{"type":"ping","message":1}`), 1, &c.t.ev)
	_ = srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _ := srv.Read(make([]byte, 64)); n > 0 {
		t.Fatal("the plain protocol answered a ping")
	}
}

// TestCableFrameAllocs: a publication is decoded without allocating.
func TestCableFrameAllocs(t *testing.T) {
	var n int
	c, _ := testCableConn(t, true, nil)
	c.t.h = func(e *Event) { n += len(e.Data) }
	stamp := AppendStamp(nil, 9, 987654321, 5, 100)
	f := []byte(`{"identifier":` + string(appendJSONString(nil, roomIdent)) + `,"message":"` + base64.StdEncoding.EncodeToString(stamp) + `","stream_id":"room","epoch":"3dHf","offset":12}`)
	w := []byte(`{"identifier":` + string(appendJSONString(nil, roomIdent)) + `,"message":{"b":"` + base64.StdEncoding.EncodeToString(stamp) + `","event":"w"}}`)
	if a := testing.AllocsPerRun(100, func() { _ = c.frame(f, 1, &c.t.ev); _ = c.frame(w, 1, &c.t.ev) }); a != 0 {
		t.Fatalf("%v allocations per publication and whisper", a)
	}
	if n == 0 {
		t.Fatal("nothing delivered")
	}
}

// TestBroadcaster: publications are POSTed in order on one connection as
// {"stream","data":"\"<base64>\""} with the bearer key; a refused one makes
// the later publishes fail.
func TestBroadcaster(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	var conns = map[string]bool{}
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != "POST" || r.URL.Path != "/_broadcast" || r.Header.Get("Authorization") != "Bearer k3y" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s, headers %v", r.Method, r.URL, r.Header)
		}
		bodies = append(bodies, string(b))
		conns[r.RemoteAddr] = true
		w.WriteHeader(status)
	}))
	defer srv.Close()
	a, err := NewAdapter(AdapterConfig{Name: "cable", URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/cable", BroadcastKey: "k3y"})
	if err != nil {
		t.Fatal(err)
	}
	c := &cableConn{a: a.(*cableAdapter)}
	const n = 200
	for i := 0; i < n; i++ {
		if err := c.Publish(`bench:"q"`, AppendStamp(nil, uint64(i), 1, 0, 24)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		k := len(bodies)
		mu.Unlock()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d publications arrived", k, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	for i, b := range bodies {
		var m struct{ Stream, Data string }
		if err := json.Unmarshal([]byte(b), &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		var inner string // data is JSON text: a string holding the base64
		if err := json.Unmarshal([]byte(m.Data), &inner); err != nil {
			t.Fatalf("data %q: %v", m.Data, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(inner)
		seq, _, _, ok := ParseStamp(raw)
		if m.Stream != `bench:"q"` || !ok || seq != uint64(i) {
			t.Fatalf("publication %d: stream %q seq %d (%v)", i, m.Stream, seq, ok)
		}
	}
	if len(conns) != 1 {
		t.Errorf("%d connections, want 1", len(conns))
	}
	status = http.StatusUnauthorized
	mu.Unlock()
	_ = c.Publish("s", []byte("x"))
	deadline = time.Now().Add(5 * time.Second)
	for c.Publish("s", []byte("x")) == nil {
		if time.Now().After(deadline) {
			t.Fatal("publishing goes on after a 401")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
