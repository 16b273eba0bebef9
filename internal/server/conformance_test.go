package server_test

// Black-box conformance tests against /work/shared/PROTOCOL.md: exact field
// names and presence on the wire (raw frames, both codecs), ordering of
// replies to a multi-message frame, and the HTTP API shapes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/google/uuid"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/protocol"
)

// ---- raw client ----

type cfConn struct {
	t      *testing.T
	c      net.Conn
	r      io.Reader
	json   bool
	proto  string
	queue  []map[string]any
	frames [][]byte // raw payloads of data frames received
	closed int      // close code once a close frame arrived
}

var cfSeq atomic.Int64

func cfStream(prefix string) string {
	return fmt.Sprintf("cf-%s-%d-%d", prefix, time.Now().UnixNano()%1e9, cfSeq.Add(1))
}

// cfDial opens a raw WebSocket offering protos (none when empty).
func cfDial(t *testing.T, h *harness, protos ...string) *cfConn {
	t.Helper()
	d := ws.Dialer{Protocols: protos, Timeout: wait}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, br, hs, err := d.Dial(ctx, h.URL)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &cfConn{t: t, c: conn, r: conn, proto: hs.Protocol}
	if br != nil {
		c.r = br
	}
	c.json = hs.Protocol != protocol.SubprotocolMsgpack
	return c
}

func cfCodecs() []string { return []string{protocol.SubprotocolJSON, protocol.SubprotocolMsgpack} }

func cfCodecName(p string) string {
	if p == protocol.SubprotocolJSON {
		return "json"
	}
	return "msgpack"
}

// send writes msgs in one data frame.
func (c *cfConn) send(msgs ...map[string]any) {
	c.t.Helper()
	var buf bytes.Buffer
	for i, m := range msgs {
		if c.json {
			if i > 0 {
				buf.WriteByte('\n')
			}
			b, err := json.Marshal(m)
			if err != nil {
				c.t.Fatal(err)
			}
			buf.Write(b)
		} else {
			b, err := msgpack.Marshal(m)
			if err != nil {
				c.t.Fatal(err)
			}
			buf.Write(b)
		}
	}
	c.sendBytes(buf.Bytes())
}

func (c *cfConn) sendBytes(b []byte) {
	c.t.Helper()
	op := ws.OpBinary
	if c.json {
		op = ws.OpText
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(wait))
	if err := wsutil.WriteClientMessage(c.c, op, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readFrame reads the next data frame and decodes its messages.
func (c *cfConn) readFrame(timeout time.Duration) ([]map[string]any, error) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(timeout))
	for {
		f, err := ws.ReadFrame(c.r)
		if err != nil {
			return nil, err
		}
		if f.Header.Masked {
			ws.Cipher(f.Payload, f.Header.Mask, 0)
		}
		switch f.Header.OpCode {
		case ws.OpPing:
			_ = wsutil.WriteClientMessage(c.c, ws.OpPong, f.Payload)
			continue
		case ws.OpPong:
			continue
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(f.Payload)
			c.closed = int(code)
			return nil, io.EOF
		}
		payload := f.Payload
		for !f.Header.Fin {
			f, err = ws.ReadFrame(c.r)
			if err != nil {
				return nil, err
			}
			payload = append(payload, f.Payload...)
		}
		if c.json && f.Header.OpCode != ws.OpText && f.Header.OpCode != ws.OpContinuation {
			c.t.Errorf("json connection got opcode %v, want text", f.Header.OpCode)
		}
		if !c.json && f.Header.OpCode != ws.OpBinary && f.Header.OpCode != ws.OpContinuation {
			c.t.Errorf("msgpack connection got opcode %v, want binary", f.Header.OpCode)
		}
		c.frames = append(c.frames, payload)
		return c.decode(payload), nil
	}
}

func (c *cfConn) decode(p []byte) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	if c.json {
		// The contract: JSON objects separated by "\n". Each line must be
		// exactly one object.
		for _, line := range bytes.Split(p, []byte("\n")) {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			d := json.NewDecoder(bytes.NewReader(line))
			d.UseNumber()
			var m map[string]any
			if err := d.Decode(&m); err != nil {
				c.t.Fatalf("server JSON line %q: %v (frame %q)", line, err, p)
			}
			if d.More() {
				c.t.Errorf("server JSON line holds more than one object (not separated by \\n): %q", line)
			}
			out = append(out, m)
		}
		return out
	}
	d := msgpack.NewDecoder(bytes.NewReader(p))
	for {
		var m map[string]any
		err := d.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			c.t.Fatalf("server msgpack frame %x: %v", p, err)
		}
		out = append(out, m)
	}
}

// next returns the next message other than a server ping.
func (c *cfConn) next() map[string]any {
	c.t.Helper()
	m, err := c.tryNext(wait)
	if err != nil {
		c.t.Fatalf("read: %v (close code %d)", err, c.closed)
	}
	return m
}

func (c *cfConn) tryNext(timeout time.Duration) (map[string]any, error) {
	c.t.Helper()
	for {
		for len(c.queue) > 0 {
			m := c.queue[0]
			c.queue = c.queue[1:]
			if m["t"] == "ping" {
				continue
			}
			return m, nil
		}
		ms, err := c.readFrame(timeout)
		if err != nil {
			return nil, err
		}
		c.queue = append(c.queue, ms...)
	}
}

// expect reads the next message and fails unless its t is typ.
func (c *cfConn) expect(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["t"] != typ {
		c.t.Fatalf("got %v, want t=%q", m, typ)
	}
	return m
}

// alive sends ping and wants pong as the very next message.
func (c *cfConn) alive() {
	c.t.Helper()
	c.send(map[string]any{"t": "ping"})
	c.expect("pong")
}

// connect sends connect and returns connected.
func (c *cfConn) connect(tok string) map[string]any {
	c.t.Helper()
	c.send(map[string]any{"t": "connect", "id": 1, "token": tok, "ua": "conformance/1"})
	return c.expect("connected")
}

