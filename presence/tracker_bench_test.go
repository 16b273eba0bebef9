package presence

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/huddle-rt/huddle/protocol"
)

// benchMember is a member as the server builds it: token info and a small
// state, as a cursor-sharing editor would set.
func benchMember(i int) protocol.Member {
	return protocol.Member{
		User:   "user-" + strconv.Itoa(i%1000),
		Client: "0b7e5c1a-5d7e-4c43-9a1e-" + strconv.Itoa(100000000000+i),
		Info:   protocol.MustRaw(map[string]any{"name": "User " + strconv.Itoa(i), "color": "#3a7bd5"}),
		State:  protocol.MustRaw(map[string]any{"cursor": map[string]any{"x": i, "y": 2 * i}, "status": "editing"}),
	}
}

// BenchmarkTracker_Churn joins a new member and removes the oldest one per
// op, through a Tracker over a MemoryStore whose ticker flushes as usual.
func BenchmarkTracker_Churn(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run("members="+strconv.Itoa(members), func(b *testing.B) {
			tr := NewTracker(Config{}, NewMemoryStore(), func(string, *protocol.Presence) {})
			defer tr.Close()
			ctx := context.Background()
			// A ring of twice the members: op i joins ring[i+members] and
			// removes ring[i], so the stream always holds members members.
			ms := make([]protocol.Member, 2*members)
			for i := range ms {
				ms[i] = benchMember(i)
			}
			n := len(ms)
			for i := 0; i < members; i++ {
				if err := tr.Join(ctx, "doc", ms[i]); err != nil {
					b.Fatal(err)
				}
			}
			tr.flush()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := tr.Join(ctx, "doc", ms[(members+i)%n]); err != nil {
					b.Fatal(err)
				}
				if err := tr.Leave(ctx, "doc", ms[i%n].Client); err != nil {
					b.Fatal(err)
				}
			}
			tr.flush() // the last tick's diff is part of the work
		})
	}
}

// BenchmarkTracker_Update patches one member's state per op; updates within
// a tick merge into one patch.
func BenchmarkTracker_Update(b *testing.B) {
	tr := NewTracker(Config{}, NewMemoryStore(), func(string, *protocol.Presence) {})
	defer tr.Close()
	ctx := context.Background()
	m := benchMember(1)
	if err := tr.Join(ctx, "doc", m); err != nil {
		b.Fatal(err)
	}
	tr.flush()
	who := protocol.ClientInfo{User: m.User, Client: m.Client}
	patches := []protocol.Raw{
		protocol.MustRaw(map[string]any{"cursor": map[string]any{"x": 1, "y": 2}}),
		protocol.MustRaw(map[string]any{"status": nil, "sel": []int{3, 9}}),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tr.Update(ctx, "doc", who, patches[i%2]); err != nil {
			b.Fatal(err)
		}
	}
	tr.flush()
}

// diffCases drive both TestDiffEncode and BenchmarkDiff_Encode.
var diffCases = []struct {
	name string
	diff func() *protocol.Presence
}{
	{"joins=1", func() *protocol.Presence { return benchDiff(1, 0, 0) }},
	{"joins=100", func() *protocol.Presence { return benchDiff(100, 0, 0) }},
	{"mixed=100", func() *protocol.Presence { return benchDiff(40, 30, 30) }},
}

func benchDiff(joins, leaves, updates int) *protocol.Presence {
	d := &protocol.Presence{S: "doc:42"}
	for i := 0; i < joins; i++ {
		d.Joins = append(d.Joins, benchMember(i))
	}
	for i := 0; i < leaves; i++ {
		m := benchMember(joins + i)
		d.Leaves = append(d.Leaves, protocol.ClientInfo{User: m.User, Client: m.Client})
	}
	for i := 0; i < updates; i++ {
		m := benchMember(joins + leaves + i)
		d.Updates = append(d.Updates, protocol.MemberUpdate{User: m.User, Client: m.Client,
			State: protocol.MustRaw(map[string]any{"cursor": map[string]any{"x": i}, "status": nil})})
	}
	return d
}

var codecs = []protocol.Codec{protocol.Msgpack, protocol.JSON}

func TestDiffEncode(t *testing.T) {
	for _, tc := range diffCases {
		for _, codec := range codecs {
			t.Run(tc.name+"/"+codecName(codec), func(t *testing.T) {
				d := tc.diff()
				b, err := protocol.AppendMessage(codec, nil, d)
				if err != nil {
					t.Fatal(err)
				}
				msgs, err := protocol.DecodeServer(codec, b, nil)
				if err != nil || len(msgs) != 1 || msgs[0].Err != nil {
					t.Fatalf("decode: %v %+v", err, msgs)
				}
				got, ok := msgs[0].Msg.(*protocol.Presence)
				if !ok || got.S != d.S || len(got.Joins) != len(d.Joins) || len(got.Leaves) != len(d.Leaves) || len(got.Updates) != len(d.Updates) {
					t.Fatalf("decoded %+v", msgs[0].Msg)
				}
				for i := range d.Joins {
					g, w := got.Joins[i], d.Joins[i]
					if g.Client != w.Client || g.User != w.User || sameJSON(t, g.State) != sameJSON(t, w.State) || sameJSON(t, g.Info) != sameJSON(t, w.Info) {
						t.Fatalf("join %d: %+v, want %+v", i, got.Joins[i], d.Joins[i])
					}
				}
				for i := range d.Updates {
					if sameJSON(t, got.Updates[i].State) != sameJSON(t, d.Updates[i].State) {
						t.Fatalf("update %d: %x, want %x", i, []byte(got.Updates[i].State), []byte(d.Updates[i].State))
					}
				}
			})
		}
	}
}

// sameJSON renders a msgpack value as JSON with sorted keys, so values that
// went through JSON (whose maps come back in any order) compare.
func sameJSON(t *testing.T, r protocol.Raw) string {
	t.Helper()
	j, err := protocol.MsgpackToJSON(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

// BenchmarkDiff_Encode encodes a tick's diff as emitPresence does, once per
// codec, into a reused buffer.
func BenchmarkDiff_Encode(b *testing.B) {
	for _, tc := range diffCases {
		for _, codec := range codecs {
			b.Run(tc.name+"/codec="+codecName(codec), func(b *testing.B) {
				d := tc.diff()
				buf, err := protocol.AppendMessage(codec, nil, d)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(buf)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if buf, err = protocol.AppendMessage(codec, buf[:0], d); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func codecName(c protocol.Codec) string {
	if c == protocol.JSON {
		return "json"
	}
	return "msgpack"
}
