package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
)

func TestParseHeader(t *testing.T) {
	mask := []byte{1, 2, 3, 4}
	tests := []struct {
		name    string
		in      []byte
		wantN   int
		wantLen int64
		wantErr error
	}{
		{"short", []byte{0x82}, 0, 0, nil},
		{"small masked", append([]byte{0x82, 0x85}, mask...), 6, 5, nil},
		{"unmasked", []byte{0x82, 0x05}, 0, 0, errUnmasked},
		{"rsv", append([]byte{0xc2, 0x85}, mask...), 0, 0, errReservedBits},
		{"16-bit", append([]byte{0x82, 0xfe, 0x01, 0x00}, mask...), 8, 256, nil},
		{"16-bit not minimal", append([]byte{0x82, 0xfe, 0x00, 0x10}, mask...), 0, 0, errBadLength},
		{"16-bit incomplete", []byte{0x82, 0xfe, 0x01}, 0, 0, nil},
		{"64-bit", append([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0}, mask...), 14, 65536, nil},
		{"64-bit top bit", append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 1, 0, 0}, mask...), 0, 0, errBadLength},
		{"ping too long", append([]byte{0x89, 0xfe, 0x00, 0x80}, mask...), 0, 0, errBadControl},
		{"fragmented close", append([]byte{0x08, 0x80}, mask...), 0, 0, errBadControl},
		{"opcode 3", append([]byte{0x83, 0x80}, mask...), 0, 0, errBadOpcode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := parseHeader(tc.in)
			if err != tc.wantErr || n != tc.wantN || (n > 0 && h.length != tc.wantLen) {
				t.Fatalf("parseHeader = (len %d, n %d, %v), want (len %d, n %d, %v)", h.length, n, err, tc.wantLen, tc.wantN, tc.wantErr)
			}
		})
	}
}

func TestAppendFrameHeaderRoundTrip(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536, 1 << 20} {
		b := appendFrameHeader(nil, opBinary, n)
		h, err := ws.ReadHeader(bytes.NewReader(b))
		if err != nil || h.Length != int64(n) || !h.Fin || h.OpCode != ws.OpBinary {
			t.Fatalf("n=%d: %+v %v", n, h, err)
		}
	}
}

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

func fuzzServer(t testing.TB) *Server {
	fuzzOnce.Do(func() {
		a, err := auth.New(auth.Config{Secret: []byte("fuzz-secret")})
		if err != nil {
			t.Fatal(err)
		}
		fuzzSrv, err = New(Config{MaxMessage: 4096, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, Deps{Auth: a})
		if err != nil {
			t.Fatal(err)
		}
	})
	return fuzzSrv
}

func maskedFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var buf bytes.Buffer
	_ = ws.WriteFrame(&buf, ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), p...))))
	return buf.Bytes()
}

// FuzzFrames feeds a connection's frame reader with arbitrary bytes split in
// two reads at an arbitrary point: whatever arrives, the reader must not
// panic and must never keep more than one frame's worth of bytes.
func FuzzFrames(f *testing.F) {
	tok, _ := auth.SignHS256([]byte("fuzz-secret"), "u", time.Now().Add(time.Hour), nil, map[string][]string{"*": {"sub", "pub", "history"}})
	connect, _ := protocol.EncodeFrame(protocol.Msgpack, &protocol.Connect{ID: 1, Token: tok})
	sub, _ := protocol.EncodeFrame(protocol.Msgpack, &protocol.Subscribe{ID: 2, S: "s"}, &protocol.Publish{ID: 3, S: "s", Data: protocol.MustRaw(1)})
	seeds := [][]byte{
		append(maskedFrame(ws.OpBinary, true, connect), maskedFrame(ws.OpBinary, true, sub)...),
		append(maskedFrame(ws.OpBinary, false, connect[:3]), maskedFrame(ws.OpContinuation, true, connect[3:])...),
		maskedFrame(ws.OpPing, true, []byte("hi")),
		maskedFrame(ws.OpClose, true, []byte{0x03, 0xe8}),
		maskedFrame(ws.OpBinary, true, bytes.Repeat([]byte{0x91}, 200)),
		{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		srv := fuzzServer(t)
		a, b := net.Pipe()
		defer b.Close()
		c := &conn{srv: srv, nc: a, codec: protocol.Msgpack, wake: make(chan struct{}, 1), created: time.Now().UnixNano()}
		k := min(int(cut), len(data))
		rest := c.processFrames(append([]byte(nil), data[:k]...))
		rest = c.processFrames(append(append([]byte(nil), rest...), data[k:]...))
		if len(rest) > srv.cfg.MaxMessage+14 {
			t.Fatalf("reader kept %d bytes, more than one frame", len(rest))
		}
		if c.rare != nil && len(c.rare.frag) > srv.cfg.MaxMessage {
			t.Fatalf("fragments hold %d bytes over the limit", len(c.rare.frag))
		}
		c.destroy(true)
	})
}