func cfUser(t *testing.T, h *harness, proto, user string) (*cfConn, map[string]any) {
	t.Helper()
	c := cfDial(t, h, proto)
	return c, c.connect(token(t, user))
}

// ---- field helpers ----

func cfKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// checkKeys fails when m lacks a required key or has a key outside
// required+optional.
func checkKeys(t *testing.T, what string, m map[string]any, required, optional []string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, k := range required {
		allowed[k] = true
		if _, ok := m[k]; !ok {
			t.Errorf("%s: missing key %q (got keys %v: %v)", what, k, cfKeys(m), m)
		}
	}
	for _, k := range optional {
		allowed[k] = true
	}
	for k := range m {
		if !allowed[k] {
			t.Errorf("%s: unexpected key %q (got keys %v: %v)", what, k, cfKeys(m), m)
		}
	}
}

func cfInt(t *testing.T, what string, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			t.Fatalf("%s: %v is not an integer", what, v)
		}
		return n
	case float64:
		return int64(x)
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(rv.Uint())
	}
	t.Fatalf("%s: %#v is not an integer", what, v)
	return 0
}

func cfMap(t *testing.T, what string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %#v is not a map", what, v)
	}
	return m
}

func cfList(t *testing.T, what string, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: %#v is not a list", what, v)
	}
	return l
}

// ---- WebSocket message shapes ----

func TestConformanceConnectedFields(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			c := cfDial(t, h, p)
			if c.proto != p {
				t.Fatalf("negotiated %q, want %q", c.proto, p)
			}
			cm := c.connect(tokenWith(t, "alice", exp, allStreams))
			checkKeys(t, "connected", cm, []string{"t", "id", "client", "user", "ping", "exp"}, []string{"node"})
			if cfInt(t, "connected.id", cm["id"]) != 1 {
				t.Errorf("connected.id = %v, want 1", cm["id"])
			}
			if s, _ := cm["client"].(string); uuid.Validate(s) != nil {
				t.Errorf("connected.client %v is not a uuid", cm["client"])
			}
			if cm["user"] != "alice" {
				t.Errorf("connected.user = %v", cm["user"])
			}
			if cfInt(t, "connected.ping", cm["ping"]) <= 0 {
				t.Errorf("connected.ping = %v", cm["ping"])
			}
			if got := cfInt(t, "connected.exp", cm["exp"]); got != exp.Unix() {
				t.Errorf("connected.exp = %d, want %d", got, exp.Unix())
			}
		})
	}
}

func TestConformanceNoSubprotocolIsJSONText(t *testing.T) {
	h := start(t)
	c := cfDial(t, h)
	if c.proto != "" && c.proto != protocol.SubprotocolJSON {
		t.Fatalf("negotiated %q", c.proto)
	}
	c.json = true
	c.connect(token(t, "alice"))
	c.alive()
}

func TestConformancePubAckAndPubFields(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("pub")
			a, acm := cfUser(t, h, p, "alice")
			b, _ := cfUser(t, h, p, "bob")
			b.send(map[string]any{"t": "sub", "id": 5, "s": s})
			sub := b.expect("subscribed")
			checkKeys(t, "subscribed (no recover)", sub, []string{"t", "id", "s", "epoch", "offset"}, []string{"lv"})
			if _, ok := sub["recovered"]; ok {
				t.Errorf("subscribed without recover carries recovered: %v", sub)
			}
			data := map[string]any{"n": 1, "f": 1.5, "x": []any{"a", nil, true}, "z": nil}
			a.send(map[string]any{"t": "pub", "id": 9, "s": s, "data": data})
			ack := a.expect("ack")
			checkKeys(t, "pub ack", ack, []string{"t", "id", "s", "offset", "epoch"}, nil)
			if cfInt(t, "ack.id", ack["id"]) != 9 || ack["s"] != s {
				t.Errorf("ack %v", ack)
			}
			if cfInt(t, "ack.offset", ack["offset"]) != cfInt(t, "sub.offset", sub["offset"])+1 || ack["epoch"] != sub["epoch"] {
				t.Errorf("ack %v does not follow subscribed %v", ack, sub)
			}
			pub := b.expect("pub")
			checkKeys(t, "pub", pub, []string{"t", "s", "offset", "epoch", "data", "from", "ts"}, nil)
			from := cfMap(t, "pub.from", pub["from"])
			checkKeys(t, "pub.from", from, []string{"user", "client"}, nil)
			if from["user"] != "alice" || from["client"] != acm["client"] {
				t.Errorf("pub.from %v, want alice/%v", from, acm["client"])
			}
			ts := cfInt(t, "pub.ts", pub["ts"])
			if d := time.Now().UnixMilli() - ts; d < -60000 || d > 60000 {
				t.Errorf("pub.ts %d is not unix ms now", ts)
			}
			got := cfMap(t, "pub.data", pub["data"])
			if cfInt(t, "data.n", got["n"]) != 1 || got["z"] != nil || len(cfList(t, "data.x", got["x"])) != 3 {
				t.Errorf("pub.data %v, want %v", got, data)
			}
			if _, ok := got["z"]; !ok {
				t.Errorf("pub.data lost null key z: %v", got)
			}
			if p == protocol.SubprotocolJSON {
				if _, isNum := got["n"].(json.Number); !isNum || got["n"].(json.Number).String() != "1" {
					t.Errorf("json integer 1 came back as %v", got["n"])
				}
			}
		})
	}
}

func TestConformanceAPIPubHasNoFrom(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("apipub")
			b, _ := cfUser(t, h, p, "bob")
			b.send(map[string]any{"t": "sub", "id": 2, "s": s})
			b.expect("subscribed")
			if code, body := apiPublishT(t, h, fmt.Sprintf(`{"stream":%q,"data":{"k":"v"}}`, s)); code != 200 {
				t.Fatalf("publish: %d %s", code, body)
			}
			pub := b.expect("pub")
			checkKeys(t, "api pub", pub, []string{"t", "s", "offset", "epoch", "data", "ts"}, nil)
		})
	}
}

