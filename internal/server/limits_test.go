package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

func TestMaxSubscriptions(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.MaxSubscriptions = 3 })
	c := h.dial("alice")
	for i := 0; i < 3; i++ {
		subscribe(t, c, uint64(10+i), fmt.Sprintf("s%d", i), nil)
	}
	if err := c.Send(&protocol.Subscribe{ID: 20, S: "s3"}); err != nil {
		t.Fatal(err)
	}
	e, err := wsclient.Wait[*protocol.ErrorReply](c, wait)
	if err != nil || e.ID != 20 || e.Code != protocol.CodeRateLimited {
		t.Fatalf("4th subscribe: %+v %v, want error 4006", e, err)
	}
	// Unsubscribing frees a place; the connection kept working.
	if err := c.Send(&protocol.Unsubscribe{ID: 21, S: "s0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Unsubscribed](c, wait); err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, 22, "s3", nil)
}

func TestMessageFlood(t *testing.T) {
	h := start(t, func(o *harnessOpts) {
		o.cfg.MessageRate = 50
		o.cfg.MessageBurst = 100
	})
	c := h.dial("flooder")
	pings := make([]protocol.Message, 400)
	for i := range pings {
		pings[i] = &protocol.Ping{}
	}
	if err := c.Send(pings...); err != nil {
		t.Fatal(err)
	}
	pongs, errs := 0, 0
	for {
		m, err := c.Next(500 * time.Millisecond)
		if err != nil {
			break
		}
		switch m := m.(type) {
		case *protocol.Pong:
			pongs++
		case *protocol.ErrorReply:
			if m.Code != protocol.CodeRateLimited {
				t.Fatalf("error %+v", m)
			}
			errs++
		}
	}
	if pongs < 95 || pongs > 130 || errs != 1 { // connect took a token too
		t.Fatalf("%d pongs and %d errors for 400 pings at burst 100: want about 100 and exactly 1", pongs, errs)
	}
	// Another client is unaffected.
	other := h.dial("bystander")
	subscribe(t, other, 2, "calm", nil)

	// Flooding on: over ten bursts dropped closes the connection with 4006.
	big := make([]protocol.Message, 1200)
	for i := range big {
		big[i] = &protocol.Ping{}
	}
	for i := 0; i < 2; i++ {
		if err := c.Send(big...); err != nil {
			break
		}
	}
	code, err := c.WaitClosed(wait)
	if err != nil || code != int(protocol.CodeRateLimited) {
		t.Fatalf("flooder closed with %d (%v), want 4006", code, err)
	}
	if err := other.Send(&protocol.Ping{}); err != nil {
		t.Fatal(err)
	}
	if _, err := wsclient.Wait[*protocol.Pong](other, wait); err != nil {
		t.Fatalf("bystander: %v", err)
	}
}

// TestLargeMessages moves a publication close to the 1 MiB frame limit in
// both directions, in both codecs: the reader must assemble it over many
// reads and the writer must send it over many writes.
func TestLargeMessages(t *testing.T) {
	h := start(t)
	for _, proto := range []string{protocol.SubprotocolMsgpack, protocol.SubprotocolJSON} {
		t.Run(proto, func(t *testing.T) {
			pub := dialTok(t, h, token(t, "big-pub"), func(o *wsclient.Options) { o.Subprotocols = []string{proto} })
			sub := dialTok(t, h, token(t, "big-sub"), func(o *wsclient.Options) { o.Subprotocols = []string{proto} })
			subscribe(t, sub, 2, "big:"+proto, nil)
			text := make([]byte, 900_000)
			for i := range text {
				text[i] = 'a' + byte(i%26)
			}
			if err := pub.Send(&protocol.Publish{ID: 3, S: "big:" + proto, Data: protocol.MustRaw(map[string]any{"text": string(text)})}); err != nil {
				t.Fatal(err)
			}
			if ack, err := wsclient.Wait[*protocol.Ack](pub, wait); err != nil || ack.Offset != 1 {
				t.Fatalf("ack %+v %v", ack, err)
			}
			p, err := wsclient.Wait[*protocol.Pub](sub, wait)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			if err := msgpack.Unmarshal(p.Data, &got); err != nil || got["text"] != string(text) {
				t.Fatalf("payload of %d bytes came back wrong (%v)", len(got["text"]), err)
			}
		})
	}
}
