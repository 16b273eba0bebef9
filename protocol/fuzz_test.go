package protocol

import "testing"

func addSeeds(f *testing.F, c Codec) {
	for _, set := range [][]Message{clientCases, serverCases} {
		for _, m := range set {
			b, err := EncodeFrame(c, m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, uint16(len(b)/2))
		}
		b, _ := EncodeFrame(c, set...)
		f.Add(b, uint16(len(b)/3))
	}
}

// fuzzDecode decodes the whole input and its two halves: a frame cut
// anywhere must give an error or messages, never a panic, and every decoded
// message must encode again.
func fuzzDecode(t *testing.T, c Codec, data []byte, cut uint16) {
	check := func(frame []byte) {
		for _, decode := range []func(Codec, []byte, []Decoded) ([]Decoded, error){DecodeClient, DecodeServer} {
			got, _ := decode(c, frame, nil)
			for _, d := range got {
				if d.Msg == nil {
					continue
				}
				if _, unknown := d.Msg.(*Unknown); unknown {
					continue
				}
				if _, err := AppendMessage(c, nil, d.Msg); err != nil {
					t.Fatalf("re-encode %T: %v", d.Msg, err)
				}
				if _, err := AppendMessage(1-c, nil, d.Msg); err != nil {
					t.Fatalf("re-encode %T in the other codec: %v", d.Msg, err)
				}
			}
		}
	}
	check(data)
	k := int(cut)
	if k > len(data) {
		k = len(data)
	}
	check(data[:k])
	check(data[k:])
}

func FuzzDecodeMsgpack(f *testing.F) {
	addSeeds(f, Msgpack)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) { fuzzDecode(t, Msgpack, data, cut) })
}

func FuzzDecodeJSON(f *testing.F) {
	addSeeds(f, JSON)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) { fuzzDecode(t, JSON, data, cut) })
}