func TestConformanceRecoveredAlwaysPresent(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("rec")
			c, _ := cfUser(t, h, p, "alice")
			// brand new stream, client without a position yet
			c.send(map[string]any{"t": "sub", "id": 2, "s": s, "recover": map[string]any{"epoch": "", "offset": 0}})
			sub := c.expect("subscribed")
			if _, ok := sub["recovered"]; !ok {
				t.Errorf("recover{epoch:\"\",offset:0} on a new stream: no recovered in %v", sub)
			}
			apiPublishT(t, h, fmt.Sprintf(`[{"stream":%q,"data":1},{"stream":%q,"data":2}]`, s, s))
			c.expect("pub")
			c.expect("pub")
			c.send(map[string]any{"t": "unsub", "id": 3, "s": s})
			c.expect("unsubscribed")
			epoch := sub["epoch"]
			// matching epoch, at the top: recovered true, nothing missed
			c.send(map[string]any{"t": "sub", "id": 4, "s": s, "recover": map[string]any{"epoch": epoch, "offset": 2}})
			sub = c.expect("subscribed")
			if sub["recovered"] != true {
				t.Errorf("recover at top: %v, want recovered:true", sub)
			}
			if ps, ok := sub["pubs"]; ok && len(cfList(t, "pubs", ps)) != 0 {
				t.Errorf("recover at top returned pubs %v", ps)
			}
			c.send(map[string]any{"t": "unsub", "id": 5, "s": s})
			c.expect("unsubscribed")
			// one missed
			c.send(map[string]any{"t": "sub", "id": 6, "s": s, "recover": map[string]any{"epoch": epoch, "offset": 1}})
			sub = c.expect("subscribed")
			checkKeys(t, "recovered subscribed", sub, []string{"t", "id", "s", "epoch", "offset", "recovered", "pubs"}, []string{"lv"})
			if sub["recovered"] != true || len(cfList(t, "pubs", sub["pubs"])) != 1 {
				t.Errorf("recover from 1: %v", sub)
			} else {
				pp := cfMap(t, "pubs[0]", cfList(t, "pubs", sub["pubs"])[0])
				checkKeys(t, "recovered pub", pp, []string{"s", "offset", "epoch", "data", "ts"}, []string{"t"})
			}
			c.send(map[string]any{"t": "unsub", "id": 7, "s": s})
			c.expect("unsubscribed")
			// wrong epoch
			c.send(map[string]any{"t": "sub", "id": 8, "s": s, "recover": map[string]any{"epoch": "nope", "offset": 1}})
			sub = c.expect("subscribed")
			if sub["recovered"] != false {
				t.Errorf("wrong epoch: %v, want recovered:false", sub)
			}
			if _, ok := sub["pubs"]; ok {
				t.Errorf("wrong epoch: pubs present %v", sub)
			}
		})
	}
}

func TestConformanceSimpleReplies(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("simple")
			c, _ := cfUser(t, h, p, "alice")
			c.send(map[string]any{"t": "sub", "id": 2, "s": s})
			c.expect("subscribed")

			c.send(map[string]any{"t": "join", "id": 3, "s": s, "state": map[string]any{"a": 1}})
			checkKeys(t, "join ack", c.expect("ack"), []string{"t", "id"}, nil)

			c.send(map[string]any{"t": "who", "id": 4, "s": s})
			who := c.expect("who")
			checkKeys(t, "who", who, []string{"t", "id", "s", "members"}, nil)

			c.send(map[string]any{"t": "leave", "id": 5, "s": s})
			checkKeys(t, "leave ack", c.expect("ack"), []string{"t", "id"}, nil)

			c.send(map[string]any{"t": "unsub", "id": 6, "s": s})
			un := c.expect("unsubscribed")
			checkKeys(t, "unsubscribed", un, []string{"t", "id"}, []string{"s"})
			if cfInt(t, "unsubscribed.id", un["id"]) != 6 {
				t.Errorf("unsubscribed %v", un)
			}

			c.send(map[string]any{"t": "ping"})
			checkKeys(t, "pong", c.expect("pong"), []string{"t"}, nil)

			exp := time.Now().Add(2 * time.Hour).Truncate(time.Second)
			c.send(map[string]any{"t": "refresh", "id": 7, "token": tokenWith(t, "alice", exp, allStreams)})
			ref := c.expect("refreshed")
			checkKeys(t, "refreshed", ref, []string{"t", "id", "exp"}, nil)
			if cfInt(t, "refreshed.exp", ref["exp"]) != exp.Unix() {
				t.Errorf("refreshed.exp %v, want %d", ref["exp"], exp.Unix())
			}
		})
	}
}

func TestConformanceWhoEmptyHasMembers(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c, _ := cfUser(t, h, p, "alice")
			s := cfStream("whoempty")
			c.send(map[string]any{"t": "who", "id": 4, "s": s})
			who := c.expect("who")
			checkKeys(t, "who (empty)", who, []string{"t", "id", "s", "members"}, nil)
			if v, ok := who["members"]; ok && v != nil {
				if l := cfList(t, "members", v); len(l) != 0 {
					t.Errorf("members %v", l)
				}
			} else if ok {
				t.Errorf("who.members is null, want []")
			}
		})
	}
}

