package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/frontend/cable/cabletest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/protocol"
)

// TestClusterCableSessionRestore: a /cable client dropped by one node
// restores its session on another (sessions live in Redis): restored: true
// with its subscription, then, asked for its history, the publications it
// missed in order and confirm_history, then live ones.
func TestClusterCableSessionRestore(t *testing.T) {
	c := startCluster(t, 2, nil, "--public")
	id := cabletest.PubSub("restore")
	a := cabletest.Dial(t, "ws://"+c.addrs[0]+"/cable", wire.SubprotocolExtJSON)
	sid, _ := a.Expect("welcome")["sid"].(string)
	if sid == "" {
		t.Fatal("no sid")
	}
	a.Subscribe(id)
	broadcast := func(n string) {
		t.Helper()
		if code, body, err := clusterAPI(c.addrs[1], "POST", "/_broadcast", `{"stream":"restore","data":"`+n+`"}`); err != nil || code != http.StatusCreated {
			t.Fatalf("/_broadcast: %d %s %v", code, body, err)
		}
	}
	broadcast("1")
	first := a.Expect("")
	epoch, _ := first["epoch"].(string)
	a.Close()

	broadcast("2")
	broadcast("3")
	// Node 0 saves the session when it sees the socket end, which may
	// take a moment after the cut.
	var b *cabletest.Client
	var w map[string]any
	for deadline := time.Now().Add(cabletest.Wait); ; {
		b = cabletest.Dial(t, "ws://"+c.addrs[1]+"/cable?sid="+sid, wire.SubprotocolExtJSON)
		if w = b.Expect("welcome"); w["restored"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("welcome %v, want restored: true", w)
		}
		b.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if ids, _ := w["restored_ids"].([]any); len(ids) != 1 || ids[0] != id {
		t.Fatalf("restored_ids %v, want [%s]", w["restored_ids"], id)
	}
	b.Send(map[string]any{"command": "history", "identifier": id,
		"history": map[string]any{"since": 0, "streams": map[string]any{"restore": map[string]any{"epoch": epoch, "offset": 1}}}})
	for n := 2; n <= 3; n++ {
		if m := b.Expect(""); m["message"] != float64(n) || m["offset"] != float64(n) {
			t.Fatalf("missed publication %d: %v", n, m)
		}
	}
	b.Expect("confirm_history")
	broadcast("4")
	if m := b.Expect(""); m["message"] != float64(4) {
		t.Fatalf("live publication: %v", m)
	}
	// A session is restored once.
	again := cabletest.Dial(t, "ws://"+c.addrs[0]+"/cable?sid="+sid, wire.SubprotocolExtJSON)
	if w := again.Expect("welcome"); w["restored"] == true {
		t.Fatalf("a second restore of one session: %v", w)
	}
}

// TestClusterCableOneWorld: across nodes, a /ws whisper and presence join
// on one node reach a /cable subscriber on another, and a /cable whisper
// reaches the /ws client.
func TestClusterCableOneWorld(t *testing.T) {
	c := startCluster(t, 2, nil, "--public")
	id := cabletest.PubSub("world")
	cab := cabletest.Dial(t, "ws://"+c.addrs[0]+"/cable", wire.SubprotocolExtJSON)
	cab.Expect("welcome")
	cab.Subscribe(id)
	ws, _ := clusterDialT(t, c.url(1), "wes")
	request[*protocol.Subscribed](t, ws, &protocol.Subscribe{ID: 1, S: "world"})

	if err := ws.Send(&protocol.SendWhisper{S: "world", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 7})}); err != nil {
		t.Fatal(err)
	}
	if m := cab.Expect(""); m["message"].(map[string]any)["x"] != float64(7) {
		t.Fatalf("/cable got %v, want the /ws whisper from the other node", m)
	}
	if err := ws.Send(&protocol.Join{ID: 2, S: "world", State: protocol.MustRaw(map[string]string{"n": "W"})}); err != nil {
		t.Fatal(err)
	}
	if m := cab.Expect("presence"); m["message"].(map[string]any)["id"] != "wes" {
		t.Fatalf("/cable got %v, want wes's join from the other node", m)
	}
	cab.Send(map[string]any{"command": "whisper", "identifier": id, "data": map[string]any{"event": "typing"}})
	for {
		m, err := ws.Next(e2eWait)
		if err != nil {
			t.Fatalf("/ws waiting for the /cable whisper: %v", err)
		}
		if w, ok := m.(*protocol.Whisper); ok {
			if w.Ev != "typing" {
				t.Fatalf("whisper %+v", w)
			}
			break
		}
	}
}
