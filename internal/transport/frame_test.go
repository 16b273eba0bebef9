package transport

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"
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

func maskedFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var buf bytes.Buffer
	_ = ws.WriteFrame(&buf, ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), p...))))
	return buf.Bytes()
}

// FuzzFrames feeds a connection's frame reader with arbitrary bytes split in
// two reads at an arbitrary point: whatever arrives, the reader must not
// panic and must never keep more than one frame's worth of bytes, nor hand
// the session a message over its limit.
func FuzzFrames(f *testing.F) {
	const maxMsg = 4096
	seeds := [][]byte{
		append(maskedFrame(ws.OpBinary, true, []byte("connect")), maskedFrame(ws.OpBinary, true, []byte("sub"))...),
		append(maskedFrame(ws.OpBinary, false, []byte("con")), maskedFrame(ws.OpContinuation, true, []byte("nect"))...),
		maskedFrame(ws.OpPing, true, []byte("hi")),
		maskedFrame(ws.OpClose, true, []byte{0x03, 0xe8}),
		maskedFrame(ws.OpBinary, true, bytes.Repeat([]byte{0x91}, 200)),
		{0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4},
	}
	for _, s := range seeds {
		f.Add(s, uint16(len(s)/2))
	}
	tr := testTransport(f, 1<<20)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		a, b := net.Pipe()
		defer b.Close()
		go func() { _, _ = io.Copy(io.Discard, b) }()
		c := tr.startPortableConn(a, nil)
		ss := &stubSession{c: c, max: maxMsg}
		c.sess = ss
		k := min(int(cut), len(data))
		rest := c.processFrames(append([]byte(nil), data[:k]...))
		rest = c.processFrames(append(append([]byte(nil), rest...), data[k:]...))
		if len(rest) > maxMsg+14 {
			t.Fatalf("reader kept %d bytes, more than one frame", len(rest))
		}
		if c.frag != nil && len(c.frag.b) > maxMsg {
			t.Fatalf("fragments hold %d bytes over the limit", len(c.frag.b))
		}
		for _, m := range ss.messages {
			if len(m) > maxMsg {
				t.Fatalf("a message of %d bytes reached the session, over its limit", len(m))
			}
		}
		c.destroy(true)
	})
}