func TestConformanceHistoryFields(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c, _ := cfUser(t, h, p, "alice")
			empty := cfStream("histempty")
			c.send(map[string]any{"t": "history", "id": 3, "s": empty})
			hi := c.expect("history")
			checkKeys(t, "history (empty)", hi, []string{"t", "id", "s", "epoch", "offset", "pubs"}, []string{"more"})
			if v, ok := hi["pubs"]; ok {
				if v == nil {
					t.Errorf("history.pubs is null, want []")
				} else if l := cfList(t, "pubs", v); len(l) != 0 {
					t.Errorf("pubs %v", l)
				}
			}

			s := cfStream("hist")
			apiPublishT(t, h, fmt.Sprintf(`[{"stream":%q,"data":1},{"stream":%q,"data":2},{"stream":%q,"data":3}]`, s, s, s))
			c.send(map[string]any{"t": "history", "id": 4, "s": s, "limit": 2})
			hi = c.expect("history")
			checkKeys(t, "history", hi, []string{"t", "id", "s", "epoch", "offset", "pubs"}, []string{"more"})
			pubs := cfList(t, "pubs", hi["pubs"])
			if len(pubs) != 2 || hi["more"] != true || cfInt(t, "offset", hi["offset"]) != 3 {
				t.Errorf("history limit 2 of 3: %v", hi)
			}
			for _, x := range pubs {
				checkKeys(t, "history pub", cfMap(t, "pub", x), []string{"s", "offset", "epoch", "data", "ts"}, []string{"t"})
			}
			if len(pubs) == 2 && (cfInt(t, "o", cfMap(t, "p", pubs[0])["offset"]) != 1 || cfInt(t, "o", cfMap(t, "p", pubs[1])["offset"]) != 2) {
				t.Errorf("history ascending: %v", pubs)
			}
			c.send(map[string]any{"t": "history", "id": 5, "s": s, "reverse": true, "limit": 2})
			hi = c.expect("history")
			pubs = cfList(t, "pubs", hi["pubs"])
			if len(pubs) != 2 || cfInt(t, "o", cfMap(t, "p", pubs[0])["offset"]) != 3 || cfInt(t, "o", cfMap(t, "p", pubs[1])["offset"]) != 2 {
				t.Errorf("history reverse limit 2: %v", hi)
			}
			c.send(map[string]any{"t": "history", "id": 6, "s": s, "since": map[string]any{"epoch": hi["epoch"], "offset": 1}})
			hi = c.expect("history")
			pubs = cfList(t, "pubs", hi["pubs"])
			if len(pubs) != 2 || cfInt(t, "o", cfMap(t, "p", pubs[0])["offset"]) != 2 {
				t.Errorf("history since 1: %v", hi)
			}
			if m, ok := hi["more"]; ok && m != false {
				t.Errorf("history since 1: more=%v", m)
			}
		})
	}
}

func TestConformanceErrorEchoesID(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c, _ := cfUser(t, h, p, "alice")
			c.send(map[string]any{"t": "bogus", "id": 42, "s": "x"})
			e := c.expect("error")
			checkKeys(t, "error (unknown t)", e, []string{"t", "id", "code", "reason"}, []string{"s", "retry"})
			if cfInt(t, "error.id", e["id"]) != 42 || cfInt(t, "error.code", e["code"]) != 4004 {
				t.Errorf("error %v, want id 42 code 4004", e)
			}
			if r, ok := e["retry"]; ok && r != false {
				t.Errorf("4004 retry=%v", r)
			}
			c.alive()
		})
	}
}

func TestConformanceDeniedOpsError(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c := cfDial(t, h, p)
			c.connect(tokenWith(t, "carol", time.Now().Add(time.Hour), map[string][]string{"open:*": {"sub"}}))
			s := cfStream("denied")
			for i, op := range []map[string]any{
				{"t": "sub", "id": 11, "s": s},
				{"t": "pub", "id": 12, "s": s, "data": 1},
				{"t": "history", "id": 13, "s": s},
				{"t": "join", "id": 14, "s": s, "state": map[string]any{}},
			} {
				c.send(op)
				e := c.expect("error")
				checkKeys(t, fmt.Sprintf("error for denied %s", op["t"]), e, []string{"t", "id", "code", "reason"}, []string{"s", "retry"})
				if cfInt(t, "id", e["id"]) != int64(11+i) || cfInt(t, "code", e["code"]) != 4003 {
					t.Errorf("denied %s: %v, want id %d code 4003", op["t"], e, 11+i)
				}
			}
			c.send(map[string]any{"t": "whisper", "s": s, "ev": "cur", "data": 1})
			e := c.expect("error")
			if _, ok := e["id"]; ok {
				t.Errorf("whisper error carries id: %v", e)
			}
			if cfInt(t, "code", e["code"]) != 4003 {
				t.Errorf("denied whisper: %v", e)
			}
			c.alive()
		})
	}
}

// The contract: error has `s`? — "where relevant". A denied op on a stream
// is the plainest case where it is relevant.
func TestConformanceErrorCarriesStream(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c := cfDial(t, h, p)
			c.connect(tokenWith(t, "carol", time.Now().Add(time.Hour), map[string][]string{"open:*": {"sub"}}))
			s := cfStream("denied")
			c.send(map[string]any{"t": "sub", "id": 11, "s": s})
			if e := c.expect("error"); e["s"] != s {
				t.Errorf("denied sub error without s=%q: %v", s, e)
			}
			c.send(map[string]any{"t": "whisper", "s": s, "ev": "cur", "data": 1})
			if e := c.expect("error"); e["s"] != s {
				t.Errorf("denied whisper error without s=%q: %v", s, e)
			}
		})
	}
}

func TestConformanceMultiMessageFrameInOrder(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("multi")
			c, _ := cfUser(t, h, p, "alice")
			c.send(
				map[string]any{"t": "ping"},
				map[string]any{"t": "sub", "id": 2, "s": s, "zz_unknown": map[string]any{"q": 1}},
				map[string]any{"t": "join", "id": 3, "s": s, "state": map[string]any{"a": 1}},
				map[string]any{"t": "who", "id": 4, "s": s},
				map[string]any{"t": "history", "id": 5, "s": s},
				map[string]any{"t": "leave", "s": s},
				map[string]any{"t": "unsub", "s": s},
				map[string]any{"t": "sub", "id": 6, "s": s},
				map[string]any{"t": "unsub", "id": 7, "s": s},
				map[string]any{"t": "ping"},
			)
			want := []struct {
				t  string
				id int64
			}{{"pong", 0}, {"subscribed", 2}, {"ack", 3}, {"who", 4}, {"history", 5}, {"subscribed", 6}, {"unsubscribed", 7}, {"pong", 0}}
			for i, w := range want {
				m := c.next()
				if m["t"] != w.t || (w.id != 0 && cfInt(t, "id", m["id"]) != w.id) {
					t.Fatalf("reply %d: %v, want t=%s id=%d", i, m, w.t, w.id)
				}
			}
		})
	}
}

