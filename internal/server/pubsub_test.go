package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// apiClient bounds every API call, so a stuck server fails a test instead of
// hanging it.
var apiClient = &http.Client{Timeout: wait}

// apiResult is one item of a POST /api/publish response.
type apiResult struct {
	Offset uint64 `json:"offset"`
	Epoch  string `json:"epoch"`
}

// seqBatch builds a POST /api/publish batch body of n items on stream whose
// data is {"seq": first+i}.
func seqBatch(stream string, first, n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"stream":%q,"data":{"seq":%d}}`, stream, first+i)
	}
	return "[" + strings.Join(items, ",") + "]"
}

// publishSeq publishes n items with seq first.. to stream in one batch and
// checks that their offsets are contiguous and share one epoch.
func publishSeq(t *testing.T, h *harness, stream string, first, n int) []apiResult {
	t.Helper()
	code, body := apiPublishT(t, h, seqBatch(stream, first, n))
	if code != http.StatusOK {
		t.Fatalf("publish: %d %s", code, body)
	}
	var resp struct{ Results []apiResult }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("publish response %q: %v", body, err)
	}
	if len(resp.Results) != n {
		t.Fatalf("publish: %d results for %d items", len(resp.Results), n)
	}
	for i, r := range resp.Results[1:] {
		if r.Offset != resp.Results[i].Offset+1 || r.Epoch != resp.Results[0].Epoch {
			t.Fatalf("publish results not contiguous at %d: %+v after %+v", i+1, r, resp.Results[i])
		}
	}
	return resp.Results
}

// apiPublishT is h.apiPublish reporting to t (safe in subtests).
func apiPublishT(t *testing.T, h *harness, body string) (int, string) {
	t.Helper()
	status, _, b := apiCall(t, h, "POST", "/api/publish", "Bearer "+testAPIKey, body)
	return status, string(b)
}

// seqOf decodes the seq of a publication published by publishSeq.
func seqOf(t *testing.T, data protocol.Raw) int {
	t.Helper()
	var v struct {
		Seq int `msgpack:"seq"`
	}
	if err := msgpack.Unmarshal(data, &v); err != nil {
		t.Fatalf("pub data %x: %v", []byte(data), err)
	}
	return v.Seq
}

// apiCall sends an HTTP request to the server with the Authorization header
// auth (none when empty) and returns the status and body.
func apiCall(t *testing.T, h *harness, method, path, authz, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.HTTP+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// wantAPIError checks that an HTTP API answer is the JSON error body.
func wantAPIError(t *testing.T, status, wantStatus int, hdr http.Header, body []byte) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d (%s)", status, wantStatus, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content type %q, want application/json", ct)
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %s: want {\"error\":{\"code\",\"message\"}} (%v)", body, err)
	}
}

func TestPubSubAPIFanout(t *testing.T) {
	h := start(t)
	const (
		stream  = "feed"
		batches = 10
		perReq  = 100
		total   = batches * perReq
	)
	codecs := []protocol.Codec{protocol.Msgpack, protocol.JSON, protocol.Msgpack, protocol.JSON}
	subs := make([]*wsclient.Client, len(codecs))
	var epoch string
	for i, codec := range codecs {
		subs[i] = dialUser(t, h, fmt.Sprintf("sub%d", i), codecOpts(codec))
		s := subscribe(t, subs[i], 2, stream, nil)
		if s.Offset != 0 || s.Epoch == "" {
			t.Fatalf("subscribed %+v: want offset 0 and an epoch", s)
		}
		if epoch == "" {
			epoch = s.Epoch
		} else if s.Epoch != epoch {
			t.Fatalf("subscriber %d sees epoch %q, others %q", i, s.Epoch, epoch)
		}
	}
	var next uint64 = 1
	for b := range batches {
		for _, r := range publishSeq(t, h, stream, b*perReq, perReq) {
			if r.Offset != next || r.Epoch != epoch {
				t.Fatalf("API result %+v, want offset %d epoch %q", r, next, epoch)
			}
			next++
		}
	}
	// A sentinel after the batches: the next message after the 1000th pub must
	// be it, so a duplicate or an extra pub cannot hide.
	publishSeq(t, h, stream, total, 1)
	for i, c := range subs {
		t.Run(fmt.Sprintf("sub%d/%s", i, codecName(codecs[i])), func(t *testing.T) {
			for n := range total + 1 {
				p := nextAs[*protocol.Pub](t, c)
				if p.S != stream || p.Epoch != epoch || p.Offset != uint64(n+1) {
					t.Fatalf("pub #%d: s=%q epoch=%q offset=%d, want offset %d", n, p.S, p.Epoch, p.Offset, n+1)
				}
				if got := seqOf(t, p.Data); got != n {
					t.Fatalf("pub #%d carries seq %d: batch order lost", n, got)
				}
				if p.From != nil {
					t.Fatalf("API pub has from %+v", p.From)
				}
				if p.TS == 0 {
					t.Fatalf("pub #%d has no ts", n)
				}
			}
		})
	}
}

func TestPubSubClientPublish(t *testing.T) {
	h := start(t)
	alice, am := dialConnect(t, h, token(t, "alice"))
	bob, _ := dialConnect(t, h, token(t, "bob"), jsonOpts)
	carol, cm := dialConnect(t, h, token(t, "carol"), jsonOpts)
	sa := subscribe(t, alice, 2, "room", nil)
	subscribe(t, bob, 2, "room", nil)

	// publish sends a pub from c and reads the ack and, when echo is set
	// (c is subscribed), c's own pub, in either order.
	publish := func(t *testing.T, c *wsclient.Client, id uint64, data any, echo bool) (*protocol.Ack, *protocol.Pub) {
		t.Helper()
		if err := c.Send(&protocol.Publish{ID: id, S: "room", Data: protocol.MustRaw(data)}); err != nil {
			t.Fatal(err)
		}
		var ack *protocol.Ack
		var own *protocol.Pub
		n := 1
		if echo {
			n = 2
		}
		for range n {
			switch m := nextMsg(t, c).(type) {
			case *protocol.Ack:
				ack = m
			case *protocol.Pub:
				own = m
			default:
				t.Fatalf("publisher got %s %+v", m.Type(), m)
			}
		}
		if ack == nil || (echo && own == nil) {
			t.Fatalf("publisher got ack %+v and own pub %+v", ack, own)
		}
		if ack.ID != id || ack.S != "room" || ack.Epoch != sa.Epoch {
			t.Fatalf("ack %+v, want id %d s room epoch %q", ack, id, sa.Epoch)
		}
		return ack, own
	}

	// alice is subscribed: she gets her own pub too.
	ack, own := publish(t, alice, 10, map[string]any{"text": "hi"}, true)
	if ack.Offset != sa.Offset+1 {
		t.Fatalf("ack offset %d, want %d", ack.Offset, sa.Offset+1)
	}
	if own.Offset != ack.Offset || own.From == nil || *own.From != (protocol.ClientInfo{User: "alice", Client: am.Client}) {
		t.Fatalf("alice's own pub %+v from %+v", own, own.From)
	}
	p := nextAs[*protocol.Pub](t, bob)
	if p.Offset != ack.Offset || p.Epoch != ack.Epoch || p.From == nil || *p.From != (protocol.ClientInfo{User: "alice", Client: am.Client}) {
		t.Fatalf("bob got %+v from %+v, want offset %d from alice/%s", p, p.From, ack.Offset, am.Client)
	}
	var text struct {
		Text string `msgpack:"text"`
	}
	if err := msgpack.Unmarshal(p.Data, &text); err != nil || text.Text != "hi" {
		t.Fatalf("data %x: %v", []byte(p.Data), err)
	}

	// carol is not subscribed: ack only, and both subscribers see her.
	ack2, _ := publish(t, carol, 11, 42, false)
	if ack2.Offset != ack.Offset+1 {
		t.Fatalf("carol's ack offset %d, want %d", ack2.Offset, ack.Offset+1)
	}
	for _, c := range []*wsclient.Client{alice, bob} {
		p := nextAs[*protocol.Pub](t, c)
		if p.Offset != ack2.Offset || p.From == nil || *p.From != (protocol.ClientInfo{User: "carol", Client: cm.Client}) {
			t.Fatalf("pub %+v from %+v, want offset %d from carol/%s", p, p.From, ack2.Offset, cm.Client)
		}
	}
	wantAlive(t, carol) // nothing but the ack came to carol
}

func TestPubSubForbidden(t *testing.T) {
	h := start(t)
	grants := map[string][]string{"allowed:*": {"sub"}, "rw": {"sub", "pub"}}
	tests := []struct {
		name string
		msg  protocol.Message
	}{
		{"sub ungranted stream", &protocol.Subscribe{ID: 5, S: "secret"}},
		{"sub prefix is not a match", &protocol.Subscribe{ID: 5, S: "allowed"}},
		{"sub exact grant is not a prefix", &protocol.Subscribe{ID: 5, S: "rwx"}},
		{"pub with sub only", &protocol.Publish{ID: 5, S: "allowed:x", Data: protocol.MustRaw(1)}},
		{"history without history op", &protocol.HistoryRequest{ID: 5, S: "rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTok(t, h, tokenWith(t, "gina", time.Now().Add(time.Hour), grants))
			if err := c.Send(tt.msg); err != nil {
				t.Fatal(err)
			}
			e := wantError(t, c, 5, protocol.CodeForbidden)
			if e.Retry {
				t.Errorf("forbidden error says retry")
			}
			// The connection keeps working.
			s := subscribe(t, c, 6, "allowed:ok", nil)
			if s.ID != 6 {
				t.Fatalf("subscribed %+v", s)
			}
			if err := c.Send(&protocol.Publish{ID: 7, S: "rw", Data: protocol.MustRaw(1)}); err != nil {
				t.Fatal(err)
			}
			if a := nextAs[*protocol.Ack](t, c); a.ID != 7 {
				t.Fatalf("ack %+v", a)
			}
		})
	}
	t.Run("forbidden pub stores nothing", func(t *testing.T) {
		status, _, body := apiCall(t, h, "GET", "/api/history/allowed:x", "Bearer "+testAPIKey, "")
		if status != 200 || !strings.Contains(string(body), `"offset":0`) {
			t.Fatalf("history %d %s, want offset 0", status, body)
		}
	})
}

func TestPubSubRules(t *testing.T) {
	h := start(t, func(o *harnessOpts) {
		o.rules = []string{"public:*=sub", "locked:*=;deny=sub", "ro:*=sub,history;deny=pub"}
	})
	noGrants := func(t *testing.T) string { return tokenWith(t, "nobody", time.Now().Add(time.Hour), nil) }
	allGrants := func(t *testing.T) string { return token(t, "root") }
	tests := []struct {
		name  string
		token func(*testing.T) string
		msg   protocol.Message
		code  protocol.Code // 0: allowed
	}{
		{"rule grants sub", noGrants, &protocol.Subscribe{ID: 3, S: "public:news"}, 0},
		{"rule grants only sub", noGrants, &protocol.Publish{ID: 3, S: "public:news", Data: protocol.MustRaw(1)}, protocol.CodeForbidden},
		{"no rule no grant", noGrants, &protocol.Subscribe{ID: 3, S: "private"}, protocol.CodeForbidden},
		{"rule prefix must match", noGrants, &protocol.Subscribe{ID: 3, S: "publicity"}, protocol.CodeForbidden},
		{"deny beats token grant", allGrants, &protocol.Subscribe{ID: 3, S: "locked:x"}, protocol.CodeForbidden},
		{"deny covers only its ops", allGrants, &protocol.Publish{ID: 3, S: "locked:x", Data: protocol.MustRaw(1)}, 0},
		{"deny beats own allow and token", allGrants, &protocol.Publish{ID: 3, S: "ro:x", Data: protocol.MustRaw(1)}, protocol.CodeForbidden},
		{"rule grants history", noGrants, &protocol.HistoryRequest{ID: 3, S: "ro:x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialTok(t, h, tt.token(t))
			if err := c.Send(tt.msg); err != nil {
				t.Fatal(err)
			}
			if tt.code != 0 {
				wantError(t, c, 3, tt.code)
				wantAlive(t, c)
				return
			}
			m := nextMsg(t, c)
			switch m := m.(type) {
			case *protocol.Subscribed:
				if m.ID != 3 {
					t.Fatalf("subscribed %+v", m)
				}
			case *protocol.Ack:
				if m.ID != 3 {
					t.Fatalf("ack %+v", m)
				}
			case *protocol.History:
				if m.ID != 3 {
					t.Fatalf("history %+v", m)
				}
			default:
				t.Fatalf("got %s %+v, want success", m.Type(), m)
			}
		})
	}
}

func TestPubSubInvalidStream(t *testing.T) {
	h := start(t)
	long := strings.Repeat("s", 300)
	names := []struct{ name, s string }{
		{"empty", ""},
		{"300 bytes", long},
		{"257 bytes", long[:257]},
		{"control character", "a\x01b"},
		{"invalid utf-8", "a\xffb"},
	}
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		for _, n := range names {
			if codec == protocol.JSON && n.name == "invalid utf-8" {
				continue // JSON cannot carry it
			}
			msgs := []protocol.Message{
				&protocol.Subscribe{ID: 4, S: n.s},
				&protocol.Publish{ID: 4, S: n.s, Data: protocol.MustRaw(1)},
				&protocol.HistoryRequest{ID: 4, S: n.s},
			}
			for _, m := range msgs {
				t.Run(codecName(codec)+"/"+m.Type()+"/"+n.name, func(t *testing.T) {
					c := dialUser(t, h, "ivan", codecOpts(codec))
					if err := c.Send(m); err != nil {
						t.Fatal(err)
					}
					wantError(t, c, 4, protocol.CodeBadRequest)
					wantAlive(t, c)
				})
			}
		}
	}
	t.Run("256 bytes is fine", func(t *testing.T) {
		c := dialUser(t, h, "ivan")
		if s := subscribe(t, c, 2, long[:256], nil); s.S != long[:256] {
			t.Fatalf("subscribed to %q", s.S)
		}
	})
}

func TestPubSubUnknownType(t *testing.T) {
	h := start(t)
	frames := map[protocol.Codec][]byte{
		protocol.JSON: []byte(`{"t":"frobnicate","id":7,"x":1}`),
	}
	mp, err := msgpack.Marshal(map[string]any{"t": "frobnicate", "id": 7, "x": 1})
	if err != nil {
		t.Fatal(err)
	}
	frames[protocol.Msgpack] = mp
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			c := dialUser(t, h, "judy", codecOpts(codec))
			op := ws.OpBinary
			if codec == protocol.JSON {
				op = ws.OpText
			}
			if err := c.SendRaw(op, frames[codec]); err != nil {
				t.Fatal(err)
			}
			wantError(t, c, 7, protocol.CodeBadRequest)
			wantAlive(t, c)
			subscribe(t, c, 8, "after-unknown", nil)
		})
	}
}

func TestPubSubUnsubscribe(t *testing.T) {
	h := start(t)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			room, s1, s2 := "unsub:"+codecName(codec), "s1:"+codecName(codec), "s2:"+codecName(codec)
			c := dialUser(t, h, "kim", codecOpts(codec))
			subscribe(t, c, 2, room, nil)
			subscribe(t, c, 3, s1, nil)
			publishSeq(t, h, room, 0, 1)
			if p := nextAs[*protocol.Pub](t, c); p.S != room {
				t.Fatalf("pub on %q before unsub", p.S)
			}
			if err := c.Send(&protocol.Unsubscribe{ID: 5, S: room}); err != nil {
				t.Fatal(err)
			}
			if u := nextAs[*protocol.Unsubscribed](t, c); u.ID != 5 || u.S != room {
				t.Fatalf("unsubscribed %+v", u)
			}
			// Publish on the old stream, then on a sentinel: the sentinel
			// must be the next thing to arrive.
			publishSeq(t, h, room, 1, 3)
			publishSeq(t, h, s1, 0, 1)
			if p := nextAs[*protocol.Pub](t, c); p.S != s1 {
				t.Fatalf("got pub on %q after unsubscribing", p.S)
			}
			// Without an id: no reply.
			subscribe(t, c, 6, s2, nil)
			if err := c.Send(&protocol.Unsubscribe{S: s1}); err != nil {
				t.Fatal(err)
			}
			wantAlive(t, c) // no unsubscribed before the pong
			publishSeq(t, h, s1, 1, 1)
			publishSeq(t, h, s2, 0, 1)
			if p := nextAs[*protocol.Pub](t, c); p.S != s2 {
				t.Fatalf("got pub on %q after unsubscribing", p.S)
			}
			// Subscribing again works and starts at the current top.
			if s := subscribe(t, c, 7, room, nil); s.Offset != 4 {
				t.Fatalf("resubscribed at offset %d, want 4", s.Offset)
			}
		})
	}
}

func TestPubSubHistory(t *testing.T) {
	h := start(t)
	const stream = "log"
	res := publishSeq(t, h, stream, 1, 10) // offsets 1..10 carry seq 1..10
	epoch := res[0].Epoch
	if res[0].Offset != 1 {
		t.Fatalf("first offset %d", res[0].Offset)
	}
	span := func(from, to int) []uint64 {
		var out []uint64
		for i := from; ; {
			out = append(out, uint64(i))
			if i == to {
				return out
			}
			if from < to {
				i++
			} else {
				i--
			}
		}
	}
	tests := []struct {
		name string
		req  protocol.HistoryRequest
		want []uint64
		more bool
	}{
		{"all", protocol.HistoryRequest{}, span(1, 10), false},
		{"limit", protocol.HistoryRequest{Limit: 3}, span(1, 3), true},
		{"reverse limit", protocol.HistoryRequest{Limit: 3, Reverse: true}, span(10, 8), true},
		{"reverse", protocol.HistoryRequest{Reverse: true}, span(10, 1), false},
		{"since", protocol.HistoryRequest{Since: &protocol.Position{Epoch: epoch, Offset: 7}}, span(8, 10), false},
		{"since limit", protocol.HistoryRequest{Since: &protocol.Position{Epoch: epoch, Offset: 7}, Limit: 2}, span(8, 9), true},
		{"since reverse limit", protocol.HistoryRequest{Since: &protocol.Position{Epoch: epoch, Offset: 7}, Limit: 2, Reverse: true}, span(10, 9), true},
		{"since top", protocol.HistoryRequest{Since: &protocol.Position{Epoch: epoch, Offset: 10}}, nil, false},
	}
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		c := dialUser(t, h, "liz", codecOpts(codec))
		for _, tt := range tests {
			t.Run(codecName(codec)+"/"+tt.name, func(t *testing.T) {
				req := tt.req
				req.ID, req.S = 9, stream
				if err := c.Send(&req); err != nil {
					t.Fatal(err)
				}
				hm := nextAs[*protocol.History](t, c)
				if hm.ID != 9 || hm.S != stream || hm.Epoch != epoch || hm.Offset != 10 || hm.More != tt.more {
					t.Fatalf("history id=%d s=%q epoch=%q offset=%d more=%v, want 9 %q %q 10 %v", hm.ID, hm.S, hm.Epoch, hm.Offset, hm.More, stream, epoch, tt.more)
				}
				var got []uint64
				for _, p := range hm.Pubs {
					got = append(got, p.Offset)
					if seqOf(t, p.Data) != int(p.Offset) || p.Epoch != epoch || p.S != stream {
						t.Fatalf("history pub %+v", p)
					}
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("offsets %v, want %v", got, tt.want)
				}
			})
		}
	}
	t.Run("without history op", func(t *testing.T) {
		c := dialTok(t, h, tokenWith(t, "liz", time.Now().Add(time.Hour), map[string][]string{stream: {"sub", "pub"}}))
		if err := c.Send(&protocol.HistoryRequest{ID: 11, S: stream}); err != nil {
			t.Fatal(err)
		}
		wantError(t, c, 11, protocol.CodeForbidden)
		wantAlive(t, c)
	})
}

func TestAPIHistory(t *testing.T) {
	h := start(t)
	res := publishSeq(t, h, "doc:1", 1, 10)
	epoch := res[0].Epoch
	type pub struct {
		S      string
		Offset uint64
		Epoch  string
		Data   struct{ Seq int }
		From   *protocol.ClientInfo
		TS     int64
	}
	tests := []struct {
		query string
		want  []uint64
		more  bool
	}{
		{"", []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, false},
		{"?limit=3", []uint64{1, 2, 3}, true},
		{"?since_offset=7", []uint64{8, 9, 10}, false},
		{"?since_offset=7&epoch=" + epoch, []uint64{8, 9, 10}, false},
		{"?since_offset=7&limit=2", []uint64{8, 9}, true},
		{"?since_offset=10", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, _, body := apiCall(t, h, "GET", "/api/history/doc:1"+tt.query, "Bearer "+testAPIKey, "")
			if status != 200 {
				t.Fatalf("status %d %s", status, body)
			}
			var got struct {
				Stream string
				Epoch  string
				Offset uint64
				Pubs   []pub
				More   bool
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			if got.Stream != "doc:1" || got.Epoch != epoch || got.Offset != 10 || got.More != tt.more {
				t.Fatalf("history %s", body)
			}
			var offs []uint64
			for _, p := range got.Pubs {
				offs = append(offs, p.Offset)
				if p.Data.Seq != int(p.Offset) || p.Epoch != epoch || p.From != nil || p.TS == 0 {
					t.Fatalf("pub %+v in %s", p, body)
				}
			}
			if !slices.Equal(offs, tt.want) {
				t.Fatalf("offsets %v, want %v", offs, tt.want)
			}
		})
	}
	errs := []struct {
		query  string
		status int
	}{
		{"?since_offset=1&epoch=gone", http.StatusConflict},
		{"?limit=abc", http.StatusBadRequest},
		{"?limit=0", http.StatusBadRequest},
		{"?since_offset=-1", http.StatusBadRequest},
	}
	for _, tt := range errs {
		t.Run(tt.query, func(t *testing.T) {
			status, hdr, body := apiCall(t, h, "GET", "/api/history/doc:1"+tt.query, "Bearer "+testAPIKey, "")
			wantAPIError(t, status, tt.status, hdr, body)
		})
	}
}

func TestAPIStats(t *testing.T) {
	h := start(t)
	a := dialUser(t, h, "alice")
	b := dialUser(t, h, "bob", jsonOpts)
	dialUser(t, h, "carol")
	subscribe(t, a, 2, "room", nil)
	subscribe(t, b, 2, "room", nil)
	subscribe(t, a, 3, "other", nil)
	stats := func(t *testing.T) map[string]any {
		t.Helper()
		status, _, body := apiCall(t, h, "GET", "/api/stats", "Bearer "+testAPIKey, "")
		if status != 200 {
			t.Fatalf("stats %d %s", status, body)
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return m
	}
	m := stats(t)
	want := map[string]float64{"connections": 3, "streams": 2, "subscriptions": 3}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("stats %s = %v, want %v (%v)", k, m[k], v, m)
		}
	}
	if err := a.Send(&protocol.Unsubscribe{ID: 4, S: "other"}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Unsubscribed](t, a)
	m = stats(t)
	want = map[string]float64{"connections": 3, "streams": 1, "subscriptions": 2}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("after unsub: stats %s = %v, want %v (%v)", k, m[k], v, m)
		}
	}
}

func TestAPIUnauthorized(t *testing.T) {
	h := start(t)
	endpoints := []struct{ method, path, body string }{
		{"POST", "/api/publish", `{"stream":"x","data":1}`},
		{"GET", "/api/history/x", ""},
		{"GET", "/api/stats", ""},
		{"GET", "/api/presence/x", ""},
		{"POST", "/api/disconnect", `{"user":"alice"}`},
		{"GET", "/api/nope", ""},
	}
	auths := []struct{ name, header string }{
		{"no header", ""},
		{"wrong key", "Bearer wrong-key"},
		{"wrong scheme", "Basic " + testAPIKey},
		{"bare key", testAPIKey},
	}
	for _, e := range endpoints {
		for _, a := range auths {
			t.Run(e.method+" "+e.path+"/"+a.name, func(t *testing.T) {
				status, hdr, body := apiCall(t, h, e.method, e.path, a.header, e.body)
				wantAPIError(t, status, http.StatusUnauthorized, hdr, body)
			})
		}
	}
	t.Run("nothing was published", func(t *testing.T) {
		status, _, body := apiCall(t, h, "GET", "/api/history/x", "Bearer "+testAPIKey, "")
		if status != 200 || !strings.Contains(string(body), `"offset":0`) {
			t.Fatalf("history %d %s, want offset 0", status, body)
		}
	})
}

func TestAPIPublishBadRequest(t *testing.T) {
	h := start(t)
	tests := []struct{ name, body string }{
		{"not json", `{"stream":`},
		{"empty batch", `[]`},
		{"empty stream", `{"stream":"","data":1}`},
		{"bad item in batch", `[{"stream":"ok","data":1},{"stream":"","data":2}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := apiCall(t, h, "POST", "/api/publish", "Bearer "+testAPIKey, tt.body)
			wantAPIError(t, status, http.StatusBadRequest, hdr, body)
		})
	}
	t.Run("a bad batch publishes nothing", func(t *testing.T) {
		status, _, body := apiCall(t, h, "GET", "/api/history/ok", "Bearer "+testAPIKey, "")
		if status != 200 || !strings.Contains(string(body), `"offset":0`) {
			t.Fatalf("history %d %s, want offset 0", status, body)
		}
	})
}

