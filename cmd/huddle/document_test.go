package main

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// A document stream on Redis outlives the node that wrote it and, with
// Redis's append-only file, Redis itself: a joiner after both restarted
// gets the snapshot and every publication since, in the same epoch.
func TestDocumentSurvivesRestarts(t *testing.T) {
	c := startCluster(t, 1, []string{"--appendonly", "yes", "--appendfsync", "always"},
		"--rule", "doc:=;document=on", "--history-size", "5", "--history-ttl", "1s")
	const stream = "doc:durable"
	w, _ := clusterDialT(t, c.url(0), "writer")
	var epoch string
	for i := 1; i <= 300; i++ {
		ack := request[*protocol.Ack](t, w, &protocol.Publish{ID: uint64(i), S: stream, Data: protocol.MustRaw(i)})
		epoch = ack.Epoch
	}
	request[*protocol.Ack](t, w, &protocol.Compact{ID: 1000, S: stream, Epoch: epoch, Offset: 200, Data: protocol.MustRaw("state@200")})
	w.Close()

	c.kill(0)
	c.redis.Restart()
	c.restart(0)
	time.Sleep(1500 * time.Millisecond) // past the history TTL, which documents ignore

	r, _ := clusterDialT(t, c.url(0), "reader")
	s := request[*protocol.Subscribed](t, r, &protocol.Subscribe{ID: 1, S: stream})
	if s.Epoch != epoch || s.Offset != 300 {
		t.Fatalf("after the restarts: epoch %q offset %d, want %q 300", s.Epoch, s.Offset, epoch)
	}
	pubs := append([]protocol.Pub(nil), s.Pubs...)
	for len(pubs) == 0 || pubs[len(pubs)-1].Offset < 300 {
		p, err := wsclient.Wait[*protocol.Pub](r, e2eWait)
		if err != nil {
			t.Fatalf("after %d pubs: %v", len(pubs), err)
		}
		pubs = append(pubs, *p)
	}
	var snap string
	if pubs[0].Snap == nil || pubs[0].Offset != 200 || msgpack.Unmarshal(pubs[0].Data, &snap) != nil || snap != "state@200" {
		t.Fatalf("first pub %+v, want the snapshot at 200", pubs[0])
	}
	if len(pubs) != 101 {
		t.Fatalf("%d pubs, want the snapshot and 100 more", len(pubs))
	}
	for i, p := range pubs[1:] {
		var v int
		if p.Offset != uint64(201+i) || msgpack.Unmarshal(p.Data, &v) != nil || v != 201+i {
			t.Fatalf("pub #%d: offset %d data %x", i+1, p.Offset, []byte(p.Data))
		}
	}
}