func TestConformanceJSONWhitespaceSeparators(t *testing.T) {
	h := start(t)
	c, _ := cfUser(t, h, protocol.SubprotocolJSON, "alice")
	c.sendBytes([]byte("{\"t\":\"ping\"}\n{\"t\":\"ping\"}\n"))
	c.expect("pong")
	c.expect("pong")
	c.sendBytes([]byte("{\"t\":\"ping\"}\r\n{\"t\":\"ping\"}"))
	c.expect("pong")
	c.expect("pong")
	c.alive()
}

// Server output: when it batches, JSON objects are separated by "\n".
func TestConformanceServerJSONBatching(t *testing.T) {
	h := start(t)
	c, _ := cfUser(t, h, protocol.SubprotocolJSON, "alice")
	msgs := make([]map[string]any, 50)
	for i := range msgs {
		msgs[i] = map[string]any{"t": "ping"}
	}
	c.send(msgs...)
	for range msgs {
		c.expect("pong")
	}
	multi := 0
	for _, f := range c.frames {
		if n := bytes.Count(bytes.TrimRight(f, "\n"), []byte("\n")); n > 0 {
			multi++
		}
		if bytes.Contains(f, []byte("}{")) {
			t.Errorf("frame has objects not separated by \\n: %q", f)
		}
	}
	t.Logf("%d frames, %d with several messages", len(c.frames), multi)
}

func TestConformanceUnsubLeaveNoIDNoReply(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("noid")
			c, _ := cfUser(t, h, p, "alice")
			c.send(map[string]any{"t": "sub", "id": 2, "s": s})
			c.expect("subscribed")
			c.send(map[string]any{"t": "join", "id": 3, "s": s, "state": map[string]any{}})
			c.expect("ack")
			c.send(map[string]any{"t": "leave", "s": s})
			c.alive()
			c.send(map[string]any{"t": "unsub", "s": s})
			c.alive()
			c.send(map[string]any{"t": "update", "s": s, "state": map[string]any{"x": 1}}) // not joined: error 4004 allowed
			c.send(map[string]any{"t": "ping"})
			m := c.next()
			if m["t"] == "error" {
				m = c.next()
			}
			if m["t"] != "pong" {
				t.Fatalf("got %v, want pong", m)
			}
		})
	}
}

func TestConformancePresenceShapes(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("pres")
			obs, _ := cfUser(t, h, p, "obs")
			obs.send(map[string]any{"t": "sub", "id": 2, "s": s, "presence": true})
			sub := obs.expect("subscribed")
			if _, ok := sub["members"]; ok {
				// decision 8: omitted when nobody is there
				if l := cfList(t, "members", sub["members"]); len(l) != 0 {
					t.Errorf("members %v", l)
				}
			}
			a, acm := cfUser(t, h, p, "alice")
			// sub with join map joins at once with that state
			a.send(map[string]any{"t": "sub", "id": 2, "s": s, "join": map[string]any{"cur": 1, "sel": "x"}})
			a.expect("subscribed")
			pr := obs.expect("presence")
			checkKeys(t, "presence (join)", pr, []string{"t", "s", "joins"}, nil)
			joins := cfList(t, "joins", pr["joins"])
			if len(joins) != 1 {
				t.Fatalf("joins %v", joins)
			}
			m := cfMap(t, "member", joins[0])
			checkKeys(t, "member", m, []string{"user", "client", "info", "state"}, nil)
			if m["user"] != "alice" || m["client"] != acm["client"] {
				t.Errorf("member %v", m)
			}
			if st := cfMap(t, "state", m["state"]); st["sel"] != "x" || cfInt(t, "cur", st["cur"]) != 1 {
				t.Errorf("member state %v, want {cur:1, sel:x}", st)
			}
			if info := cfMap(t, "info", m["info"]); info["name"] != "ALICE" {
				t.Errorf("member info %v", info)
			}
			a.send(map[string]any{"t": "update", "s": s, "state": map[string]any{"sel": nil, "cur": 2}})
			pr = obs.expect("presence")
			checkKeys(t, "presence (update)", pr, []string{"t", "s", "updates"}, nil)
			ups := cfList(t, "updates", pr["updates"])
			if len(ups) != 1 {
				t.Fatalf("updates %v", ups)
			}
			u := cfMap(t, "update", ups[0])
			checkKeys(t, "update entry", u, []string{"user", "client", "state"}, nil)
			st := cfMap(t, "update.state", u["state"])
			if v, ok := st["sel"]; !ok || v != nil {
				t.Errorf("update patch %v lacks sel:null", st)
			}
			if cfInt(t, "cur", st["cur"]) != 2 {
				t.Errorf("update patch %v", st)
			}
			obs.send(map[string]any{"t": "who", "id": 9, "s": s})
			who := obs.expect("who")
			ms := cfList(t, "members", who["members"])
			if len(ms) != 1 || !reflect.DeepEqual(cfKeys(cfMap(t, "st", cfMap(t, "m", ms[0])["state"])), []string{"cur"}) {
				t.Errorf("who after patch: %v", who)
			}
			a.send(map[string]any{"t": "leave", "s": s})
			pr = obs.expect("presence")
			checkKeys(t, "presence (leave)", pr, []string{"t", "s", "leaves"}, nil)
			l := cfList(t, "leaves", pr["leaves"])
			if len(l) != 1 {
				t.Fatalf("leaves %v", l)
			}
			checkKeys(t, "leave entry", cfMap(t, "leave", l[0]), []string{"user", "client"}, nil)
		})
	}
}

