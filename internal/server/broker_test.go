package server_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// The server's side of the broker seam: what it does with what a broker
// (any broker, several nodes) hands it, driven here through the exported
// Handler methods.

// expectDisconnect waits for disconnect with code and reconnect true.
func expectDisconnect(t *testing.T, c *wsclient.Client, code protocol.Code) {
	t.Helper()
	d, err := wsclient.Wait[*protocol.Disconnect](c, wait)
	if err != nil {
		t.Fatalf("waiting for disconnect %d: %v", code, err)
	}
	if d.Code != code || !d.Reconnect {
		t.Fatalf("disconnect %+v, want %d with reconnect", d, code)
	}
}

// expectPub waits for the next pub and checks its position.
func expectPub(t *testing.T, c *wsclient.Client, epoch string, offset uint64) {
	t.Helper()
	p, err := wsclient.Wait[*protocol.Pub](c, wait)
	if err != nil {
		t.Fatal(err)
	}
	if p.Epoch != epoch || p.Offset != offset {
		t.Fatalf("pub %s/%d, want %s/%d", p.Epoch, p.Offset, epoch, offset)
	}
}

// TestLiveGap: a live publication that skips offsets closes the connection
// with 4010 (the client recovers on reconnect) instead of being delivered.
func TestLiveGap(t *testing.T) {
	h := start(t)
	c := h.dial("alice")
	s := subscribe(t, c, 1, "s", nil)
	h.srv.BrokerHandler().HandlePublication("s", s.Epoch, storage.Publication{Offset: s.Offset + 1, Data: protocol.MustRaw(1)})
	expectPub(t, c, s.Epoch, s.Offset+1)
	h.srv.BrokerHandler().HandlePublication("s", s.Epoch, storage.Publication{Offset: s.Offset + 1, Data: protocol.MustRaw(1)}) // again: dropped
	h.srv.BrokerHandler().HandlePublication("s", s.Epoch, storage.Publication{Offset: s.Offset + 3, Data: protocol.MustRaw(3)})
	expectDisconnect(t, c, protocol.CodeInsufficientState)
	if code, err := c.WaitClosed(wait); err != nil || code != int(protocol.CodeInsufficientState) {
		t.Errorf("close frame %d (%v), want 4010", code, err)
	}
}

// TestLiveNewEpoch: a new epoch that starts at offset 1 is delivered (the
// stream's history expired while it was idle); one that does not is a gap.
func TestLiveNewEpoch(t *testing.T) {
	h := start(t)
	c := h.dial("alice")
	s := subscribe(t, c, 1, "s", nil)
	h.srv.BrokerHandler().HandlePublication("s", "fresh", storage.Publication{Offset: 1, Data: protocol.MustRaw(1)})
	expectPub(t, c, "fresh", 1)
	h.srv.BrokerHandler().HandlePublication("s", "fresh", storage.Publication{Offset: 2, Data: protocol.MustRaw(2)})
	expectPub(t, c, "fresh", 2)
	h.srv.BrokerHandler().HandlePublication("s", s.Epoch, storage.Publication{Offset: 9, Data: protocol.MustRaw(9)})
	expectDisconnect(t, c, protocol.CodeInsufficientState)
}

// TestHandleLost: lost publications close every subscriber of the stream
// with 4010; lost ephemeral messages only those that receive presence.
// Other streams' subscribers are left alone.
func TestHandleLost(t *testing.T) {
	h := start(t)
	plain, pres, other := h.dial("plain"), h.dial("pres"), h.dial("other")
	subscribe(t, plain, 1, "s", nil)
	if err := pres.Send(&protocol.Subscribe{ID: 1, S: "s", Presence: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Subscribed](pres, wait); err != nil {
		t.Fatal(err)
	}
	subscribe(t, other, 1, "t", nil)

	h.srv.BrokerHandler().HandleLost("s", broker.LostEphemeral)
	expectDisconnect(t, pres, protocol.CodeInsufficientState)
	// plain stays: a ping answered proves it is still served.
	if err := plain.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Pong](plain, wait); err != nil {
		t.Fatalf("a subscriber without presence after lost ephemeral messages: %v", err)
	}

	h.srv.BrokerHandler().HandleLost("s", broker.LostPublications|broker.LostEphemeral)
	expectDisconnect(t, plain, protocol.CodeInsufficientState)
	if err := other.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Pong](other, wait); err != nil {
		t.Fatalf("a subscriber of another stream: %v", err)
	}
}

// TestHandleEphemeral: a whisper and a presence diff relayed by another
// node reach this node's subscribers as that node sent them, in both wire
// formats; the presence diff only those that asked for presence.
func TestHandleEphemeral(t *testing.T) {
	h := start(t)
	mp := h.dial("mp")
	js := h.dial("js", func(o *wsclient.Options) { o.NoSubprotocol = true })
	for _, c := range []*wsclient.Client{mp, js} {
		if err := c.Send(&protocol.Subscribe{ID: 1, S: "s", Presence: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := wsclient.Wait[*protocol.Subscribed](c, wait); err != nil {
			t.Fatal(err)
		}
	}
	plain := h.dial("plain")
	subscribe(t, plain, 1, "s", nil)

	w := &protocol.Whisper{S: "s", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 1}), From: protocol.ClientInfo{User: "remote", Client: "r1"}}
	payload, err := protocol.AppendMessage(protocol.Msgpack, nil, w)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.BrokerHandler().HandleEphemeral("s", payload)
	h.srv.BrokerHandler().HandleEphemeral("other-stream", payload) // names another stream: ignored
	for _, c := range []*wsclient.Client{mp, js, plain} {
		got, err := wsclient.Wait[*protocol.Whisper](c, wait)
		if err != nil {
			t.Fatal(err)
		}
		if got.From != w.From || got.Ev != "cursor" || got.S != "s" {
			t.Errorf("whisper %+v, want %+v", got, w)
		}
	}

	d := &protocol.Presence{S: "s", Leaves: []protocol.ClientInfo{{User: "remote", Client: "r1"}}}
	if payload, err = protocol.AppendMessage(protocol.Msgpack, nil, d); err != nil {
		t.Fatal(err)
	}
	h.srv.BrokerHandler().HandleEphemeral("s", payload)
	for _, c := range []*wsclient.Client{mp, js} {
		got, err := wsclient.Wait[*protocol.Presence](c, wait)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Leaves) != 1 || got.Leaves[0] != d.Leaves[0] {
			t.Errorf("presence %+v, want %+v", got, d)
		}
	}
	h.srv.BrokerHandler().HandleEphemeral("s", []byte{0xc1}) // garbage: logged, dropped
	// plain did not get the diff: the next message is the answer to a ping.
	if err := plain.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	m, err := plain.Next(wait)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*protocol.Pong); !ok {
		t.Errorf("a subscriber without presence got %T", m)
	}
}

// TestReadyzCheck: /readyz answers 503 while the backend check fails.
func TestReadyzCheck(t *testing.T) {
	var down atomic.Bool
	h := start(t, func(o *harnessOpts) {
		o.deps.Check = func(context.Context) error {
			if down.Load() {
				return errors.New("redis: connection refused")
			}
			return nil
		}
	})
	status := func() int {
		resp, err := http.Get(h.HTTP + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := status(); code != http.StatusOK {
		t.Errorf("/readyz = %d with the backend up", code)
	}
	down.Store(true)
	if code := status(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d with the backend down, want 503", code)
	}
}
