package server_test

// Robustness tests: malformed and hostile input over a real socket. Every
// bad client must be closed with the code PROTOCOL.md gives, and must leave
// the server healthy for everyone else.
//
// The helpers at the bottom (prefix bi) are shared with slow_test.go. They
// take the calling test's t, so they are safe inside subtests (the harness's
// own helpers report to the test that started the server).

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// First-byte bits of a WebSocket frame.
const (
	biFin  = 0x80
	biRsv1 = 0x40
	biCont = 0x0
	biText = 0x1
	biBin  = 0x2
	biOp3  = 0x3 // reserved data opcode
	biPing = 0x9
)

// biBadFrames are clients that break the framing or the message syntax
// after a good connect; each must end with a disconnect and a close frame
// carrying code.
var biBadFrames = []struct {
	name string
	json bool
	send func(t *testing.T, c *wsclient.Client)
	code protocol.Code
}{
	{"msgpack never-used byte", false, biSendRaw(ws.OpBinary, []byte{0xc1}), protocol.CodeBadRequest},
	{"msgpack truncated map", false, biSendRaw(ws.OpBinary, []byte{0x82, 0xa1, 't'}), protocol.CodeBadRequest},
	{"msgpack not a map", false, biSendRaw(ws.OpBinary, []byte{0x93, 1, 2, 3}), protocol.CodeBadRequest},
	{"msgpack map without t", false, biSendRaw(ws.OpBinary, biMsgpack(map[string]any{"id": 3, "s": "x"})), protocol.CodeBadRequest},
	{"json truncated", true, biSendRaw(ws.OpText, []byte(`{"t":"sub","id":`)), protocol.CodeBadRequest},
	{"json not an object", true, biSendRaw(ws.OpText, []byte(`[1,2,3]`)), protocol.CodeBadRequest},
	{"json garbage", true, biSendRaw(ws.OpText, []byte("\x00\x01not json")), protocol.CodeBadRequest},
	{"frame over max-message", false, biWrite(biFrame(biFin|biBin, make([]byte, biMaxMessage+1), true)), protocol.CodeTooLarge},
	{"header claiming 1 GiB", false, biWrite(biHeader(biFin|biBin, 1<<30, true)), protocol.CodeTooLarge},
	{"fragments adding up over max-message", false, biWrite(biConcat(
		biFrame(biBin, make([]byte, 2000), true),
		biFrame(biCont, make([]byte, 2000), true),
		biFrame(biFin|biCont, make([]byte, 2000), true),
	)), protocol.CodeTooLarge},
	{"unmasked frame", false, biWrite(biFrame(biFin|biBin, biPingMsg(), false)), protocol.CodeBadRequest},
	{"reserved bit RSV1", false, biWrite(biFrame(biFin|biRsv1|biBin, biPingMsg(), true)), protocol.CodeBadRequest},
	{"reserved opcode 3", false, biWrite(biFrame(biFin|biOp3, biPingMsg(), true)), protocol.CodeBadRequest},
	{"continuation without a message", false, biWrite(biFrame(biFin|biCont, biPingMsg(), true)), protocol.CodeBadRequest},
	{"data frame inside a fragmented message", false, biWrite(biConcat(
		biFrame(biBin, biPingMsg()[:1], true),
		biFrame(biFin|biText, biPingMsg(), true),
	)), protocol.CodeBadRequest},
	{"ping over 125 bytes", false, biWrite(biFrame(biFin|biPing, make([]byte, 126), true)), protocol.CodeBadRequest},
	{"fragmented ping", false, biWrite(biFrame(biPing, []byte("x"), true)), protocol.CodeBadRequest},
}

const biMaxMessage = 4096

func TestBadInputClosesConnection(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.MaxMessage = biMaxMessage })
	for _, tc := range biBadFrames {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*wsclient.Options)
			if tc.json {
				opts = append(opts, func(o *wsclient.Options) { o.Subprotocols = []string{protocol.SubprotocolJSON} })
			}
			c := biDial(t, h, "bad", opts...)
			tc.send(t, c)
			biExpectClose(t, c, tc.code, false)
			biHealthy(t, h)
			biWaitConns(t, h, 0)
		})
	}
}

