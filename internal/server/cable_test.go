package server_test

// Black-box tests of /cable at the protocol level, with a hand-made client
// (the npm clients run in e2e/cable): one world across /ws and /cable,
// bad input, identity, the broadcast endpoint, and the msgpack dialects.

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/huddle-rt/huddle/internal/frontend/cable/cabletest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

const cableStreamsSecret = "cable-streams-secret-0123456789abcdef"

// dialCable opens /cable with the query and subprotocol given.
func (h *harness) dialCable(query, subprotocol string) *cabletest.Client {
	h.t.Helper()
	url := "ws://" + h.addr + "/cable"
	if query != "" {
		url += "?" + query
	}
	return cabletest.Dial(h.t, url, subprotocol)
}

func pubsub(stream string) string { return cabletest.PubSub(stream) }

// startCable is a node serving /cable with --public's rule, a streams
// secret and the test secret for jid tokens.
func startCable(t *testing.T, opts ...func(*harnessOpts)) *harness {
	return start(t, append([]func(*harnessOpts){func(o *harnessOpts) {
		o.auth.AllowAnonymous = true
		o.rules = append(o.rules, "=sub,whisper,presence,history")
		o.cfg.StreamsSecret = []byte(cableStreamsSecret)
		o.cfg.CableJWTSecret = []byte(testSecret)
	}}, opts...)...)
}

func (h *harness) post(path, key, body string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest("POST", h.HTTP+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCableOneWorld: a publication through /_broadcast or /api/publish
// reaches /ws and /cable subscribers of the stream, each in its encoding;
// whispers and presence cross between the protocols.
func TestCableOneWorld(t *testing.T) {
	h := startCable(t)
	wsc := h.dial("wes")
	subscribe(t, wsc, 1, "room", nil)
	cab := h.dialCable("", wire.SubprotocolExtJSON)
	if w := cab.Expect("welcome"); w["sid"] == "" {
		t.Fatalf("welcome %v has no sid", w)
	}
	cab.Subscribe(pubsub("room"))
	plain := h.dialCable("", wire.SubprotocolJSON)
	plain.Expect("welcome")
	plain.Subscribe(pubsub("room"))

	if code, body := h.post("/_broadcast", testAPIKey, `{"stream":"room","data":"{\"n\":1}"}`); code != http.StatusCreated {
		t.Fatalf("/_broadcast: %d %s", code, body)
	}
	if code, body := h.apiPublish(`{"stream":"room","data":{"n":2}}`); code != http.StatusOK {
		t.Fatalf("/api/publish: %d %s", code, body)
	}
	for n := 1; n <= 2; n++ {
		m := cab.Expect("")
		msg, _ := m["message"].(map[string]any)
		if msg["n"] != float64(n) || m["stream_id"] != "room" || m["offset"] != float64(n) || m["epoch"] == "" || m["identifier"] != pubsub("room") {
			t.Fatalf("ext broadcast %d: %v", n, m)
		}
		p := plain.Expect("")
		if pm, _ := p["message"].(map[string]any); pm["n"] != float64(n) || p["stream_id"] != nil {
			t.Fatalf("plain broadcast %d: %v (no stream_id for Rails' protocol)", n, p)
		}
		pub, err := wsclient.Wait[*protocol.Pub](wsc, wait)
		if err != nil || pub.Offset != uint64(n) {
			t.Fatalf("/ws pub %d: %v %v", n, pub, err)
		}
	}

	// A /cable whisper reaches /ws (ev from its "event"), and back.
	cab.Send(map[string]any{"command": "whisper", "identifier": pubsub("room"), "data": map[string]any{"event": "cursor", "x": 3}})
	w, err := wsclient.Wait[*protocol.Whisper](wsc, wait)
	if err != nil || w.Ev != "cursor" || w.S != "room" {
		t.Fatalf("/ws whisper: %+v %v", w, err)
	}
	if m := plain.Expect(""); m["message"].(map[string]any)["x"] != float64(3) {
		t.Fatalf("plain got %v, want the whisper", m)
	}
	if err := wsc.Send(&protocol.SendWhisper{S: "room", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"y": 4})}); err != nil {
		t.Fatal(err)
	}
	if m := cab.Expect(""); m["message"].(map[string]any)["y"] != float64(4) {
		t.Fatalf("/cable got %v, want the /ws whisper", m)
	}
	plain.Expect("")

	// A /ws presence join is a presence join on /cable, id from the identity.
	if err := wsc.Send(&protocol.Join{ID: 9, S: "room", State: protocol.MustRaw(map[string]string{"name": "Wes"})}); err != nil {
		t.Fatal(err)
	}
	m := cab.Expect("presence")
	pm, _ := m["message"].(map[string]any)
	if pm["type"] != "join" || pm["id"] != "wes" || pm["info"].(map[string]any)["name"] != "Wes" {
		t.Fatalf("presence %v", m)
	}
	plain.Quiet(200 * time.Millisecond) // Rails' protocol has no presence
}