func TestConformanceWhisperShapes(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			s := cfStream("wh")
			a, acm := cfUser(t, h, p, "alice")
			b, _ := cfUser(t, h, p, "bob")
			a.send(map[string]any{"t": "sub", "id": 2, "s": s})
			a.expect("subscribed")
			b.send(map[string]any{"t": "sub", "id": 2, "s": s})
			b.expect("subscribed")
			a.send(map[string]any{"t": "whisper", "s": s, "ev": "cursor", "data": map[string]any{"x": 1}})
			w := b.expect("whisper")
			checkKeys(t, "whisper", w, []string{"t", "s", "ev", "data", "from"}, nil)
			f := cfMap(t, "from", w["from"])
			checkKeys(t, "whisper.from", f, []string{"user", "client"}, nil)
			if f["user"] != "alice" || f["client"] != acm["client"] {
				t.Errorf("from %v", f)
			}
			a.alive() // not echoed
			c, _ := cfUser(t, h, p, "carl")
			c.send(map[string]any{"t": "sub", "id": 2, "s": s})
			sub := c.expect("subscribed")
			lv := cfList(t, "lv", sub["lv"])
			if len(lv) != 1 {
				t.Fatalf("lv %v", lv)
			}
			checkKeys(t, "lv entry", cfMap(t, "lv[0]", lv[0]), []string{"s", "ev", "data", "from"}, []string{"t"})
		})
	}
}

// ---- HTTP API ----

func cfAPI(t *testing.T, h *harness, method, path, body string, keyed bool) (int, http.Header, map[string]any) {
	t.Helper()
	authz := ""
	if keyed {
		authz = "Bearer " + testAPIKey
	}
	status, hdr, b := apiCall(t, h, method, path, authz, body)
	var m map[string]any
	if len(b) > 0 {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Errorf("%s %s: body %q is not a JSON object: %v", method, path, b, err)
		}
	}
	return status, hdr, m
}

func cfAPIError(t *testing.T, what string, status, want int, hdr http.Header, m map[string]any) {
	t.Helper()
	if status != want {
		t.Errorf("%s: status %d, want %d (%v)", what, status, want, m)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	checkKeys(t, what, m, []string{"error"}, nil)
	if e, ok := m["error"].(map[string]any); ok {
		checkKeys(t, what+".error", e, []string{"code", "message"}, nil)
		if c, _ := e["code"].(string); c == "" {
			t.Errorf("%s: error.code %v is not a non-empty string", what, e["code"])
		}
		if c, _ := e["message"].(string); c == "" {
			t.Errorf("%s: error.message %v is not a non-empty string", what, e["message"])
		}
	}
}

func TestConformanceAPIAuth401(t *testing.T) {
	h := start(t)
	for _, ep := range []struct{ method, path, body string }{
		{"POST", "/api/publish", `{"stream":"x","data":1}`},
		{"GET", "/api/history/x", ""},
		{"GET", "/api/presence/x", ""},
		{"POST", "/api/disconnect", `{"user":"u"}`},
		{"GET", "/api/stats", ""},
		{"GET", "/api/nope", ""},
	} {
		status, hdr, m := cfAPI(t, h, ep.method, ep.path, ep.body, false)
		cfAPIError(t, ep.method+" "+ep.path+" without key", status, 401, hdr, m)
		st, hd, b := apiCall(t, h, ep.method, ep.path, "Bearer wrong-key", ep.body)
		var mm map[string]any
		_ = json.Unmarshal(b, &mm)
		cfAPIError(t, ep.method+" "+ep.path+" wrong key", st, 401, hd, mm)
	}
}

func TestConformanceAPIBadRequests(t *testing.T) {
	h := start(t)
	for _, ep := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/api/publish", `{"stream":`, 400},
		{"POST", "/api/publish", `{"data":1}`, 400},
		{"POST", "/api/disconnect", `{}`, 400},
		{"POST", "/api/publish", `{"stream":"` + strings.Repeat("s", 257) + `","data":1}`, 400},
		{"GET", "/api/history/x?limit=abc", "", 400},
		{"GET", "/api/nope", "", 404},
	} {
		status, hdr, m := cfAPI(t, h, ep.method, ep.path, ep.body, true)
		cfAPIError(t, fmt.Sprintf("%s %s %s", ep.method, ep.path, ep.body), status, ep.want, hdr, m)
	}
	// "a fitting HTTP status": wrong method on an existing endpoint is 405.
	status, hdr, m := cfAPI(t, h, "GET", "/api/publish", "", true)
	cfAPIError(t, "GET /api/publish", status, 405, hdr, m)
}

func TestConformanceAPIPublishBatchOrder(t *testing.T) {
	h := start(t)
	a, b := cfStream("ba"), cfStream("bb")
	code, body := apiPublishT(t, h, fmt.Sprintf(`[{"stream":%q,"data":1},{"stream":%q,"data":2},{"stream":%q,"data":3},{"stream":%q,"data":4}]`, a, b, a, a))
	if code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	var resp map[string]any
	d := json.NewDecoder(strings.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&resp); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, "publish response", resp, []string{"results"}, nil)
	rs := cfList(t, "results", resp["results"])
	if len(rs) != 4 {
		t.Fatalf("results %v", rs)
	}
	want := []int64{1, 1, 2, 3}
	for i, r := range rs {
		m := cfMap(t, "result", r)
		checkKeys(t, "result", m, []string{"offset", "epoch"}, nil)
		if cfInt(t, "offset", m["offset"]) != want[i] {
			t.Errorf("result %d offset %v, want %d (%v)", i, m["offset"], want[i], rs)
		}
	}
	e0 := cfMap(t, "r", rs[0])["epoch"]
	if cfMap(t, "r", rs[2])["epoch"] != e0 || cfMap(t, "r", rs[3])["epoch"] != e0 || cfMap(t, "r", rs[1])["epoch"] == nil {
		t.Errorf("epochs %v", rs)
	}
	// single object -> results of one
	code, body = apiPublishT(t, h, fmt.Sprintf(`{"stream":%q,"data":{"x":[1,2]}}`, b))
	if code != 200 || !strings.Contains(body, `"results"`) {
		t.Fatalf("single publish: %d %s", code, body)
	}
	var one struct{ Results []apiResult }
	_ = json.Unmarshal([]byte(body), &one)
	if len(one.Results) != 1 || one.Results[0].Offset != 2 {
		t.Errorf("single publish %s", body)
	}
}

