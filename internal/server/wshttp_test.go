package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// httpSession is a client of huddle.v1 over HTTP: messages down as
// server-sent events (or polls), up as POSTs numbered by seq.
type httpSession struct {
	h    *harness
	id   string
	sse  *sseStream // nil: polled
	seq  int
	ack  string // the last poll answer's number
	msgs []map[string]any
}

func (h *harness) openHTTPEvents() *httpSession {
	h.t.Helper()
	s := h.openSSEPath("GET", "/ws/events", "", nil, "")
	if s.Status != 200 {
		h.t.Fatalf("GET /ws/events: %d %q", s.Status, s.Body)
	}
	ev := s.Next()
	var m struct{ Session string }
	if ev.Event != "session" || json.Unmarshal([]byte(ev.Data), &m) != nil || len(m.Session) != 32 {
		h.t.Fatalf("first event %+v, want the session", ev)
	}
	return &httpSession{h: h, id: m.Session, sse: s}
}

func (h *harness) openHTTPPoll() *httpSession {
	h.t.Helper()
	resp, err := apiClient.Get(h.HTTP + "/ws/poll")
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m struct{ Session string }
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&m) != nil || m.Session == "" {
		h.t.Fatalf("GET /ws/poll: %d", resp.StatusCode)
	}
	return &httpSession{h: h, id: m.Session, ack: "0"}
}

// post sends messages (huddle.v1 JSON, one a line) under the next seq.
func (s *httpSession) post(msgs ...map[string]any) int {
	s.seq++
	return s.postSeq(s.seq, msgs...)
}