// TestCableBadInput: malformed, unknown and forbidden input gets a
// rejection or nothing, never a crash, and the connection goes on.
func TestCableBadInput(t *testing.T) {
	h := startCable(t, func(o *harnessOpts) {
		o.rules = append(o.rules, "secret:*=;deny=sub")
		o.cfg.MaxMessage = 64 << 10
	})
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	c.SendRaw([]byte(`{"command":`))                          // malformed: ignored
	c.SendRaw([]byte(`{"command":"dance","identifier":"x"}`)) // unknown: ignored
	for _, id := range []string{
		`not json`,
		`{"channel":"ChatChannel","room":"1"}`,                                   // an application channel: no backend
		`{"channel":"$pubsub"}`,                                                  // no stream
		`{"channel":"$pubsub","stream_name":"secret:x"}`,                         // denied by a rule
		`{"channel":"$pubsub","signed_stream_name":"InJvb20i--bad"}`,             // bad signature
		`{"channel":"$pubsub","stream_name":"` + strings.Repeat("s", 300) + `"}`, // invalid stream name
	} {
		c.Send(map[string]any{"command": "subscribe", "identifier": id})
		if m := c.Expect("reject_subscription"); m["identifier"] != id {
			t.Fatalf("rejected %v, want identifier %s", m, id)
		}
	}
	// Commands on a stream never subscribed are ignored.
	c.Send(map[string]any{"command": "whisper", "identifier": pubsub("nowhere"), "data": map[string]any{"a": 1}})
	c.Send(map[string]any{"command": "join", "identifier": pubsub("nowhere"), "presence": map[string]any{"id": "x"}})
	c.Quiet(200 * time.Millisecond)
	// The connection still works, and a signed name with the right secret
	// is served.
	signed := `{"channel":"Turbo::StreamsChannel","signed_stream_name":"` + wire.SignStream([]byte(cableStreamsSecret), "turbo:1") + `"}`
	c.Subscribe(signed)
	h.post("/_broadcast", testAPIKey, `{"stream":"turbo:1","data":"\"<turbo-stream></turbo-stream>\""}`)
	if m := c.Expect(""); m["message"] != "<turbo-stream></turbo-stream>" || m["identifier"] != signed {
		t.Fatalf("turbo broadcast %v", m)
	}
	// An oversize message closes the connection.
	c.SendOversize([]byte(`{"command":"message","data":"` + strings.Repeat("x", 70<<10) + `"}`))
	select {
	case <-c.Closed():
	case <-time.After(wait):
		t.Fatal("an oversize message did not close the connection")
	}
}

// TestCableSignedStreamWithoutSecret: with no streams secret configured a
// signed stream is rejected (anycable-go panics there).
func TestCableSignedStreamWithoutSecret(t *testing.T) {
	h := startCable(t, func(o *harnessOpts) { o.cfg.StreamsSecret = nil })
	c := h.dialCable("", wire.SubprotocolJSON)
	c.Expect("welcome")
	id := `{"channel":"$pubsub","signed_stream_name":"` + wire.SignStream([]byte("whatever"), "x") + `"}`
	c.Send(map[string]any{"command": "subscribe", "identifier": id})
	c.Expect("reject_subscription")
	c.Subscribe(pubsub("still-works"))
}

