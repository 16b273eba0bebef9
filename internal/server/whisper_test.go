//go:build unix

package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/whisper"
)

// ---- helpers of the whisper tests ----

// whPeer is a connected client and the identity the server gave it.
type whPeer struct {
	c    *wsclient.Client
	from protocol.ClientInfo
}

// whConnect dials h and connects with tok.
func whConnect(t *testing.T, h *harness, tok string, opts ...func(*wsclient.Options)) whPeer {
	t.Helper()
	c, cm := dialConnect(t, h, tok, opts...)
	return whPeer{c: c, from: protocol.ClientInfo{User: cm.User, Client: cm.Client}}
}

// whCursor is the data of the whispers these tests send.
type whCursor struct {
	Seq int `msgpack:"seq"`
	X   int `msgpack:"x"`
}

// whSend sends one whisper with data {seq, x}.
func whSend(t *testing.T, c *wsclient.Client, stream, ev string, seq, x int) {
	t.Helper()
	if err := c.Send(whMsg(stream, ev, seq, x)); err != nil {
		t.Fatalf("send whisper: %v", err)
	}
}

func whMsg(stream, ev string, seq, x int) *protocol.SendWhisper {
	return &protocol.SendWhisper{S: stream, Ev: ev, Data: protocol.MustRaw(map[string]int{"seq": seq, "x": x})}
}

// whData decodes a whisper's data as sent by whSend.
func whData(t *testing.T, w *protocol.Whisper) whCursor {
	t.Helper()
	var d whCursor
	if err := msgpack.Unmarshal(w.Data, &d); err != nil {
		t.Fatalf("whisper data %x: %v", []byte(w.Data), err)
	}
	return d
}

// whWant reads the next message of c (pings aside), which must be a whisper
// on stream with ev, from, and data {seq, x}.
func whWant(t *testing.T, c *wsclient.Client, stream, ev string, from protocol.ClientInfo, seq, x int) {
	t.Helper()
	w := nextAs[*protocol.Whisper](t, c)
	if w.S != stream || w.Ev != ev || w.From != from {
		t.Fatalf("whisper s=%q ev=%q from=%+v, want s=%q ev=%q from=%+v", w.S, w.Ev, w.From, stream, ev, from)
	}
	if d := whData(t, w); d.Seq != seq || d.X != x {
		t.Fatalf("whisper data %+v, want seq=%d x=%d", d, seq, x)
	}
}

// whSync waits until the server has handled everything c sent before: it
// pings and waits for the pong, skipping what arrives meanwhile (others'
// whispers) but failing on an error reply or a disconnect.
func whSync(t *testing.T, c *wsclient.Client) {
	t.Helper()
	if err := c.Send(&protocol.Ping{}); err != nil {
		t.Fatalf("send ping: %v", err)
	}
	for {
		switch m := nextMsg(t, c).(type) {
		case *protocol.Pong:
			return
		case *protocol.ErrorReply:
			t.Fatalf("error %d %q while syncing", m.Code, m.Reason)
		case *protocol.Disconnect:
			t.Fatalf("disconnect %d %q while syncing", m.Code, m.Reason)
		}
	}
}

// whWaitCached waits until the server caches n whispers.
func whWaitCached(t *testing.T, h *harness, n int) {
	t.Helper()
	if got := whCachedWithin(t, h, n, wait); got != n {
		t.Fatalf("server caches %d whispers after %v, want %d", got, wait, n)
	}
}

