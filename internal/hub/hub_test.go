package hub

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

type recorder struct {
	format int
	mu     sync.Mutex
	got    [][]byte
	n      atomic.Int64
}

func (r *recorder) Format() int { return r.format }
func (r *recorder) Deliver(m Message, frame []byte) {
	r.n.Add(1)
	r.mu.Lock()
	r.got = append(r.got, frame)
	r.mu.Unlock()
}

func TestBroadcastEncodesOncePerFormat(t *testing.T) {
	h := New()
	var subs []*recorder
	for i := 0; i < 10; i++ {
		r := &recorder{format: i % 2}
		subs = append(subs, r)
		h.Subscribe("s", r)
	}
	var encodes [MaxFormats]int
	f := NewFrames(func(format int) []byte {
		encodes[format]++
		return []byte(fmt.Sprintf("f%d", format))
	})
	if n := h.Broadcast("s", Message{Offset: 1}, f, subs[0]); n != 9 {
		t.Fatalf("delivered to %d, want 9", n)
	}
	if encodes[0] != 1 || encodes[1] != 1 {
		t.Fatalf("encodes = %v, want one per format", encodes)
	}
	if subs[0].n.Load() != 0 {
		t.Fatal("skipped subscriber got the message")
	}
	for i, r := range subs[1:] {
		if string(r.got[0]) != fmt.Sprintf("f%d", r.format) {
			t.Errorf("sub %d got %q", i+1, r.got[0])
		}
	}
	// The same bytes are shared by every subscriber of a format.
	if &subs[2].got[0][0] != &subs[4].got[0][0] {
		t.Error("subscribers of one format got different buffers")
	}
}

func TestSubscribeUnsubscribe(t *testing.T) {
	h := New()
	a, b := &recorder{}, &recorder{}
	if !h.Subscribe("s", a) {
		t.Fatal("first subscribe not reported first")
	}
	if h.Subscribe("s", b) || h.Subscribe("s", a) {
		t.Fatal("later subscribe reported first")
	}
	if n := h.Subscribers("s"); n != 2 {
		t.Fatalf("subscribers = %d", n)
	}
	if h.Unsubscribe("s", a) {
		t.Fatal("unsubscribe of one of two reported last")
	}
	if h.Unsubscribe("s", a) {
		t.Fatal("double unsubscribe reported last")
	}
	if !h.Unsubscribe("s", b) {
		t.Fatal("last unsubscribe not reported")
	}
	if s, n := h.Stats(); s != 0 || n != 0 {
		t.Fatalf("stats = %d, %d", s, n)
	}
}

func TestConcurrentChurn(t *testing.T) {
	h := New()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &recorder{}
			for i := 0; i < 1000; i++ {
				name := fmt.Sprintf("s%d", i%10)
				h.Subscribe(name, r)
				h.Broadcast(name, Message{}, NewFrames(func(int) []byte { return nil }), nil)
				h.Unsubscribe(name, r)
			}
		}()
	}
	wg.Wait()
	if s, n := h.Stats(); s != 0 || n != 0 {
		t.Fatalf("stats after churn = %d, %d", s, n)
	}
}

type sink struct{ format int }

func (s *sink) Format() int                     { return s.format }
func (s *sink) Deliver(m Message, frame []byte) {}

func BenchmarkHub_Broadcast(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("subs=%d", n), func(b *testing.B) {
			h := New()
			for i := 0; i < n; i++ {
				h.Subscribe("s", &sink{format: i % 2})
			}
			payload := []byte("0123456789")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f := NewFrames(func(int) []byte { return payload })
				h.Broadcast("s", Message{Offset: uint64(i)}, f, nil)
			}
		})
	}
}
