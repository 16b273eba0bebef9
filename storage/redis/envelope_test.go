package redis

import (
	"bytes"
	"errors"
	"testing"

	"github.com/huddle-rt/huddle/storage"
)

var envelopeTests = []struct {
	name string
	in   string
	want Envelope // when ok
	ok   bool
}{
	{name: "plain", in: "7:0123abcd:1700000000123:hello", want: Envelope{Position: storage.Position{Epoch: "0123abcd", Offset: 7}, Time: 1700000000123, Payload: []byte("hello")}, ok: true},
	{name: "payload with colons", in: "1:e:0::a:b:", want: Envelope{Position: storage.Position{Epoch: "e", Offset: 1}, Payload: []byte(":a:b:")}, ok: true},
	{name: "empty payload", in: "18446744073709551615:e:9223372036854775807:", want: Envelope{Position: storage.Position{Epoch: "e", Offset: 1<<64 - 1}, Time: 1<<63 - 1, Payload: []byte{}}, ok: true},
	{name: "binary payload", in: "2:e:3:\x00\xff\r\n", want: Envelope{Position: storage.Position{Epoch: "e", Offset: 2}, Time: 3, Payload: []byte("\x00\xff\r\n")}, ok: true},
	{name: "empty", in: ""},
	{name: "no epoch", in: "1"},
	{name: "empty epoch", in: "1::3:x"},
	{name: "no time", in: "1:e"},
	{name: "no payload separator", in: "1:e:3"},
	{name: "empty offset", in: ":e:3:x"},
	{name: "signed offset", in: "+1:e:3:x"},
	{name: "leading zero", in: "01:e:3:x"},
	{name: "offset overflow", in: "18446744073709551616:e:3:x"},
	{name: "time overflow", in: "1:e:9223372036854775808:x"},
	{name: "negative time", in: "1:e:-3:x"},
	{name: "not a number", in: "1x:e:3:x"},
}

func TestDecodeEnvelope(t *testing.T) {
	for _, tc := range envelopeTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeEnvelope([]byte(tc.in))
			if !tc.ok {
				if !errors.Is(err, ErrBadEnvelope) {
					t.Fatalf("DecodeEnvelope(%q) = %+v, %v; want ErrBadEnvelope", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeEnvelope(%q): %v", tc.in, err)
			}
			if got.Position != tc.want.Position || got.Time != tc.want.Time || !bytes.Equal(got.Payload, tc.want.Payload) {
				t.Errorf("DecodeEnvelope(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if enc := AppendEnvelope(nil, got); string(enc) != tc.in {
				t.Errorf("AppendEnvelope = %q, want %q", enc, tc.in)
			}
		})
	}
}

// FuzzDecodeEnvelope checks that the decoder never panics and that every
// envelope it accepts encodes back to the same bytes, so each envelope has
// exactly one encoding.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, tc := range envelopeTests {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrBadEnvelope) {
				t.Fatalf("error %v does not wrap ErrBadEnvelope", err)
			}
			return
		}
		if enc := AppendEnvelope(nil, e); !bytes.Equal(enc, b) {
			t.Fatalf("decoded %+v encodes to %q, not %q", e, enc, b)
		}
	})
}