// A message with a field of the wrong type is confined to that message:
// error 4004 answering its id, and the rest of the frame and the
// connection carry on.
func TestBadInputWrongFieldType(t *testing.T) {
	h := start(t)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codec.Subprotocol(), func(t *testing.T) {
			c := biDial(t, h, "typo", func(o *wsclient.Options) { o.Subprotocols = []string{codec.Subprotocol()} })
			stream := biStream("typo")
			var frame []byte
			op := ws.OpText
			if codec == protocol.Msgpack {
				op = ws.OpBinary
				frame = biConcat(
					biMsgpack(map[string]any{"t": "sub", "id": 5, "s": 123}),
					biMsgpack(map[string]any{"t": "sub", "id": 6, "s": stream}),
				)
			} else {
				frame = []byte(`{"t":"sub","id":5,"s":123}` + "\n" + `{"t":"sub","id":6,"s":"` + stream + `"}`)
			}
			if err := c.SendRaw(op, frame); err != nil {
				t.Fatal(err)
			}
			m := biNext(t, c)
			e, ok := m.(*protocol.ErrorReply)
			if !ok || e.ID != 5 || e.Code != protocol.CodeBadRequest {
				t.Fatalf("sub with numeric s: got %s %+v, want error id 5 code 4004", m.Type(), m)
			}
			m = biNext(t, c)
			sub, ok := m.(*protocol.Subscribed)
			if !ok || sub.ID != 6 || sub.S != stream {
				t.Fatalf("second message of the frame: got %s %+v, want subscribed id 6", m.Type(), m)
			}
			// The connection still works end to end.
			biPublish(t, h, fmt.Sprintf(`{"stream":%q,"data":{"n":1}}`, stream))
			p, err := wsclient.Wait[*protocol.Pub](c, wait)
			if err != nil || p.Offset != sub.Offset+1 {
				t.Fatalf("pub after the bad message: %+v %v", p, err)
			}
			if err := c.Err(); err != nil {
				t.Fatalf("connection ended: %v", err)
			}
			biHealthy(t, h)
		})
	}
}

// A WebSocket ping frame is answered with a pong frame echoing its payload.
func TestBadInputPingFrameGetsPong(t *testing.T) {
	h := start(t)
	c, r := biDialRaw(t, h, wsclient.Options{})
	biConnectRaw(t, c, r, token(t, "pinger"))
	payload := []byte("are-you-there-0123456789")
	if err := c.SendRaw(ws.OpPing, payload); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for {
		f, err := r.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no pong frame: %v", err)
		}
		if f.Header.OpCode == ws.OpPong {
			if string(f.Payload) != string(payload) {
				t.Fatalf("pong payload %q, want %q", f.Payload, payload)
			}
			break
		}
		if f.Header.OpCode == ws.OpClose {
			t.Fatalf("close frame %v instead of a pong", biCloseCode(f))
		}
	}
	// Still a working connection.
	if err := c.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	biReadUntil[*protocol.Pong](t, r, wait)
	biHealthy(t, h)
}

// A client close frame is answered with a close frame carrying the same
// code, then the server closes the socket.
func TestBadInputClientCloseFrame(t *testing.T) {
	h := start(t)
	c, r := biDialRaw(t, h, wsclient.Options{})
	biConnectRaw(t, c, r, token(t, "closer"))
	biWaitConns(t, h, 1)
	body := binary.BigEndian.AppendUint16(nil, 1000)
	if err := c.SendRaw(ws.OpClose, append(body, "bye"...)); err != nil {
		t.Fatal(err)
	}
	sawClose := false
	deadline := time.Now().Add(wait)
	for {
		f, err := r.next(time.Until(deadline))
		if err != nil {
			if !biIsEOF(err) {
				t.Fatalf("socket not closed after the close handshake: %v", err)
			}
			break
		}
		if sawClose {
			t.Fatalf("frame op %v after the close frame", f.Header.OpCode)
		}
		if f.Header.OpCode == ws.OpClose {
			sawClose = true
			if code := biCloseCode(f); code != 1000 {
				t.Fatalf("close frame code %d, want 1000 echoed", code)
			}
		}
	}
	if !sawClose {
		t.Fatal("socket closed without a close frame")
	}
	biWaitConns(t, h, 0)
	biHealthy(t, h)
}