func TestConformanceAPIHistory(t *testing.T) {
	h := start(t)
	s := cfStream("ah")
	status, _, m := cfAPI(t, h, "GET", "/api/history/"+s, "", true)
	if status != 200 {
		t.Fatalf("history empty: %d %v", status, m)
	}
	checkKeys(t, "api history (empty)", m, []string{"stream", "epoch", "offset", "pubs", "more"}, nil)
	if m["pubs"] == nil {
		t.Errorf("api history empty: pubs null, want []")
	}
	apiPublishT(t, h, fmt.Sprintf(`[{"stream":%q,"data":1},{"stream":%q,"data":2},{"stream":%q,"data":3}]`, s, s, s))
	status, _, m = cfAPI(t, h, "GET", "/api/history/"+s+"?limit=2", "", true)
	if status != 200 {
		t.Fatalf("history: %d %v", status, m)
	}
	checkKeys(t, "api history", m, []string{"stream", "epoch", "offset", "pubs", "more"}, nil)
	if m["stream"] != s || cfInt(t, "offset", m["offset"]) != 3 || m["more"] != true || len(cfList(t, "pubs", m["pubs"])) != 2 {
		t.Errorf("api history limit 2: %v", m)
	}
	for _, p := range cfList(t, "pubs", m["pubs"]) {
		checkKeys(t, "api history pub", cfMap(t, "pub", p), []string{"s", "offset", "epoch", "data", "ts"}, []string{"t"})
	}
	status, _, m = cfAPI(t, h, "GET", fmt.Sprintf("/api/history/%s?since_offset=1&epoch=%s", s, m["epoch"]), "", true)
	if status != 200 {
		t.Fatalf("history since: %d %v", status, m)
	}
	ps := cfList(t, "pubs", m["pubs"])
	if len(ps) != 2 || cfInt(t, "o", cfMap(t, "p", ps[0])["offset"]) != 2 || m["more"] != false {
		t.Errorf("api history since_offset=1: %v", m)
	}
}

func TestConformanceAPIPresenceAndStats(t *testing.T) {
	h := start(t)
	s := cfStream("ap")
	status, _, m := cfAPI(t, h, "GET", "/api/presence/"+s, "", true)
	if status != 200 {
		t.Fatalf("presence: %d %v", status, m)
	}
	checkKeys(t, "api presence (empty)", m, []string{"stream", "members", "users", "clients"}, nil)
	if m["members"] == nil {
		t.Errorf("api presence empty: members null, want []")
	}
	a1, _ := cfUser(t, h, protocol.SubprotocolJSON, "alice")
	a2, _ := cfUser(t, h, protocol.SubprotocolMsgpack, "alice")
	for _, c := range []*cfConn{a1, a2} {
		c.send(map[string]any{"t": "join", "id": 3, "s": s, "state": map[string]any{"k": 1}})
		c.expect("ack")
	}
	status, _, m = cfAPI(t, h, "GET", "/api/presence/"+s, "", true)
	if status != 200 {
		t.Fatalf("presence: %d %v", status, m)
	}
	if m["stream"] != s || cfInt(t, "users", m["users"]) != 1 || cfInt(t, "clients", m["clients"]) != 2 || len(cfList(t, "members", m["members"])) != 2 {
		t.Errorf("api presence: %v", m)
	}
	for _, x := range cfList(t, "members", m["members"]) {
		checkKeys(t, "api member", cfMap(t, "member", x), []string{"user", "client", "info", "state"}, nil)
	}
	status, _, m = cfAPI(t, h, "GET", "/api/stats", "", true)
	if status != 200 {
		t.Fatalf("stats: %d %v", status, m)
	}
	for _, k := range []string{"connections", "streams", "subscriptions"} {
		if _, ok := m[k]; !ok {
			t.Errorf("stats lacks %q: %v", k, m)
		}
	}
	if cfInt(t, "connections", m["connections"]) != 2 {
		t.Errorf("stats connections %v", m)
	}
}

func TestConformanceAPIDisconnectAllOfUser(t *testing.T) {
	h := start(t)
	a1, _ := cfUser(t, h, protocol.SubprotocolJSON, "dave")
	a2, _ := cfUser(t, h, protocol.SubprotocolMsgpack, "dave")
	other, _ := cfUser(t, h, protocol.SubprotocolJSON, "erin")
	status, _, m := cfAPI(t, h, "POST", "/api/disconnect", `{"user":"dave"}`, true)
	if status != 200 && status != 204 {
		t.Fatalf("disconnect: %d %v", status, m)
	}
	for i, c := range []*cfConn{a1, a2} {
		d := c.expect("disconnect")
		checkKeys(t, "disconnect", d, []string{"t", "code", "reason", "reconnect"}, nil)
		if cfInt(t, "code", d["code"]) != 4000 || d["reconnect"] != false {
			t.Errorf("conn %d: %v, want 4000 reconnect:false", i, d)
		}
		if _, err := c.tryNext(wait); err == nil || c.closed != 4000 {
			t.Errorf("conn %d: close code %d (%v), want 4000", i, c.closed, err)
		}
	}
	other.alive()
}

func TestConformanceHealthReadyMetrics(t *testing.T) {
	h := start(t)
	for _, p := range []string{"/healthz", "/readyz"} {
		if st, _, b := apiCall(t, h, "GET", p, "", ""); st != 200 {
			t.Errorf("%s: %d %s", p, st, b)
		}
	}
	if st, _, _ := apiCall(t, h, "GET", "/metrics", "", ""); st != http.StatusUnauthorized {
		t.Errorf("/metrics without the API key: %d, want 401", st)
	}
	st, hdr, b := apiCall(t, h, "GET", "/metrics", "Bearer "+testAPIKey, "")
	if st != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || !bytes.Contains(b, []byte("# TYPE")) {
		t.Errorf("/metrics: %d %q %.200s", st, hdr.Get("Content-Type"), b)
	}
}

