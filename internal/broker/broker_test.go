package broker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/huddle-rt/huddle/storage"
)

// recorder is a Handler that keeps the data it was given, per stream.
type recorder struct {
	mu   sync.Mutex
	data map[string][]string
}

func (r *recorder) HandlePublication(stream, _ string, pub storage.Publication) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.data == nil {
		r.data = make(map[string][]string)
	}
	r.data[stream] = append(r.data[stream], string(pub.Data))
}
func (r *recorder) HandleEphemeral(string, []byte) {}
func (r *recorder) HandleLost(string, Lost)        {}

// failingLog fails every Append to stream bad.
type failingLog struct {
	storage.Log
	bad string
}

var errBroken = errors.New("broken")

func (l failingLog) Append(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error) {
	if stream == l.bad {
		return storage.Publication{}, storage.Position{}, errBroken
	}
	return l.Log.Append(ctx, stream, pub, opts)
}

func TestMemory_PublishBatch_Order(t *testing.T) {
	rec := &recorder{}
	m := NewMemory(storage.NewMemoryLog(), rec)
	streams := []string{"a", "b", "c", "d"}
	items := make([]Item, 1000)
	for i := range items {
		s := streams[i%len(streams)]
		items[i] = Item{Stream: s, Pub: storage.Publication{Data: []byte(strconv.Itoa(i))}, Opts: storage.Options{Size: 1000}}
	}
	res, err := m.PublishBatch(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if want := uint64(i/len(streams) + 1); r.Err != nil || r.Pub.Offset != want || r.Pos.Offset != want {
			t.Fatalf("item %d: %+v, want offset %d", i, r, want)
		}
	}
	for k, s := range streams {
		got := rec.data[s]
		if len(got) != 250 {
			t.Fatalf("stream %s: %d delivered", s, len(got))
		}
		for j, d := range got {
			if d != strconv.Itoa(j*len(streams)+k) {
				t.Fatalf("stream %s: delivery %d is item %s", s, j, d)
			}
		}
	}
}

func TestMemory_PublishBatch_Failure(t *testing.T) {
	rec := &recorder{}
	m := NewMemory(failingLog{Log: storage.NewMemoryLog(), bad: "bad"}, rec)
	items := []Item{{Stream: "a"}, {Stream: "b"}, {Stream: "bad"}, {Stream: "a"}, {Stream: "c"}}
	res, err := m.PublishBatch(t.Context(), items)
	if !errors.Is(err, errBroken) || err.Error() != "item 2: broken" {
		t.Fatalf("error %v, want item 2's", err)
	}
	for i, r := range res {
		switch {
		case i < 2 && (r.Err != nil || r.Pub.Offset != 1):
			t.Errorf("item %d: %+v, want stored", i, r)
		case i == 2 && !errors.Is(r.Err, errBroken):
			t.Errorf("item 2: %v, want the log's error", r.Err)
		case i > 2 && !errors.Is(r.Err, ErrSkipped):
			t.Errorf("item %d: %v, want ErrSkipped", i, r.Err)
		}
	}
	if len(rec.data["a"]) != 1 || len(rec.data["c"]) != 0 {
		t.Errorf("delivered %v, want only the items before the failure", rec.data)
	}
}