// Frames written one byte at a time (partial reads everywhere: inside the
// header, the 16-bit length, the mask and across two frames) are still
// processed.
func TestBadInputOneByteWrites(t *testing.T) {
	h := start(t)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codec.Subprotocol(), func(t *testing.T) {
			c := biDial(t, h, "dribble", func(o *wsclient.Options) { o.Subprotocols = []string{codec.Subprotocol()} })
			stream := biStream("dribble")
			op := byte(biText)
			if codec == protocol.Msgpack {
				op = biBin
			}
			sub, err := protocol.EncodeFrame(codec, &protocol.Subscribe{ID: 2, S: stream})
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Repeat("slow and steady ", 16) // > 125 bytes: 16-bit length
			pub, err := protocol.EncodeFrame(codec, &protocol.Publish{ID: 3, S: stream, Data: protocol.MustRaw(map[string]any{"text": text})})
			if err != nil {
				t.Fatal(err)
			}
			all := biConcat(biFrame(biFin|op, sub, true), biFrame(biFin|op, pub, true))
			for i := range all {
				if err := c.WriteBytes(all[i : i+1]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Microsecond)
			}
			subd, err := wsclient.Wait[*protocol.Subscribed](c, wait)
			if err != nil || subd.ID != 2 {
				t.Fatalf("subscribed: %+v %v", subd, err)
			}
			// The subscriber is the publisher: it gets the ack and its own
			// pub, in either order.
			var ack *protocol.Ack
			var p *protocol.Pub
			for ack == nil || p == nil {
				switch m := biNext(t, c).(type) {
				case *protocol.Ack:
					ack = m
				case *protocol.Pub:
					p = m
				default:
					t.Fatalf("got %s %+v, want ack and pub", m.Type(), m)
				}
			}
			if ack.ID != 3 || ack.Offset != subd.Offset+1 || p.Offset != ack.Offset {
				t.Fatalf("ack %+v, pub offset %d; want id 3 and offset %d", ack, p.Offset, subd.Offset+1)
			}
			var got struct {
				Text string `msgpack:"text"`
			}
			if err := msgpack.Unmarshal(p.Data, &got); err != nil || got.Text != text {
				t.Fatalf("pub data %q (%v), want the %d-byte text", got.Text, err, len(text))
			}
			biHealthy(t, h)
		})
	}
}

// TestStalledPartialFrames: 100 connections each send a frame header
// promising 1000 bytes plus 10 bytes of it, and stall. A subscriber must
// still get 200 publications promptly, also with only 2 workers (DESIGN
// rule 2: a half-sent frame holds no worker). Then the stalled frames are
// completed and answered (the partial bytes were kept), and after the
// stalled clients go away the server is back to its baseline.
func TestStalledPartialFrames(t *testing.T) {
	for _, workers := range []int{0, 2} {
		name := "workers=default"
		if workers > 0 {
			name = "workers=" + strconv.Itoa(workers)
		}
		t.Run(name, func(t *testing.T) {
			stalledPartialFrames(t, workers)
		})
	}
}

