package server_test

import (
	"testing"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

func TestSmokePubSub(t *testing.T) {
	h := start(t)
	a := h.dial("alice")
	b := h.dial("bob", func(o *wsclient.Options) { o.Subprotocols = []string{protocol.SubprotocolJSON} })
	sa := subscribe(t, a, 2, "room", nil)
	subscribe(t, b, 2, "room", nil)
	if err := a.Send(&protocol.Publish{ID: 3, S: "room", Data: protocol.MustRaw(map[string]any{"text": "hi"})}); err != nil {
		t.Fatal(err)
	}
	ack, err := wsclient.Wait[*protocol.Ack](a, wait)
	if err != nil || ack.ID != 3 || ack.Offset != sa.Offset+1 {
		t.Fatalf("ack %+v %v", ack, err)
	}
	p, err := wsclient.Wait[*protocol.Pub](b, wait)
	if err != nil {
		t.Fatal(err)
	}
	if p.From == nil || p.From.User != "alice" || p.Offset != ack.Offset {
		t.Fatalf("pub %+v", p)
	}
	code, body := h.apiPublish(`{"stream":"room","data":{"n":1}}`)
	if code != 200 {
		t.Fatalf("api publish %d %s", code, body)
	}
	p, err = wsclient.Wait[*protocol.Pub](b, wait)
	if err != nil || p.From != nil || p.Offset != ack.Offset+1 {
		t.Fatalf("api pub %+v %v", p, err)
	}
}

func TestSmokePresence(t *testing.T) {
	h := start(t)
	a := h.dial("alice")
	b := h.dial("bob")
	if err := a.Send(&protocol.Subscribe{ID: 2, S: "doc", Presence: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Subscribed](a, wait); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(&protocol.Subscribe{ID: 2, S: "doc", Presence: true, Join: protocol.MustRaw(map[string]any{"x": 1})}); err != nil {
		t.Fatal(err)
	}
	sb, err := wsclient.Wait[*protocol.Subscribed](b, wait)
	if err != nil {
		t.Fatal(err)
	}
	_ = sb
	p, err := wsclient.Wait[*protocol.Presence](a, wait)
	if err != nil || len(p.Joins) != 1 || p.Joins[0].User != "bob" {
		t.Fatalf("presence %+v %v", p, err)
	}
	if err := b.Send(&protocol.Update{S: "doc", State: protocol.MustRaw(map[string]any{"x": 2})}); err != nil {
		t.Fatal(err)
	}
	p, err = wsclient.Wait[*protocol.Presence](a, wait)
	if err != nil || len(p.Updates) != 1 {
		t.Fatalf("update %+v %v", p, err)
	}
	if err := b.Send(&protocol.Leave{ID: 9, S: "doc"}); err != nil {
		t.Fatal(err)
	}
	p, err = wsclient.Wait[*protocol.Presence](a, wait)
	if err != nil || len(p.Leaves) != 1 || p.Leaves[0].User != "bob" {
		t.Fatalf("leave %+v %v", p, err)
	}
}