func (s *httpSession) postSeq(seq int, msgs ...map[string]any) int {
	s.h.t.Helper()
	var b strings.Builder
	for _, m := range msgs {
		j, _ := json.Marshal(m)
		b.Write(j)
		b.WriteByte('\n')
	}
	resp, err := apiClient.Post(s.h.HTTP+"/ws/send?session="+s.id+"&seq="+itoa(seq), "application/json", strings.NewReader(b.String()))
	if err != nil {
		s.h.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// next returns the next server message that is not a ping.
func (s *httpSession) next() map[string]any {
	s.h.t.Helper()
	for {
		for len(s.msgs) == 0 {
			if s.sse != nil {
				ev := s.sse.Next()
				var m map[string]any
				if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
					s.h.t.Fatalf("event %+v is not a message", ev)
				}
				s.msgs = append(s.msgs, m)
				continue
			}
			s.poll()
		}
		m := s.msgs[0]
		s.msgs = s.msgs[1:]
		if m["t"] != "ping" {
			return m
		}
	}
}

// poll takes what the session has queued (waiting, as a poll does).
func (s *httpSession) poll() int {
	s.h.t.Helper()
	resp, err := apiClient.Get(s.h.HTTP + "/ws/poll?session=" + s.id + "&ack=" + s.ack)
	if err != nil {
		s.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 || resp.StatusCode == 204 {
		s.ack = resp.Header.Get("Huddle-Poll")
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(body)), "\n") {
		var m map[string]any
		if line != "" && resp.StatusCode == 200 && json.Unmarshal([]byte(line), &m) == nil {
			s.msgs = append(s.msgs, m)
		}
	}
	return resp.StatusCode
}

func (s *httpSession) expect(t string) map[string]any {
	s.h.t.Helper()
	m := s.next()
	if m["t"] != t {
		s.h.t.Fatalf("message %v, want t=%s", m, t)
	}
	return m
}

// TestHTTPSession: huddle.v1 over HTTP, with events or polls down and
// POSTs up, does what a WebSocket does: connect, subscribe with recover,
// publications in order, publish, whisper both ways with a WebSocket
// client, presence; a POST sent twice (same seq) is handled once, one
// that skips a seq is refused.
func TestHTTPSession(t *testing.T) {
	for _, mode := range []string{"events", "poll"} {
		t.Run(mode, func(t *testing.T) {
			h := start(t)
			var s *httpSession
			if mode == "events" {
				s = h.openHTTPEvents()
			} else {
				s = h.openHTTPPoll()
			}
			if code := s.post(map[string]any{"t": "connect", "id": 1, "token": token(t, "ann")}); code != 204 {
				t.Fatalf("POST connect: %d", code)
			}
			if m := s.expect("connected"); m["user"] != "ann" {
				t.Fatalf("connected %v", m)
			}
			for i := 1; i <= 3; i++ {
				h.apiPublish(`{"stream":"doc:1","data":` + itoa(i) + `}`)
			}
			s.post(map[string]any{"t": "sub", "id": 2, "s": "doc:1", "recover": map[string]any{"epoch": "", "offset": 1}, "presence": true})
			sub := s.expect("subscribed")
			if pubs, _ := sub["pubs"].([]any); sub["recovered"] == true && len(pubs) != 2 {
				t.Fatalf("subscribed %v", sub)
			}
			ws := h.dial("bob")
			subscribe(t, ws, 1, "doc:1", nil)
			// A publish sent twice under one seq is stored once.
			pub := map[string]any{"t": "pub", "id": 3, "s": "doc:1", "data": "from http"}
			if code := s.post(pub); code != 204 {
				t.Fatalf("POST pub: %d", code)
			}
			if code := s.postSeq(s.seq, pub); code != 204 {
				t.Fatalf("the same seq again: %d", code)
			}
			if code := s.postSeq(s.seq+2, pub); code != 409 {
				t.Fatalf("a skipped seq: %d, want 409", code)
			}
			// The ack and the publication itself, in either order.
			seen := map[any]map[string]any{}
			for len(seen) < 2 {
				m := s.next()
				if m["t"] == "presence" {
					continue
				}
				seen[m["t"]] = m
			}
			if ack := seen["ack"]; ack["offset"] != float64(4) {
				t.Fatalf("ack %v", ack)
			}
			if m := seen["pub"]; m["data"] != "from http" || m["offset"] != float64(4) {
				t.Fatalf("own pub %v", m)
			}
			got, err := wsclient.Wait[*protocol.Pub](ws, wait)
			if err != nil || got.Offset != 4 {
				t.Fatalf("the WebSocket got %+v, %v", got, err)
			}
			// Whispers both ways.
			_ = ws.Send(&protocol.SendWhisper{S: "doc:1", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 1})})
			for {
				m := s.next()
				if m["t"] == "whisper" {
					break
				}
				if m["t"] != "presence" {
					t.Fatalf("want a whisper, got %v", m)
				}
			}
			s.post(map[string]any{"t": "whisper", "s": "doc:1", "ev": "cursor", "data": map[string]int{"x": 2}})
			if w, err := wsclient.Wait[*protocol.Whisper](ws, wait); err != nil || w.Ev != "cursor" {
				t.Fatalf("whisper from http: %+v %v", w, err)
			}
			// History, presence who, a token refresh and leaving presence.
			s.post(map[string]any{"t": "history", "id": 10, "s": "doc:1", "limit": 10})
			s.post(map[string]any{"t": "refresh", "id": 11, "token": token(t, "ann")})
			s.post(map[string]any{"t": "leave", "id": 12, "s": "doc:1"})
			replies := map[any]map[string]any{}
			for len(replies) < 2 {
				m := s.next()
				if id, ok := m["id"].(float64); ok && id >= 10 {
					replies[m["t"]] = m
				}
			}
			if hist, _ := replies["history"]["pubs"].([]any); len(hist) != 4 {
				t.Fatalf("history over HTTP: %v", replies["history"])
			}
			if replies["refreshed"] == nil {
				t.Fatalf("refresh over HTTP: %v", replies)
			}
			if code := (&httpSession{h: h, id: "nope"}).post(pub); code != 404 {
				t.Fatalf("unknown session: %d", code)
			}
		})
	}
}

// TestHTTPPollLost: a poll that does not acknowledge the last answer (it
// was lost on the way) ends the session; a POST to it then gets 404, and
// an empty answer, which holds nothing, need not be acknowledged.
func TestHTTPPollLost(t *testing.T) {
	h := start(t)
	s := h.openHTTPPoll()
	s.post(map[string]any{"t": "connect", "id": 1, "token": token(t, "ann")})
	s.expect("connected") // ack is now 1
	s.ack = "0"           // as if that answer never arrived
	if code := s.poll(); code != http.StatusGone {
		t.Fatalf("a poll acknowledging an old answer: %d, want 410", code)
	}
	deadline := time.Now().Add(wait)
	for s.post(map[string]any{"t": "pong"}) != 404 {
		if time.Now().After(deadline) {
			t.Fatal("the session did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