// whCachedWithin waits up to d until the server caches n whispers, and
// returns the last count seen.
func whCachedWithin(t *testing.T, h *harness, n int, d time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := biStats(t, h).WhispersCached
		if got == n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// whKey is a latest-value cache key as a client sees it.
type whKey struct{ client, ev string }

// whLV checks that a subscribed reply's lv holds exactly want: the newest
// whisper per (sender connection, ev), each from the right user.
func whLV(t *testing.T, sub *protocol.Subscribed, stream string, users map[string]string, want map[whKey]whCursor) {
	t.Helper()
	got := make(map[whKey]whCursor, len(sub.LV))
	for i := range sub.LV {
		w := &sub.LV[i]
		k := whKey{w.From.Client, w.Ev}
		if _, dup := got[k]; dup {
			t.Errorf("lv holds %+v twice", k)
		}
		if w.S != stream || w.From.User != users[w.From.Client] {
			t.Errorf("lv entry s=%q from=%+v, want s=%q user %q", w.S, w.From, stream, users[w.From.Client])
		}
		got[k] = whData(t, w)
	}
	for k, d := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("lv lacks %s/%s (want %+v)", users[k.client], k.ev, d)
		} else if g != d {
			t.Errorf("lv %s/%s = %+v, want the newest %+v", users[k.client], k.ev, g, d)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("lv holds %s/%s = %+v, which it should not", users[k.client], k.ev, g)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// whPublish publishes {"seq": seq} to stream through the API; it is safe
// off the test goroutine.
func whPublish(h *harness, stream string, seq int) (uint64, error) {
	req, err := http.NewRequest("POST", h.HTTP+"/api/publish", strings.NewReader(fmt.Sprintf(`{"stream":%q,"data":{"seq":%d}}`, stream, seq)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct{ Results []apiResult }
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK || len(r.Results) != 1 {
		return 0, fmt.Errorf("API publish: status %d, %d results, %v", resp.StatusCode, len(r.Results), err)
	}
	return r.Results[0].Offset, nil
}

// whMetric reads a Prometheus metric without labels (0 when absent).
func whMetric(t *testing.T, h *harness, name string) float64 {
	t.Helper()
	code, b := biGet(t, h, "/metrics", true)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// whSmallBuffers makes a client that stops reading back up into the
// server's queue rather than into the kernel: before the socket connects it
// gets a tiny receive buffer and a small MSS. The MSS matters as much: the
// server's send buffer grows to 20 segments' worth at connect, which at the
// loopback MSS (64 KiB) is megabytes, enough to swallow a 2 s stall.
func whSmallBuffers(network, address string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096); serr == nil {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
		}
	}); err != nil {
		return err
	}
	return serr
}

// whRawOfSize returns a msgpack string value exactly n bytes long (n in
// 34..65538).
func whRawOfSize(t *testing.T, n int) protocol.Raw {
	t.Helper()
	k := n - 2 // str8: 0xd9, len
	if k >= 256 {
		k = n - 3 // str16: 0xda, len, len
	}
	r := protocol.MustRaw(strings.Repeat("d", k))
	if len(r) != n {
		t.Fatalf("whRawOfSize(%d) made %d bytes", n, len(r))
	}
	return r
}

// ---- tests ----

// TestWhisperRelay: a whisper reaches every other subscriber of the stream
// (another tab of the same user too), in either codec, with from set by the
// server; the sending connection and non-subscribers get nothing.
func TestWhisperRelay(t *testing.T) {
	h := start(t)
	const stream = "doc:relay"
	alice := whConnect(t, h, token(t, "alice"))
	alice2 := whConnect(t, h, token(t, "alice")) // a second tab of alice
	bob := whConnect(t, h, token(t, "bob"), jsonOpts)
	idle := whConnect(t, h, token(t, "idle")) // connected, not subscribed
	for _, p := range []whPeer{alice, alice2, bob} {
		subscribe(t, p.c, 2, stream, nil)
	}
	forged := map[string]any{"user": "mallory", "client": "00000000-0000-0000-0000-000000000000"}
	tests := []struct {
		name string
		from whPeer
		to   []whPeer
		send func(t *testing.T, c *wsclient.Client, seq int)
	}{
		{"msgpack sender", alice, []whPeer{alice2, bob}, func(t *testing.T, c *wsclient.Client, seq int) {
			whSend(t, c, stream, "cursor", seq, 10*seq)
		}},
		{"json sender", bob, []whPeer{alice, alice2}, func(t *testing.T, c *wsclient.Client, seq int) {
			whSend(t, c, stream, "cursor", seq, 10*seq)
		}},
		{"msgpack sender forges from", alice, []whPeer{alice2, bob}, func(t *testing.T, c *wsclient.Client, seq int) {
			b, err := msgpack.Marshal(map[string]any{"t": "whisper", "s": stream, "ev": "cursor",
				"data": map[string]int{"seq": seq, "x": 10 * seq}, "from": forged, "user": "mallory", "client": "forged"})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SendRaw(ws.OpBinary, b); err != nil {
				t.Fatal(err)
			}
		}},
		{"json sender forges from", bob, []whPeer{alice, alice2}, func(t *testing.T, c *wsclient.Client, seq int) {
			b, err := json.Marshal(map[string]any{"t": "whisper", "s": stream, "ev": "cursor",
				"data": map[string]int{"seq": seq, "x": 10 * seq}, "from": forged})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SendRaw(ws.OpText, b); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.send(t, tt.from.c, i)
			for _, p := range tt.to {
				whWant(t, p.c, stream, "cursor", tt.from.from, i, 10*i)
			}
			// The sender's echo, had there been one, would precede the pong.
			wantAlive(t, tt.from.c)
			wantAlive(t, idle.c)
		})
	}
}

// TestWhisperRejected: whispers without the whisper op (token or rule), with
// a bad ev or stream, or with data over Config.Whisper.MaxData get an error
// reply, reach nobody and leave the connection open.
func TestWhisperRejected(t *testing.T) {
	const small = 256
	rules := []string{"quiet:*=;whisper=off", "mute:*=sub;deny=whisper"}
	hSmall := start(t, func(o *harnessOpts) {
		o.cfg.Whisper.MaxData = small
		o.rules = rules
	})
	hDefault := start(t, func(o *harnessOpts) { o.rules = rules }) // MaxData 4096
	full := func(t *testing.T) string { return token(t, "sender") }
	subOnly := func(t *testing.T) string {
		return tokenWith(t, "sender", time.Now().Add(time.Hour), map[string][]string{"*": {"sub", "pub"}})
	}
	docOnly := func(t *testing.T) string {
		return tokenWith(t, "sender", time.Now().Add(time.Hour), map[string][]string{"doc:*": {"sub", "whisper"}})
	}
	ev64 := strings.Repeat("e", protocol.MaxEventName)
	tests := []struct {
		name    string
		h       *harness
		token   func(*testing.T) string
		stream  string
		ev      string
		size    int           // data size in bytes; 0: a small map
		code    protocol.Code // 0: relayed
		invalid bool          // the stream name is invalid (nobody can subscribe)
	}{
		{"token lacks whisper op", hSmall, subOnly, "doc:a", "cursor", 0, protocol.CodeForbidden, false},
		{"token grants another stream", hSmall, docOnly, "board:a", "cursor", 0, protocol.CodeForbidden, false},
		{"token grant on its stream", hSmall, docOnly, "doc:a", "cursor", 0, 0, false},
		{"rule whisper=off beats token", hSmall, full, "quiet:a", "cursor", 0, protocol.CodeForbidden, false},
		{"rule denies whisper", hSmall, full, "mute:a", "cursor", 0, protocol.CodeForbidden, false},
		{"empty ev", hSmall, full, "doc:a", "", 0, protocol.CodeBadRequest, false},
		{"ev of 65 bytes", hSmall, full, "doc:a", ev64 + "x", 0, protocol.CodeBadRequest, false},
		{"ev of 64 bytes", hSmall, full, "doc:a", ev64, 0, 0, false},
		{"ev of 64 bytes in 2-byte runes", hSmall, full, "doc:a", strings.Repeat("é", 32), 0, 0, false},
		{"ev of 66 bytes in 2-byte runes", hSmall, full, "doc:a", strings.Repeat("é", 33), 0, protocol.CodeBadRequest, false},
		{"data at MaxData", hSmall, full, "doc:a", "cursor", small, 0, false},
		{"data over MaxData", hSmall, full, "doc:a", "cursor", small + 1, protocol.CodeTooLarge, false},
		{"data at default MaxData", hDefault, full, "doc:a", "cursor", 4096, 0, false},
		{"data over default MaxData", hDefault, full, "doc:a", "cursor", 4097, protocol.CodeTooLarge, false},
		{"empty stream", hSmall, full, "", "cursor", 0, protocol.CodeBadRequest, true},
		{"stream with a control character", hSmall, full, "doc:\x01", "cursor", 0, protocol.CodeBadRequest, true},
		{"stream of 257 bytes", hSmall, full, strings.Repeat("s", 257), "cursor", 0, protocol.CodeBadRequest, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.invalid {
				// A stream per case: earlier cases' senders may still be
				// closing, and cached, on theirs.
				tt.stream += "-" + strconv.Itoa(i)
			}
			rx := whConnect(t, tt.h, token(t, "rx")) // listens on the stream
			if !tt.invalid {
				subscribe(t, rx.c, 2, tt.stream, nil)
			}
			sender := whConnect(t, tt.h, tt.token(t))
			// The sender subscribes where it may, so that an accepted whisper
			// is cached and a rejected one could be.
			subscribed := false
			if !tt.invalid {
				if err := sender.c.Send(&protocol.Subscribe{ID: 2, S: tt.stream}); err != nil {
					t.Fatal(err)
				}
				switch m := nextMsg(t, sender.c).(type) {
				case *protocol.Subscribed:
					subscribed = true
				case *protocol.ErrorReply:
					if m.Code != protocol.CodeForbidden {
						t.Fatalf("sender's subscribe: error %d %q", m.Code, m.Reason)
					}
				default:
					t.Fatalf("sender's subscribe: %s %+v", m.Type(), m)
				}
			}
			m := whMsg(tt.stream, tt.ev, 1, 1)
			if tt.size > 0 {
				m.Data = whRawOfSize(t, tt.size)
			}
			if err := sender.c.Send(m); err != nil {
				t.Fatal(err)
			}
			if tt.code != 0 {
				e := wantError(t, sender.c, 0, tt.code)
				if e.S != tt.stream {
					t.Errorf("error s=%q, want %q", e.S, tt.stream)
				}
				if e.Retry {
					t.Errorf("error %d says retry", e.Code)
				}
			}
			// The sender's whisper was handled, and relayed if at all, before
			// the pong: so anything relayed to rx precedes rx's own pong.
			wantAlive(t, sender.c) // and no second reply
			if tt.code == 0 {
				w := nextAs[*protocol.Whisper](t, rx.c)
				if w.Ev != tt.ev || w.From != sender.from || string(w.Data) != string(m.Data) {
					t.Fatalf("rx got ev=%q from=%+v data %d bytes, want ev=%q from=%+v data %d bytes",
						w.Ev, w.From, len(w.Data), tt.ev, sender.from, len(m.Data))
				}
			}
			wantAlive(t, rx.c)
			if tt.invalid {
				return
			}
			// A rejected whisper is not cached either: a new subscriber's lv
			// holds the sender's whisper only if it was accepted (and the
			// sender is subscribed).
			late := whConnect(t, tt.h, token(t, "late"))
			sub := subscribe(t, late.c, 2, tt.stream, nil)
			want := 0
			if tt.code == 0 && subscribed {
				want = 1
			}
			if len(sub.LV) != want || (want == 1 && (sub.LV[0].From != sender.from || sub.LV[0].Ev != tt.ev)) {
				t.Fatalf("lv %+v, want %d entry of the sender's", sub.LV, want)
			}
		})
	}
}

// TestWhisperRateLimitBurst: 400 whispers at once pass as the burst (120)
// plus what refills meanwhile, in order, the first 120 always; the sender
// is told once, stays connected and may whisper again after a pause.
func TestWhisperRateLimitBurst(t *testing.T) {
	t.Parallel()
	h := start(t)
	const (
		stream = "board:burst"
		blast  = 400
		frame  = 50 // whispers per WebSocket frame
	)
	cfg := whisper.Config{}.WithDefaults()
	sender := whConnect(t, h, token(t, "sender"))
	rx := whConnect(t, h, token(t, "rx"))
	end := whConnect(t, h, token(t, "end"))
	subscribe(t, sender.c, 2, stream, nil)
	subscribe(t, rx.c, 2, stream, nil)

	began := time.Now()
	for i := 0; i < blast; i += frame {
		msgs := make([]protocol.Message, 0, frame)
		for j := i; j < i+frame; j++ {
			// A distinct ev each, so no whisper can conflate with another.
			msgs = append(msgs, whMsg(stream, fmt.Sprintf("e%d", j), j, j))
		}
		if err := sender.c.Send(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := sender.c.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	warnings := 0
	for done := false; !done; {
		switch m := nextMsg(t, sender.c).(type) {
		case *protocol.Pong:
			done = true
		case *protocol.ErrorReply:
			if m.Code != protocol.CodeRateLimited || m.S != stream || m.ID != 0 || !m.Retry {
				t.Fatalf("error reply %+v, want 4006 on %s with retry", m, stream)
			}
			warnings++
		default:
			t.Fatalf("sender got %s %+v", m.Type(), m)
		}
	}
	elapsed := time.Since(began) // the server took every token within it
	maxPass := cfg.Burst + int(elapsed.Seconds()*cfg.Rate) + 1

	// end's whisper is queued for rx after every relayed one of the blast.
	whSend(t, end.c, stream, "end", 0, 0)
	var seqs []int
	for {
		w := nextAs[*protocol.Whisper](t, rx.c)
		if w.Ev == "end" {
			break
		}
		d := whData(t, w)
		if w.Ev != fmt.Sprintf("e%d", d.Seq) || w.From != sender.from {
			t.Fatalf("rx got ev=%q seq=%d from %+v", w.Ev, d.Seq, w.From)
		}
		seqs = append(seqs, d.Seq)
	}
	t.Logf("blast of %d in %v: %d relayed (burst %d, at most %d with refill), %d warning(s)",
		blast, elapsed.Round(time.Millisecond), len(seqs), cfg.Burst, maxPass, warnings)
	if len(seqs) < cfg.Burst || len(seqs) > maxPass {
		t.Errorf("%d of %d whispers relayed, want %d..%d", len(seqs), blast, cfg.Burst, maxPass)
	}
	for i, s := range seqs {
		if (i < cfg.Burst && s != i) || (i > 0 && s <= seqs[i-1]) {
			t.Fatalf("relayed seqs %v: want 0..%d then increasing", seqs, cfg.Burst-1)
		}
	}
	if want := 1 + int(elapsed/time.Second); warnings < 1 || warnings > want {
		t.Errorf("%d rate-limit warnings in %v, want 1..%d", warnings, elapsed, want)
	}

	// After a pause the bucket has refilled: the sender whispers again,
	// without a warning.
	time.Sleep(500 * time.Millisecond)
	whSend(t, sender.c, stream, "again", 1, 1)
	whSync(t, sender.c) // fails on a warning
	whWant(t, rx.c, stream, "again", sender.from, 1, 1)
}

// TestWhisperRateLimitFlood: a sender flooding whispers for 2.5 s is told at
// most once a second, passes about the burst plus the rate, and is never
// disconnected. The flood (about 400 whispers a second) stays under the
// connection's message rate limit (Config.MessageRate, 1000/s), so only the
// whisper limit acts.
func TestWhisperRateLimitFlood(t *testing.T) {
	t.Parallel()
	h := start(t)
	const (
		stream = "board:flood"
		flood  = 2500 * time.Millisecond
		frame  = 2 // whispers per WebSocket frame, one frame every 5 ms
	)
	cfg := whisper.Config{}.WithDefaults()
	sender := whConnect(t, h, token(t, "sender"))
	rx := whConnect(t, h, token(t, "rx"))
	end := whConnect(t, h, token(t, "end"))
	subscribe(t, sender.c, 2, stream, nil)
	subscribe(t, rx.c, 2, stream, nil)

	// The flooder owns the sender's writes until done is closed; stop ends
	// it early when the test fails.
	done, stop := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stop)
		<-done
	}()
	sent := 0
	var sendErr error
	began := time.Now()
	go func() {
		defer close(done)
		for time.Since(began) < flood {
			select {
			case <-stop:
				return
			default:
			}
			msgs := make([]protocol.Message, frame)
			for j := range msgs {
				msgs[j] = whMsg(stream, fmt.Sprintf("e%d", sent), sent, sent)
				sent++
			}
			if sendErr = sender.c.Send(msgs...); sendErr != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// Meanwhile the sender's messages are read, and warnings timed.
	var warnedAt []time.Duration
	readSender := func(until <-chan struct{}) {
		for {
			select {
			case <-until:
				return
			default:
			}
			m, err := sender.c.Next(50 * time.Millisecond)
			if err != nil {
				if sender.c.Err() != nil {
					code, reason := sender.c.CloseCode()
					t.Fatalf("sender's connection ended while flooding: %v (close %d %q)", err, code, reason)
				}
				continue
			}
			switch m := m.(type) {
			case *protocol.ErrorReply:
				// A 4006 without s would be the message-rate limit's.
				if m.Code != protocol.CodeRateLimited || m.S != stream || m.ID != 0 || !m.Retry {
					t.Fatalf("sender got error %+v, want the whisper limit's 4006 on %s", m, stream)
				}
				warnedAt = append(warnedAt, time.Since(began))
			case *protocol.Pong:
				return
			case *protocol.Whisper: // none: it is the only sender
				t.Fatalf("sender got a whisper %+v", m)
			default:
				t.Fatalf("sender got %s %+v", m.Type(), m)
			}
		}
	}
	readSender(done)
	if sendErr != nil {
		t.Fatalf("flooding: %v", sendErr)
	}
	if err := sender.c.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	readSender(nil) // until the pong: every flooded whisper was handled
	elapsed := time.Since(began)

	whSend(t, end.c, stream, "end", 0, 0)
	relayed := 0
	for {
		w := nextAs[*protocol.Whisper](t, rx.c)
		if w.Ev == "end" {
			break
		}
		if d := whData(t, w); w.From != sender.from || w.Ev != fmt.Sprintf("e%d", d.Seq) {
			t.Fatalf("rx got %+v", w)
		}
		relayed++
	}
	t.Logf("flood: %d whispers in %v, %d relayed, warnings at %v", sent, elapsed.Round(time.Millisecond), relayed, warnedAt)
	if maxPass := cfg.Burst + int(elapsed.Seconds()*cfg.Rate) + 1; relayed > maxPass {
		t.Errorf("%d relayed in %v, want at most %d (burst %d + %v/s)", relayed, elapsed, maxPass, cfg.Burst, cfg.Rate)
	}
	// The bucket refills while the flood goes on: well over the burst pass.
	if minPass := cfg.Burst + int(flood.Seconds()*cfg.Rate/2); relayed < minPass {
		t.Errorf("%d relayed in %v of flooding, want at least %d (the bucket does not refill?)", relayed, flood, minPass)
	}
	// The server saw the flood within elapsed: at most one warning a second.
	if most := 1 + int(elapsed/time.Second); len(warnedAt) < 1 || len(warnedAt) > most {
		t.Errorf("%d rate-limit warnings in %v of flooding, want 1..%d (at most one a second)", len(warnedAt), elapsed, most)
	}
	for i := 1; i < len(warnedAt); i++ {
		// Arrival times jitter; the server spaces them a full second apart.
		if gap := warnedAt[i] - warnedAt[i-1]; gap < 800*time.Millisecond {
			t.Errorf("warnings %v apart, want about a second", gap)
		}
	}
	whSync(t, sender.c) // it got end's whisper
	wantAlive(t, rx.c)
}

// TestWhisperLatestValues: a late joiner's subscribed.lv holds exactly the
// newest whisper per (sender connection, ev) of the stream's subscribers;
// a sender's entries go when it unsubscribes or disconnects.
func TestWhisperLatestValues(t *testing.T) {
	h := start(t)
	const (
		stream  = "board:lv"
		senders = 5
	)
	users := make(map[string]string) // client -> user
	want := make(map[whKey]whCursor)
	peers := make([]whPeer, senders)
	for i := range peers {
		peers[i] = whConnect(t, h, token(t, fmt.Sprintf("user%d", i)))
		users[peers[i].from.Client] = peers[i].from.User
		subscribe(t, peers[i].c, 2, stream, nil)
	}
	other := whConnect(t, h, token(t, "other"))
	subscribe(t, other.c, 2, "board:other", nil)
	// Cursor moves 0..2, a selection, then moves 3..4: the newest cursor
	// replaces an entry that is older than the selection.
	for i, p := range peers {
		for seq := 0; seq < 5; seq++ {
			if seq == 3 {
				whSend(t, p.c, stream, "selection", 100+i, i)
			}
			whSend(t, p.c, stream, "cursor", seq, 1000*i+seq)
		}
		want[whKey{p.from.Client, "cursor"}] = whCursor{Seq: 4, X: 1000*i + 4}
		want[whKey{p.from.Client, "selection"}] = whCursor{Seq: 100 + i, X: i}
	}
	// Not cached: whispers of a connection not subscribed to the stream,
	// and of other streams.
	drive := whConnect(t, h, token(t, "driveby"))
	whSend(t, drive.c, stream, "cursor", 7, 7)
	whSend(t, other.c, "board:other", "cursor", 8, 8)
	for _, p := range append(peers, drive, other) {
		whSync(t, p.c)
	}
	if st := biStats(t, h); st.WhispersCached != 2*senders+1 {
		t.Errorf("whispers_cached %d, want %d", st.WhispersCached, 2*senders+1)
	}

	t.Run("late joiner", func(t *testing.T) {
		for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
			late := whConnect(t, h, token(t, "late"), codecOpts(codec))
			whLV(t, subscribe(t, late.c, 2, stream, nil), stream, users, want)
		}
	})

	t.Run("unsubscribed sender", func(t *testing.T) {
		if err := peers[0].c.Send(&protocol.Unsubscribe{ID: 3, S: stream}); err != nil {
			t.Fatal(err)
		}
		if u, err := wsclient.Wait[*protocol.Unsubscribed](peers[0].c, wait); err != nil || u.ID != 3 {
			t.Fatalf("unsubscribed %+v %v", u, err)
		}
		delete(want, whKey{peers[0].from.Client, "cursor"})
		delete(want, whKey{peers[0].from.Client, "selection"})
		late := whConnect(t, h, token(t, "late"))
		whLV(t, subscribe(t, late.c, 2, stream, nil), stream, users, want)
		// Still subscribed to nothing, it whispers: relayed, not cached.
		whSend(t, peers[0].c, stream, "cursor", 9, 9)
		whWant(t, late.c, stream, "cursor", peers[0].from, 9, 9)
		late2 := whConnect(t, h, token(t, "late"))
		whLV(t, subscribe(t, late2.c, 2, stream, nil), stream, users, want)
	})

	t.Run("disconnected sender", func(t *testing.T) {
		peers[1].c.Close() // abrupt: no close handshake
		delete(want, whKey{peers[1].from.Client, "cursor"})
		delete(want, whKey{peers[1].from.Client, "selection"})
		whWaitCached(t, h, len(want)+1)
		late := whConnect(t, h, token(t, "late"))
		whLV(t, subscribe(t, late.c, 2, stream, nil), stream, users, want)
	})

	t.Run("disconnected by the server", func(t *testing.T) {
		status, _, body := apiCall(t, h, "POST", "/api/disconnect", "Bearer "+testAPIKey, `{"user":"user2"}`)
		if status != http.StatusOK {
			t.Fatalf("disconnect: %d %s", status, body)
		}
		// (Its queue may hold whispers before the disconnect.)
		if code, err := peers[2].c.WaitClosed(wait); err != nil || code != int(protocol.CodeNormal) {
			t.Fatalf("close code %d %v, want 4000", code, err)
		}
		delete(want, whKey{peers[2].from.Client, "cursor"})
		delete(want, whKey{peers[2].from.Client, "selection"})
		whWaitCached(t, h, len(want)+1)
		late := whConnect(t, h, token(t, "late"))
		whLV(t, subscribe(t, late.c, 2, stream, nil), stream, users, want)
	})
}

// TestWhisperCacheForgetsClosedSenders: senders that go away in the middle
// of whispering leave nothing in the latest-value cache, so no later
// joiner's lv shows a ghost cursor. The race it looks for depends on timing:
// it tries rounds of 20 senders that flood and then close at once, for up
// to 4 s.
func TestWhisperCacheForgetsClosedSenders(t *testing.T) {
	// Not parallel: other tests' load makes the race rarer.
	h := start(t, func(o *harnessOpts) {
		o.cfg.Whisper.Rate, o.cfg.Whisper.Burst = 1e9, 1<<30 // every whisper counts
	})
	const (
		stream  = "board:ghost"
		senders = 20
		budget  = 4 * time.Second
	)
	began := time.Now()
	round := func(n int) {
		peers := make([]whPeer, senders)
		for i := range peers {
			peers[i] = whConnect(t, h, token(t, fmt.Sprintf("round%d-sender%d", n, i)))
			subscribe(t, peers[i].c, 2, stream, nil)
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		for _, p := range peers {
			defer p.c.Close() // on failure too: the flooders end with it
			wg.Add(1)
			go func() { // floods until its connection closes
				defer wg.Done()
				for k := 0; ; k++ {
					msgs := make([]protocol.Message, 20)
					for j := range msgs {
						msgs[j] = whMsg(stream, fmt.Sprintf("e%d", j), k, j)
					}
					if p.c.Send(msgs...) != nil {
						return
					}
					time.Sleep(time.Millisecond) // leave the test some CPU
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		closed := time.Now()
		for _, p := range peers {
			p.c.Close() // abrupt, in mid-flood
		}
		wg.Wait()
		biWaitConns(t, h, 0)
		if left := whCachedWithin(t, h, 0, 500*time.Millisecond); left != 0 {
			late := whConnect(t, h, token(t, "late"))
			sub := subscribe(t, late.c, 2, stream, nil)
			for _, w := range sub.LV {
				t.Errorf("a late joiner's lv holds ev %q of %+v, a connection closed %v ago", w.Ev, w.From, time.Since(closed).Round(time.Millisecond))
			}
			t.Fatalf("round %d: %d whispers still cached after every sender of the stream closed", n, left)
		}
	}
	n := 0
	for ; time.Since(began) < budget; n++ {
		round(n)
	}
	t.Logf("%d rounds of %d senders closing in mid-flood: no whisper left cached", n, senders)
}

// TestWhisperStalledReceiver: a receiver that stops reading for 2 s while 20
// senders move cursors at 60 Hz keeps a bounded queue (whispers conflate),
// is not disconnected, and on resuming promptly sees each sender's final
// cursor and selection; publications of the stream meanwhile all arrive, in
// order.
func TestWhisperStalledReceiver(t *testing.T) {
	const (
		stream   = "board:stall"
		senders  = 20
		hz       = 60
		stall    = 2 * time.Second
		pubs     = 50
		catchUp  = 500 * time.Millisecond // resume -> every final cursor seen
		maxQueue = 32 << 10               // without conflation: about 250 KiB
	)
	h := start(t)

	rx, r := biDialRaw(t, h, wsclient.Options{Control: whSmallBuffers})
	biConnectRaw(t, rx, r, token(t, "stalled"))
	if err := rx.Send(&protocol.Subscribe{ID: 2, S: stream}); err != nil {
		t.Fatal(err)
	}
	top := biReadUntil[*protocol.Subscribed](t, r, wait)

	peers := make([]whPeer, senders)
	index := make(map[string]int) // client -> sender
	for i := range peers {
		// Not subscribed, so they do not receive each other's cursors
		// (22,800 deliveries a second would only slow the race detector).
		peers[i] = whConnect(t, h, token(t, fmt.Sprintf("sender%02d", i)))
		index[peers[i].from.Client] = i
	}

	// rx reads nothing from here until resume.
	stalled := time.Now()
	stop := make(chan struct{})
	halt := sync.OnceFunc(func() { close(stop) })
	var wg sync.WaitGroup
	defer wg.Wait()
	defer halt() // on failure too: the goroutines end before the test does
	var sendErr, pubErr error
	last := make([]int, senders) // each sender's final cursor seq
	wg.Add(2)
	go func() { // the senders, at 60 Hz
		defer wg.Done()
		tick := time.NewTicker(time.Second / hz)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			for i, p := range peers {
				msgs := []protocol.Message{whMsg(stream, "cursor", seq, 1000*i+seq)}
				if seq == 0 {
					msgs = append(msgs, whMsg(stream, "selection", 0, i))
				}
				if sendErr = p.c.Send(msgs...); sendErr != nil {
					return
				}
				last[i] = seq
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	offsets := make([]uint64, 0, pubs)
	go func() { // API publications spread over the stall
		defer wg.Done()
		for k := 0; k < pubs; k++ {
			off, err := whPublish(h, stream, k)
			if err != nil {
				pubErr = err
				return
			}
			offsets = append(offsets, off)
			time.Sleep(stall * 3 / 4 / pubs)
		}
	}()
	maxQueued := 0
	for time.Since(stalled) < stall {
		maxQueued = max(maxQueued, biStats(t, h).QueuedBytesMax)
		time.Sleep(20 * time.Millisecond)
	}
	halt()
	wg.Wait()
	if sendErr != nil || pubErr != nil {
		t.Fatalf("senders: %v; publisher: %v", sendErr, pubErr)
	}
	// Every sender's last whisper is handled (so queued for rx) once its
	// pong is back; at 60 Hz none may have been rate limited.
	for _, p := range peers {
		if err := p.c.Send(&protocol.Ping{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range peers {
		nextAs[*protocol.Pong](t, p.c)
	}
	maxQueued = max(maxQueued, biStats(t, h).QueuedBytesMax)

	resumed := time.Now()
	stalledFor := resumed.Sub(stalled)
	seen := make([]int, senders) // newest cursor seq seen per sender
	for i := range seen {
		seen[i] = -1
	}
	selections := make([]int, senders)
	var pubsSeen []uint64
	whispers := 0
	pending := senders // senders whose final cursor is not seen yet
	pong := false
	// read handles one frame of rx's: every check of what rx receives.
	read := func() {
		f, err := r.next(time.Until(resumed.Add(wait)))
		if err != nil {
			t.Fatalf("after resuming: %v (final cursors of %d senders and %d of %d pubs missing)", err, pending, pubs-len(pubsSeen), pubs)
		}
		if f.Header.OpCode == ws.OpClose {
			t.Fatalf("close frame %d: the stalled receiver was disconnected", biCloseCode(f))
		}
		if f.Header.OpCode != ws.OpBinary {
			return
		}
		msgs, err := protocol.DecodeServer(rx.Codec, f.Payload, nil)
		if err != nil {
			t.Fatalf("undecodable frame: %v", err)
		}
		for _, d := range msgs {
			if pong {
				t.Fatalf("rx got %s after the pong", d.Msg.Type())
			}
			switch m := d.Msg.(type) {
			case *protocol.Whisper:
				whispers++
				i, ok := index[m.From.Client]
				if !ok || m.S != stream || m.From.User != fmt.Sprintf("sender%02d", i) {
					t.Fatalf("whisper %+v from no sender", m)
				}
				c := whData(t, m)
				switch m.Ev {
				case "selection":
					selections[i]++
				case "cursor":
					if c.Seq <= seen[i] || c.X != 1000*i+c.Seq {
						t.Fatalf("sender %d: cursor %+v after seq %d (reordered, repeated or wrong data)", i, c, seen[i])
					}
					seen[i] = c.Seq
					if c.Seq == last[i] {
						pending--
					}
				default:
					t.Fatalf("whisper ev %q", m.Ev)
				}
			case *protocol.Pub:
				n := len(pubsSeen)
				if n == pubs || m.Offset != offsets[n] || m.Offset != top.Offset+uint64(n)+1 || seqOf(t, m.Data) != n {
					t.Fatalf("pub %d: offset %d seq %d, want offset %d (published at %d) seq %d", n, m.Offset, seqOf(t, m.Data), top.Offset+uint64(n)+1, offsets[min(n, pubs-1)], n)
				}
				pubsSeen = append(pubsSeen, m.Offset)
			case *protocol.Pong:
				pong = true
			case *protocol.Disconnect:
				t.Fatalf("disconnect %d %q: the stalled receiver was disconnected", m.Code, m.Reason)
			default:
				t.Fatalf("rx got %s %+v", m.Type(), m)
			}
		}
	}
	for pending > 0 || len(pubsSeen) < pubs {
		read()
	}
	took := time.Since(resumed)
	sent := 0
	for _, l := range last {
		sent += l + 2 // cursors 0..l and a selection
	}
	conflated := whMetric(t, h, "huddle_whispers_conflated_total")
	t.Logf("stalled %v: max queued_bytes_max %d B (bound %d); every final cursor and all %d pubs %v after resuming; %d of %d whispers reached rx, %v conflated",
		stalledFor.Round(time.Millisecond), maxQueued, maxQueue, pubs, took.Round(time.Microsecond), whispers, sent, conflated)
	if maxQueued > maxQueue {
		t.Errorf("queued bytes reached %d during the stall, want at most %d", maxQueued, maxQueue)
	}
	if took > catchUp {
		t.Errorf("every sender's final cursor took %v after resuming, want at most %v", took, catchUp)
	}
	if conflated == 0 || whispers >= sent {
		t.Errorf("%d of %d whispers arrived, %v conflated: the stall never reached the server's queue", whispers, sent, conflated)
	}
	for _, reason := range []string{"slow_consumer", "whisper_queue_full"} {
		if n, _ := biMetric(t, h, "huddle_queue_drops_total", `reason="`+reason+`"`); n != 0 {
			t.Errorf("%v drops for %s", n, reason)
		}
	}
	// Still connected; what is left before the pong may only be selections.
	if err := rx.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	for !pong {
		read()
	}
	for i, n := range selections {
		if n != 1 {
			t.Errorf("sender %d: %d selections, want 1 (a cursor must not replace a selection)", i, n)
		}
	}
}

// TestWhisperGoneSenderNulls: when a subscribed sender's cached whispers are
// dropped (unsub, clean close, abrupt close), every other subscriber gets a
// null whisper of each cached ev from it, so no client keeps a ghost cursor;
// a sender that was not subscribed (nothing cached) or had hidden its cursor
// already sends nothing more.
func TestWhisperGoneSenderNulls(t *testing.T) {
	h := start(t)
	const stream = "board:nulls"
	watcher := whConnect(t, h, token(t, "watcher"), jsonOpts)
	subscribe(t, watcher.c, 2, stream, nil)
	wantNull := func(t *testing.T, from protocol.ClientInfo, ev string) {
		t.Helper()
		w := nextAs[*protocol.Whisper](t, watcher.c)
		if w.S != stream || w.Ev != ev || w.From != from || !w.Data.IsNil() {
			t.Fatalf("got whisper s=%q ev=%q from=%+v data=%x, want a null %q from %+v", w.S, w.Ev, w.From, []byte(w.Data), ev, from)
		}
	}
	for _, end := range []string{"unsub", "close", "abrupt"} {
		t.Run(end, func(t *testing.T) {
			p := whConnect(t, h, token(t, "mover-"+end))
			subscribe(t, p.c, 2, stream, nil)
			whSend(t, p.c, stream, "cursor", 1, 10)
			whSend(t, p.c, stream, "selection", 2, 20)
			whWant(t, watcher.c, stream, "cursor", p.from, 1, 10)
			whWant(t, watcher.c, stream, "selection", p.from, 2, 20)
			switch end {
			case "unsub":
				if err := p.c.Send(&protocol.Unsubscribe{S: stream}); err != nil {
					t.Fatal(err)
				}
			case "close":
				if err := p.c.SendRaw(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye")); err != nil {
					t.Fatal(err)
				}
			default:
				p.c.Close()
			}
			got := map[string]bool{}
			for range 2 {
				w := nextAs[*protocol.Whisper](t, watcher.c)
				if w.From != p.from || !w.Data.IsNil() {
					t.Fatalf("got whisper ev=%q from=%+v data=%x, want nulls from %+v", w.Ev, w.From, []byte(w.Data), p.from)
				}
				got[w.Ev] = true
			}
			if !got["cursor"] || !got["selection"] {
				t.Fatalf("null whispers for %v, want cursor and selection", got)
			}
			wantAlive(t, watcher.c)
		})
	}
	t.Run("hidden or never cached", func(t *testing.T) {
		hid := whConnect(t, h, token(t, "hider"))
		subscribe(t, hid.c, 2, stream, nil)
		whSend(t, hid.c, stream, "cursor", 1, 1)
		whWant(t, watcher.c, stream, "cursor", hid.from, 1, 1)
		if err := hid.c.Send(&protocol.SendWhisper{S: stream, Ev: "cursor", Data: protocol.RawNil}); err != nil {
			t.Fatal(err)
		}
		wantNull(t, hid.from, "cursor")
		outsider := whConnect(t, h, token(t, "outsider")) // whispers without subscribing
		whSend(t, outsider.c, stream, "cursor", 3, 3)
		whWant(t, watcher.c, stream, "cursor", outsider.from, 3, 3)
		hid.c.Close()
		outsider.c.Close()
		biWaitConns(t, h, 1)
		wantAlive(t, watcher.c) // nothing else came first
	})
}