// TestCableIdentity: without --public or a token the connection is
// refused as unauthorized; an expired Huddle token as token_expired; a
// valid token's grants decide which streams it may read.
func TestCableIdentity(t *testing.T) {
	h := start(t) // no anonymous clients
	c := h.dialCable("", wire.SubprotocolExtJSON)
	if m := c.Expect("disconnect"); m["reason"] != "unauthorized" || m["reconnect"] != false {
		t.Fatalf("anonymous: %v", m)
	}
	expired := tokenWith(t, "u", time.Now().Add(-time.Minute), allStreams)
	c = h.dialCable("token="+expired, wire.SubprotocolExtJSON)
	if m := c.Expect("disconnect"); m["reason"] != "token_expired" {
		t.Fatalf("expired token: %v", m)
	}
	tok := tokenWith(t, "u", time.Now().Add(time.Hour), map[string][]string{"mine:*": {"sub"}})
	c = h.dialCable("token="+tok, wire.SubprotocolJSON)
	c.Expect("welcome")
	c.Subscribe(pubsub("mine:1"))
	c.Send(map[string]any{"command": "subscribe", "identifier": pubsub("theirs:1")})
	c.Expect("reject_subscription")
}

// TestCableBroadcastEndpoint: AnyCable's body forms, its disconnect
// command, and the key.
func TestCableBroadcastEndpoint(t *testing.T) {
	h := startCable(t)
	c := h.dialCable("", wire.SubprotocolExtJSON)
	c.Expect("welcome")
	c.Subscribe(pubsub("b"))
	if code, _ := h.post("/_broadcast", "", `{"stream":"b","data":"1"}`); code != http.StatusUnauthorized {
		t.Fatalf("no key: %d, want 401", code)
	}
	if code, _ := h.post("/_broadcast", "wrong", `{"stream":"b","data":"1"}`); code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d, want 401", code)
	}
	if code, body := h.post("/_broadcast", testAPIKey, `{"stream":"b","data":{"not":"a string"}}`); code != http.StatusBadRequest {
		t.Fatalf("data not a string: %d %s, want 400", code, body)
	}
	if code, body := h.post("/_broadcast", testAPIKey, `[{"stream":"b","data":"1"},{"stream":"b","data":"plain text"}]`); code != http.StatusCreated {
		t.Fatalf("batch: %d %s", code, body)
	}
	if m := c.Expect(""); m["message"] != float64(1) {
		t.Fatalf("first %v", m)
	}
	if m := c.Expect(""); m["message"] != "plain text" {
		t.Fatalf("second %v (text that is not JSON arrives as a string)", m)
	}

	// The disconnect command ends the connections of an identity: a jid
	// client's identifiers.
	jid := signJID(t, `{"user_id":"42"}`, time.Now().Add(time.Hour))
	u := h.dialCable("jid="+jid, wire.SubprotocolExtJSON)
	u.Expect("welcome")
	if code, body := h.post("/_broadcast", testAPIKey, `{"command":"disconnect","payload":{"identifier":"{\"user_id\":\"42\"}"}}`); code != http.StatusCreated {
		t.Fatalf("disconnect command: %d %s", code, body)
	}
	if m := u.Expect("disconnect"); m["reason"] != "remote" {
		t.Fatalf("disconnect %v", m)
	}
	c.Quiet(100 * time.Millisecond) // the others stay
}

func signJID(t *testing.T, identifiers string, exp time.Time) string {
	t.Helper()
	tok, err := jwtHS256(testSecret, map[string]any{"ext": identifiers, "exp": exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestCableMsgpack: the msgpack dialects subscribe, receive broadcasts
// (data converted to msgpack) and whispers in binary frames.
func TestCableMsgpack(t *testing.T) {
	h := startCable(t)
	for _, sp := range []string{wire.SubprotocolMsgpack, wire.SubprotocolExtMsgpack} {
		c := h.dialCable("", sp)
		c.Expect("welcome")
		stream := "mp-" + sp
		c.Subscribe(pubsub(stream))
		h.post("/_broadcast", testAPIKey, `{"stream":"`+stream+`","data":"{\"big\":12345678901,\"s\":\"x\"}"}`)
		m := c.Expect("")
		msg, _ := m["message"].(map[string]any)
		if msg["s"] != "x" || toInt(msg["big"]) != 12345678901 {
			t.Fatalf("%s: %v", sp, m)
		}
		if _, ext := m["offset"]; ext != strings.Contains(sp, "ext") {
			t.Fatalf("%s: offset present %v", sp, ext)
		}
	}
}

func toInt(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case uint64:
		return int64(n)
	case int32:
		return int64(n)
	case int8:
		return int64(n)
	case uint32:
		return int64(n)
	case float64:
		return int64(n)
	}
	return -1
}

// jwtHS256 signs claims with secret.
func jwtHS256(secret string, claims map[string]any) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims)).SignedString([]byte(secret))
}