func stalledPartialFrames(t *testing.T, workers int) {
	const (
		stalled = 100
		pubs    = 200
		within  = time.Second
		sent    = 8 + 10 // header with a 16-bit length and mask, then 10 payload bytes
	)
	h := start(t, func(o *harnessOpts) { o.cfg.Workers = workers })
	reader := biDial(t, h, "reader")
	stream := biStream("stall")
	top := subscribe(t, reader, 2, stream, nil)

	// A 1000-byte msgpack ping: {"t":"ping","pad":"xxx..."}.
	payload := biPaddedPing(1000)
	frame := biFrame(biFin|biBin, payload, true)
	if len(frame) != 8+1000 {
		t.Fatalf("frame is %d bytes, want a 16-bit length header", len(frame))
	}
	clients := make([]*wsclient.Client, stalled)
	for i := range clients {
		clients[i] = biDial(t, h, fmt.Sprintf("staller-%d", i), func(o *wsclient.Options) { o.Buffer = 16 })
	}
	for _, c := range clients {
		if err := c.WriteBytes(frame[:sent]); err != nil {
			t.Fatal(err)
		}
	}

	var maxLat, total time.Duration
	for i := 0; i < pubs; i++ {
		t0 := time.Now()
		biPublish(t, h, fmt.Sprintf(`{"stream":%q,"data":{"i":%d}}`, stream, i))
		p, err := wsclient.Wait[*protocol.Pub](reader, within)
		if err != nil {
			t.Fatalf("publication %d not delivered within %v while %d connections stall mid-frame: %v", i, within, stalled, err)
		}
		lat := time.Since(t0)
		total += lat
		maxLat = max(maxLat, lat)
		if p.Offset != top.Offset+uint64(i)+1 {
			t.Fatalf("publication %d has offset %d, want %d", i, p.Offset, top.Offset+uint64(i)+1)
		}
	}
	t.Logf("%d publications with %d stalled connections (workers=%d): publish->deliver max %v, mean %v",
		pubs, stalled, workers, maxLat, total/pubs)

	// Nobody was disconnected for stalling (that is not a protocol error).
	if st := biStats(t, h); st.Connections != stalled+1 {
		t.Fatalf("connections = %d during the stall, want %d", st.Connections, stalled+1)
	}
	// The server kept the partial frames: completing them gets answers.
	for i, c := range clients {
		if err := c.WriteBytes(frame[sent:]); err != nil {
			t.Fatal(err)
		}
		if _, err := wsclient.Wait[*protocol.Pong](c, wait); err != nil {
			t.Fatalf("stalled client %d: no pong after completing its frame: %v", i, err)
		}
	}
	// Stall again, then vanish mid-frame.
	for _, c := range clients {
		if err := c.WriteBytes(frame[:sent]); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		c.Close()
	}
	biWaitConns(t, h, 1)
	biHealthy(t, h)
	if err := reader.Err(); err != nil {
		t.Fatalf("reader connection ended: %v", err)
	}
}

// ---- shared helpers ----

var biStreamSeq atomic.Int64

// biStream returns a stream name no other test uses.
func biStream(prefix string) string {
	return fmt.Sprintf("%s:%d", prefix, biStreamSeq.Add(1))
}