// Server pings are bare `ping` messages; the advertised interval matches.
func TestConformanceServerPingShape(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.PingInterval = time.Second })
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			t.Parallel()
			c, cm := cfUser(t, h, p, "alice")
			if cfInt(t, "connected.ping", cm["ping"]) != 1 {
				t.Errorf("connected.ping %v, want 1", cm["ping"])
			}
			deadline := time.Now().Add(3 * time.Second)
			for {
				ms, err := c.readFrame(time.Until(deadline))
				if err != nil {
					t.Fatalf("no server ping: %v", err)
				}
				for _, m := range ms {
					if m["t"] == "ping" {
						checkKeys(t, "server ping", m, []string{"t"}, nil)
						c.send(map[string]any{"t": "pong"})
						c.alive()
						return
					}
				}
			}
		})
	}
}

// msgpack clients may encode integers in any msgpack integer width.
func TestConformanceMsgpackIntWidths(t *testing.T) {
	h := start(t)
	c := cfDial(t, h, protocol.SubprotocolMsgpack)
	enc := func(m map[string]any) []byte {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.UseCompactInts(false)
		if err := e.Encode(m); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	c.sendBytes(enc(map[string]any{"t": "connect", "id": uint64(1), "token": token(t, "alice")}))
	c.expect("connected")
	s := cfStream("ints")
	c.sendBytes(enc(map[string]any{"t": "sub", "id": int64(2), "s": s, "recover": map[string]any{"epoch": "x", "offset": uint64(0)}}))
	if m := c.expect("subscribed"); cfInt(t, "id", m["id"]) != 2 {
		t.Errorf("subscribed %v", m)
	}
	c.sendBytes(enc(map[string]any{"t": "history", "id": uint32(3), "s": s, "limit": int64(5)}))
	if m := c.expect("history"); cfInt(t, "id", m["id"]) != 3 {
		t.Errorf("history %v", m)
	}
}

func TestConformanceLimitErrorsKeepIDAndConnection(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c, _ := cfUser(t, h, p, "alice")
			s := cfStream("lim")
			long := strings.Repeat("s", 257)
			big := map[string]any{"b": strings.Repeat("x", 5000)}
			cases := []struct {
				msg  map[string]any
				id   int64
				code int64
			}{
				{map[string]any{"t": "sub", "id": 2, "s": long}, 2, 4004},
				{map[string]any{"t": "pub", "id": 3, "s": long, "data": 1}, 3, 4004},
				{map[string]any{"t": "join", "id": 4, "s": s, "state": big}, 4, 4005},
				{map[string]any{"t": "whisper", "s": s, "ev": strings.Repeat("e", 65), "data": 1}, 0, 4004},
				{map[string]any{"t": "whisper", "s": s, "ev": "e", "data": big}, 0, 4005},
				{map[string]any{"t": "history", "id": 5, "s": s, "since": map[string]any{"epoch": "gone", "offset": 1}}, 5, 4010},
			}
			for _, cs := range cases {
				c.send(cs.msg)
				e := c.expect("error")
				if cs.id != 0 && (e["id"] == nil || cfInt(t, "id", e["id"]) != cs.id) {
					t.Errorf("%v: error %v, want id %d", cs.msg["t"], e, cs.id)
				}
				if cfInt(t, "code", e["code"]) != cs.code {
					t.Errorf("%v: error %v, want code %d", cs.msg["t"], e, cs.code)
				}
				wantRetry := cs.code == 4010
				if r, ok := e["retry"]; wantRetry && r != true || !wantRetry && ok && r != false {
					t.Errorf("%v: retry=%v for code %d", cs.msg["t"], r, cs.code)
				}
			}
			// 256 bytes is fine; history limit over 1000 is capped, not refused
			c.send(map[string]any{"t": "sub", "id": 6, "s": strings.Repeat("s", 256)})
			c.expect("subscribed")
			c.send(map[string]any{"t": "history", "id": 7, "s": s, "limit": 5000})
			c.expect("history")
			c.alive()
		})
	}
}

func TestConformanceMiscErrors(t *testing.T) {
	h := start(t)
	for _, p := range cfCodecs() {
		t.Run(cfCodecName(p), func(t *testing.T) {
			c, _ := cfUser(t, h, p, "alice")
			c.send(map[string]any{"t": "bogus"})
			e := c.expect("error")
			if _, ok := e["id"]; ok || cfInt(t, "code", e["code"]) != 4004 {
				t.Errorf("unknown t without id: %v", e)
			}
			c.send(map[string]any{"t": "refresh", "id": 8, "token": token(t, "mallory")})
			e = c.expect("error")
			if cfInt(t, "id", e["id"]) != 8 || cfInt(t, "code", e["code"]) != 4001 {
				t.Errorf("refresh for another sub: %v, want id 8 code 4001", e)
			}
			c.send(map[string]any{"t": "refresh", "id": 9, "token": "garbage"})
			e = c.expect("error")
			if cfInt(t, "id", e["id"]) != 9 || cfInt(t, "code", e["code"]) != 4001 {
				t.Errorf("refresh with garbage: %v, want id 9 code 4001", e)
			}
			s := cfStream("dup")
			c.send(map[string]any{"t": "sub", "id": 10, "s": s}, map[string]any{"t": "sub", "id": 11, "s": s})
			c.expect("subscribed")
			e = c.expect("error")
			if cfInt(t, "id", e["id"]) != 11 || cfInt(t, "code", e["code"]) != 4004 {
				t.Errorf("double sub: %v", e)
			}
			c.alive()
		})
	}
}

func TestConformanceJSONBlankLines(t *testing.T) {
	h := start(t)
	c, _ := cfUser(t, h, protocol.SubprotocolJSON, "alice")
	c.sendBytes([]byte("\n{\"t\":\"ping\",\"extra\":[1,{\"a\":null}]}\n\n  {\"t\":\"ping\"}  \n"))
	c.expect("pong")
	c.expect("pong")
	c.alive()
}