// brokenLog fails every Append to one stream.
type brokenLog struct {
	storage.Log
	bad string
}

func (l brokenLog) Append(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error) {
	if stream == l.bad {
		return storage.Publication{}, storage.Position{}, errors.New("disk on fire")
	}
	return l.Log.Append(ctx, stream, pub, opts)
}

// TestAPIPublish_BatchFailure: a batch that fails in the middle answers
// with the first failure and one result per item, which says what was
// stored; nothing after the failure is stored.
func TestAPIPublish_BatchFailure(t *testing.T) {
	log := storage.NewMemoryLog()
	h := start(t, func(o *harnessOpts) { o.deps.Log = brokenLog{Log: log, bad: "bad"} })
	code, body := apiPublishT(t, h, `[{"stream":"a","data":1},{"stream":"b","data":2},{"stream":"bad","data":3},{"stream":"a","data":4}]`)
	if code != http.StatusInternalServerError {
		t.Fatalf("status %d %s", code, body)
	}
	var resp struct {
		Error   apiErrBody
		Results []struct {
			Offset uint64
			Epoch  string
			Error  *apiErrBody
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Error.Code != "publish_failed" || !strings.HasPrefix(resp.Error.Message, "item 2: ") || len(resp.Results) != 4 {
		t.Fatalf("response %s", body)
	}
	for i, want := range []string{"", "", "publish_failed", "skipped"} {
		r := resp.Results[i]
		switch {
		case want == "" && (r.Error != nil || r.Offset != 1 || r.Epoch == ""):
			t.Errorf("result %d: %+v, want stored", i, r)
		case want != "" && (r.Error == nil || r.Error.Code != want || r.Offset != 0):
			t.Errorf("result %d: %+v, want error %s", i, r, want)
		}
	}
	if res, err := log.Read(t.Context(), "a", storage.Query{}); err != nil || res.Top.Offset != 1 {
		t.Errorf("stream a: top %+v, %v; want only the item before the failure", res.Top, err)
	}
}

type apiErrBody struct {
	Code    string
	Message string
}
