package bench

import (
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/huddle-rt/huddle/protocol"
)

// event is an Event with copied bytes, for comparing.
type event struct {
	kind                             EventKind
	stream, name, user, client, data string
	code                             int
}

func collect(into *[]event) Handler {
	return func(e *Event) {
		*into = append(*into, event{e.Kind, string(e.Stream), string(e.Name), string(e.User), string(e.Client), string(e.Data), e.Code})
	}
}

// serverFrame is one frame of server messages as the server would send it,
// with data carried the way each codec's clients send it.
func serverFrame(t *testing.T, codec protocol.Codec, stamp []byte) []byte {
	t.Helper()
	data := protocol.Raw(appendBin(nil, stamp))
	if codec == protocol.JSON {
		data = protocol.Raw(appendStr(nil, base64.StdEncoding.EncodeToString(stamp)))
	}
	state := protocol.Raw(append(appendStr(appendMapHeader(nil, 1), "b"), data...))
	b, err := protocol.EncodeFrame(codec,
		&protocol.Pub{S: "room", Offset: 3, Epoch: "e", Data: data, From: &protocol.ClientInfo{User: "u1", Client: "c1"}, TS: 5},
		&protocol.Whisper{S: "room", Ev: "cursor", Data: data, From: protocol.ClientInfo{User: "u2", Client: "c2"}},
		&protocol.Presence{S: "room",
			Joins:   []protocol.Member{{User: "u3", Client: "c3", State: state}, {User: "u4", Client: "c4", Info: protocol.MustRaw(map[string]any{"n": 1})}},
			Leaves:  []protocol.ClientInfo{{User: "u5", Client: "c5"}},
			Updates: []protocol.MemberUpdate{{User: "u3", Client: "c3", State: protocol.MustRaw(map[string]any{"x": 1})}}},
		&protocol.ErrorReply{ID: 9, S: "room", Code: 4006, Reason: "slow down"},
		&protocol.Ack{ID: 10, S: "room", Offset: 3, Epoch: "e"},
		&protocol.Disconnect{Code: 4008, Reason: "slow consumer", Reconnect: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHuddleDispatch(t *testing.T) {
	stamp := AppendStamp(nil, 7, 123456789, 0, 40)
	want := []event{
		{kind: EventPub, stream: "room", data: string(stamp)},
		{kind: EventWhisper, stream: "room", name: "cursor", data: string(stamp)},
		{kind: EventJoin, stream: "room", user: "u3", client: "c3", data: string(stamp)},
		{kind: EventJoin, stream: "room", user: "u4", client: "c4"},
		{kind: EventLeave, stream: "room", user: "u5", client: "c5"},
		{kind: EventError, stream: "room", code: 4006},
	}
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codec.String(), func(t *testing.T) {
			var got []event
			c := &huddleConn{codec: codec, h: collect(&got), replies: make(chan reply, 1)}
			c.want.Store(9)
			if err := c.dispatch(serverFrame(t, codec, stamp), 1, &Event{}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("events:\n got %v\nwant %v", got, want)
			}
			if r := <-c.replies; r.id != 9 || r.code != 4006 {
				t.Fatalf("reply %+v", r)
			}
			if code := c.closeCode.Load(); code != 4008 {
				t.Fatalf("close code from disconnect: %d", code)
			}
		})
	}
}

// TestHuddleDispatchAllocs: receiving a frame of publications allocates
// nothing, so the client core is spent on the socket, not the collector.
func TestHuddleDispatchAllocs(t *testing.T) {
	stamp := AppendStamp(nil, 1, 2, 0, 100)
	var msgs []protocol.Message
	for i := 0; i < 20; i++ {
		msgs = append(msgs, &protocol.Pub{S: "bench:room:1", Offset: uint64(i + 1), Epoch: "abc", Data: appendBin(nil, stamp), TS: 1})
	}
	frame, err := protocol.EncodeFrame(protocol.Msgpack, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	c := &huddleConn{codec: protocol.Msgpack, h: func(e *Event) {
		if _, _, _, ok := ParseStamp(e.Data); ok {
			n++
		}
	}}
	ev := &Event{}
	allocs := testing.AllocsPerRun(100, func() { _ = c.dispatchMsgpack(frame, 1, ev) })
	if allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
	if n == 0 || n%20 != 0 {
		t.Fatalf("saw %d publications", n)
	}
}

// TestHuddleWrites: what the adapter writes decodes, in the server's own
// decoder, to the messages meant, with the stamp intact.
func TestHuddleWrites(t *testing.T) {
	stamp := AppendStamp(nil, 3, 4, 5, 30)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codec.String(), func(t *testing.T) {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fds[0])
			srv, err := net.FileConn(os.NewFile(uintptr(fds[1]), "server"))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c := &huddleConn{fd: fds[0], codec: codec, mask: 12345}
			go func() {
				_ = c.Publish("s1", stamp)
				_ = c.Whisper("s2", "cursor", stamp)
				_ = c.Join("s3", stamp)
				_ = c.Leave("s4")
			}()
			var got []protocol.Message
			for len(got) < 4 {
				_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := ws.ReadFrame(srv)
				if err != nil {
					t.Fatal(err)
				}
				if !f.Header.Masked {
					t.Fatal("client frames must be masked")
				}
				ws.Cipher(f.Payload, f.Header.Mask, 0)
				ds, err := protocol.DecodeClient(codec, f.Payload, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range ds {
					if d.Err != nil {
						t.Fatal(d.Err)
					}
					got = append(got, d.Msg)
				}
			}
			u := &huddleConn{codec: codec}
			pub, ok1 := got[0].(*protocol.Publish)
			wh, ok2 := got[1].(*protocol.SendWhisper)
			jn, ok3 := got[2].(*protocol.Join)
			lv, ok4 := got[3].(*protocol.Leave)
			if !ok1 || !ok2 || !ok3 || !ok4 {
				t.Fatalf("messages %T %T %T %T", got[0], got[1], got[2], got[3])
			}
			if pub.S != "s1" || pub.ID == 0 || string(u.unwrap(pub.Data)) != string(stamp) {
				t.Fatalf("publish %+v", pub)
			}
			if wh.S != "s2" || wh.Ev != "cursor" || string(u.unwrap(wh.Data)) != string(stamp) {
				t.Fatalf("whisper %+v", wh)
			}
			if jn.S != "s3" || !jn.State.IsMap() || string(u.stateBytes(jn.State)) != string(stamp) {
				t.Fatalf("join %+v", jn)
			}
			if lv.S != "s4" {
				t.Fatalf("leave %+v", lv)
			}
		})
	}
}

func TestUserIndex(t *testing.T) {
	for _, i := range []int{0, 7, 12345, 99999999} {
		if got, ok := userIndex([]byte(userName(i))); !ok || got != i {
			t.Fatalf("userIndex(%q) = %d %v", userName(i), got, ok)
		}
	}
	for _, bad := range []string{"", "u", "x1", "u1a", "publisher", "u123456789012"} {
		if _, ok := userIndex([]byte(bad)); ok {
			t.Fatalf("userIndex(%q) ok", bad)
		}
	}
}