func biConcat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func biMsgpack(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// biPingMsg is a valid msgpack ping message.
func biPingMsg() []byte { return biMsgpack(map[string]any{"t": "ping"}) }

// biPaddedPing is a msgpack ping message of exactly size bytes (the pad key
// is unknown and ignored).
func biPaddedPing(size int) []byte {
	type padded struct {
		T   string `msgpack:"t"`
		Pad string `msgpack:"pad"`
	}
	for n := 0; n < size; n++ {
		b := biMsgpack(padded{T: "ping", Pad: strings.Repeat("x", n)})
		if len(b) == size {
			return b
		}
	}
	panic("no padding gives a ping of " + strconv.Itoa(size) + " bytes")
}

var biMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// biHeader encodes a client frame header: b0 holds FIN, RSV and the opcode.
func biHeader(b0 byte, n int, masked bool) []byte {
	var m byte
	if masked {
		m = 0x80
	}
	h := []byte{b0}
	switch {
	case n < 126:
		h = append(h, m|byte(n))
	case n <= 0xffff:
		h = append(h, m|126, byte(n>>8), byte(n))
	default:
		h = binary.BigEndian.AppendUint64(append(h, m|127), uint64(n))
	}
	if masked {
		h = append(h, biMask[:]...)
	}
	return h
}

// biFrame encodes a whole client frame, masked or not, with any first byte.
func biFrame(b0 byte, payload []byte, masked bool) []byte {
	p := append([]byte(nil), payload...)
	if masked {
		ws.Cipher(p, biMask, 0)
	}
	return append(biHeader(b0, len(p), masked), p...)
}

func biSendRaw(op ws.OpCode, payload []byte) func(*testing.T, *wsclient.Client) {
	return func(t *testing.T, c *wsclient.Client) {
		t.Helper()
		if err := c.SendRaw(op, payload); err != nil {
			t.Fatal(err)
		}
	}
}

func biWrite(b []byte) func(*testing.T, *wsclient.Client) {
	return func(t *testing.T, c *wsclient.Client) {
		t.Helper()
		if err := c.WriteBytes(b); err != nil {
			t.Fatal(err)
		}
	}
}

// biDial connects a reading client as user (msgpack unless opts say
// otherwise); it closes when t ends.
func biDial(t *testing.T, h *harness, user string, opts ...func(*wsclient.Options)) *wsclient.Client {
	t.Helper()
	var o wsclient.Options
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, _, err := wsclient.DialConnected(ctx, h.URL, token(t, user), o)
	if err != nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// biNext returns the next message that is not a server ping.
func biNext(t *testing.T, c *wsclient.Client) protocol.Message {
	t.Helper()
	for {
		m, err := c.Next(wait)
		if err != nil {
			t.Fatalf("next message: %v", err)
		}
		if _, ok := m.(*protocol.Ping); !ok {
			return m
		}
	}
}

// biExpectClose checks that the server sends disconnect with code (and
// reconnect), then a close frame with the same code.
func biExpectClose(t *testing.T, c *wsclient.Client, code protocol.Code, reconnect bool) {
	t.Helper()
	d, err := wsclient.Wait[*protocol.Disconnect](c, wait)
	if err != nil {
		cc, reason := c.CloseCode()
		t.Fatalf("want disconnect %d: %v (close frame %d %q)", code, err, cc, reason)
	}
	if d.Code != code || d.Reconnect != reconnect {
		t.Fatalf("disconnect %d reconnect=%v (%q), want %d reconnect=%v", d.Code, d.Reconnect, d.Reason, code, reconnect)
	}
	cc, err := c.WaitClosed(wait)
	if err != nil {
		t.Fatalf("after disconnect %d: %v", code, err)
	}
	if cc != int(code) {
		_, reason := c.CloseCode()
		t.Fatalf("close frame code %d (%q), want %d", cc, reason, code)
	}
}

// biFrameReader reads server frames from a client dialled with NoReader.
type biFrameReader struct {
	conn net.Conn
	br   *bufio.Reader
	c    *wsclient.Client
}

// biDialRaw dials a client whose socket nobody reads but r.
func biDialRaw(t *testing.T, h *harness, o wsclient.Options) (*wsclient.Client, *biFrameReader) {
	t.Helper()
	o.NoReader = true
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := wsclient.Dial(ctx, h.URL, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, &biFrameReader{conn: c.Conn, br: bufio.NewReaderSize(c.Conn, 64<<10), c: c}
}

func (r *biFrameReader) next(timeout time.Duration) (ws.Frame, error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(timeout))
	return ws.ReadFrame(r.br)
}

// biReadUntil reads frames until a message of type T arrives; a close frame
// or a disconnect first fails the test.
func biReadUntil[T protocol.Message](t *testing.T, r *biFrameReader, timeout time.Duration) T {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := r.next(time.Until(deadline))
		if err != nil {
			var zero T
			t.Fatalf("waiting for %T: %v", zero, err)
		}
		switch f.Header.OpCode {
		case ws.OpClose:
			t.Fatalf("close frame %d", biCloseCode(f))
		case ws.OpText, ws.OpBinary:
			msgs, err := protocol.DecodeServer(r.c.Codec, f.Payload, nil)
			if err != nil {
				t.Fatalf("undecodable frame: %v", err)
			}
			for _, d := range msgs {
				if d.Err != nil {
					t.Fatalf("bad message: %v", d.Err)
				}
				if m, ok := d.Msg.(T); ok {
					return m
				}
				if dm, ok := d.Msg.(*protocol.Disconnect); ok {
					t.Fatalf("disconnect %d %q", dm.Code, dm.Reason)
				}
			}
		}
	}
}

// biConnectRaw sends connect on a NoReader client and reads the reply.
func biConnectRaw(t *testing.T, c *wsclient.Client, r *biFrameReader, tok string) *protocol.Connected {
	t.Helper()
	if err := c.Send(&protocol.Connect{ID: 1, Token: tok}); err != nil {
		t.Fatal(err)
	}
	return biReadUntil[*protocol.Connected](t, r, wait)
}

func biCloseCode(f ws.Frame) int {
	if len(f.Payload) < 2 {
		return 1005
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

// biIsEOF reports whether err means the peer closed or reset the socket.
func biIsEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

var biHTTP = &http.Client{Timeout: wait}

// biGet fetches path from the server, with the API key when keyed.
func biGet(t *testing.T, h *harness, path string, keyed bool) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", h.HTTP+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if keyed {
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
	}
	resp, err := biHTTP.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, b
}

// biPublish publishes through the HTTP API and fails the test unless it
// returns 200; it returns the offsets.
func biPublish(t *testing.T, h *harness, body string) []uint64 {
	t.Helper()
	req, err := http.NewRequest("POST", h.HTTP+"/api/publish", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := biHTTP.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	var res struct {
		Results []struct{ Offset uint64 }
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("publish response %s: %v", b, err)
	}
	offs := make([]uint64, len(res.Results))
	for i, r := range res.Results {
		offs[i] = r.Offset
	}
	return offs
}

// statsResp is the part of GET /api/stats the tests read.
type statsResp struct {
	Connections    int `json:"connections"`
	Subscriptions  int `json:"subscriptions"`
	QueuedBytesMax int `json:"queued_bytes_max"`
	WhispersCached int `json:"whispers_cached"`
}

// biStats reads GET /api/stats.
func biStats(t *testing.T, h *harness) statsResp {
	t.Helper()
	code, b := biGet(t, h, "/api/stats", true)
	if code != http.StatusOK {
		t.Fatalf("/api/stats: %d %s", code, b)
	}
	var st statsResp
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("/api/stats %s: %v", b, err)
	}
	return st
}

// biWaitConns waits until the server counts n open connections.
func biWaitConns(t *testing.T, h *harness, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := biStats(t, h)
		if st.Connections == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server counts %d connections after %v, want %d", st.Connections, wait, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// biHealthy checks /healthz and that a fresh client can subscribe and
// receive an API publication.
func biHealthy(t *testing.T, h *harness) {
	t.Helper()
	if code, b := biGet(t, h, "/healthz", false); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, b)
	}
	c := biDial(t, h, "probe", func(o *wsclient.Options) { o.Buffer = 16 })
	defer c.Close()
	stream := biStream("probe")
	sub := subscribe(t, c, 2, stream, nil)
	offs := biPublish(t, h, fmt.Sprintf(`{"stream":%q,"data":{"probe":true}}`, stream))
	p, err := wsclient.Wait[*protocol.Pub](c, wait)
	if err != nil || p.S != stream || p.Offset != sub.Offset+1 || p.Offset != offs[0] {
		t.Fatalf("probe client: pub %+v %v, want offset %d", p, err, sub.Offset+1)
	}
}

// biMetric sums the samples of a Prometheus metric whose labels include
// label (e.g. `reason="slow_consumer"`), and reports whether any matched.
func biMetric(t *testing.T, h *harness, name, label string) (float64, bool) {
	t.Helper()
	code, b := biGet(t, h, "/metrics", true)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	var sum float64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
		found = true
	}
	return sum, found
}
