package server_test

import (
	"testing"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
	"github.com/vmihailenco/msgpack/v5"
)

// docRules makes doc:* durable documents next to ordinary streams.
func docRules(o *harnessOpts) { o.rules = append(o.rules, "doc:=;document=on") }

// readDoc reads a document as a subscriber receives it after subscribed:
// the pubs in the reply, then pub messages up to the reply's offset. It
// returns the snapshot's data ("" for none) and the seqs after it, and
// checks that offsets run on without a gap from the snapshot (or 1).
func readDoc(t *testing.T, c *wsclient.Client, s *protocol.Subscribed) (snap string, seqs []int) {
	t.Helper()
	pubs := append([]protocol.Pub(nil), s.Pubs...)
	last := uint64(0)
	if len(pubs) > 0 {
		last = pubs[len(pubs)-1].Offset
	}
	for last < s.Offset {
		p := nextAs[*protocol.Pub](t, c)
		pubs = append(pubs, *p)
		last = p.Offset
	}
	next := uint64(1)
	for i, p := range pubs {
		if p.Snap != nil {
			if i != 0 || !*p.Snap {
				t.Fatalf("snapshot at index %d (snap=%v)", i, *p.Snap)
			}
			if err := msgpack.Unmarshal(p.Data, &snap); err != nil {
				t.Fatalf("snapshot data: %v", err)
			}
			next = p.Offset + 1
			continue
		}
		if p.Offset != next || p.Epoch != s.Epoch {
			t.Fatalf("pub #%d offset %d epoch %q, want %d %q", i, p.Offset, p.Epoch, next, s.Epoch)
		}
		next++
		seqs = append(seqs, seqOf(t, p.Data))
	}
	return snap, seqs
}

func wantSeqs(t *testing.T, got []int, first, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d publications, want %d", len(got), n)
	}
	for i, s := range got {
		if s != first+i {
			t.Fatalf("publication #%d has seq %d, want %d", i, s, first+i)
		}
	}
}

// A document keeps every publication, past the history bounds, and a
// subscriber that does not recover gets all of it before live ones.
func TestDocumentLateJoiner(t *testing.T) {
	h := start(t, docRules, func(o *harnessOpts) { o.auth.DefaultHistorySize = 10 })
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			stream := "doc:late:" + codecName(codec)
			for i := 0; i < 3000; i += 500 {
				publishSeq(t, h, stream, i+1, 500)
			}
			c := dialUser(t, h, "late", codecOpts(codec))
			s := subscribe(t, c, 2, stream, nil)
			if s.Recovered != nil || s.Offset != 3000 || !s.Doc {
				t.Fatalf("subscribed recovered=%v offset=%d doc=%v, want no recovered, offset 3000, doc", s.Recovered, s.Offset, s.Doc)
			}
			snap, seqs := readDoc(t, c, s)
			if snap != "" {
				t.Fatalf("snapshot %q before any compact", snap)
			}
			wantSeqs(t, seqs, 1, 3000)
			publishSeq(t, h, stream, 3001, 2)
			readPubs(t, c, stream, s.Epoch, 3000, 2)
			wantAlive(t, c)
		})
	}
	// An ordinary stream on the same server keeps its bound.
	publishSeq(t, h, "chat:bounded", 1, 20)
	c := dialUser(t, h, "late")
	s := subscribe(t, c, 2, "chat:bounded", &protocol.Position{Epoch: "", Offset: 0})
	if s.Recovered == nil || *s.Recovered || s.Doc {
		t.Fatalf("ordinary stream recovered %v from 0 past its bound of 10 (doc %v)", s.Recovered, s.Doc)
	}
}

// A snapshot replaces the publications through its offset: joiners get it
// first, then the tail; recovery from before it goes through it, recovery
// from after it does not.
func TestDocumentCompact(t *testing.T) {
	h := start(t, docRules)
	const stream = "doc:compact"
	res := publishSeq(t, h, stream, 1, 10)
	epoch := res[0].Epoch
	w := dialUser(t, h, "writer")
	if err := w.Send(&protocol.Compact{ID: 5, S: stream, Epoch: epoch, Offset: 6, Data: protocol.MustRaw("state@6")}); err != nil {
		t.Fatal(err)
	}
	ack := nextAs[*protocol.Ack](t, w)
	if ack.ID != 5 || ack.Offset != 6 || ack.Epoch != epoch {
		t.Fatalf("compact ack %+v", ack)
	}

	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		c := dialUser(t, h, "joiner", codecOpts(codec))
		s := subscribe(t, c, 2, stream, nil)
		snap, seqs := readDoc(t, c, s)
		if snap != "state@6" {
			t.Fatalf("%s: snapshot %q, want state@6", codecName(codec), snap)
		}
		wantSeqs(t, seqs, 7, 4)
	}

	c := dialUser(t, h, "recoverer")
	s := subscribe(t, c, 2, stream, &protocol.Position{Epoch: epoch, Offset: 3})
	if s.Recovered == nil || !*s.Recovered {
		t.Fatalf("recover from before the snapshot: recovered %v", s.Recovered)
	}
	snap, seqs := readDoc(t, c, s)
	if snap != "state@6" {
		t.Fatalf("recover from 3: snapshot %q", snap)
	}
	wantSeqs(t, seqs, 7, 4)

	c2 := dialUser(t, h, "recoverer")
	s = subscribe(t, c2, 2, stream, &protocol.Position{Epoch: epoch, Offset: 8})
	if s.Recovered == nil || !*s.Recovered || len(s.Pubs) != 2 || s.Pubs[0].Snap != nil || s.Pubs[0].Offset != 9 {
		t.Fatalf("recover from 8: %+v", s)
	}

	// A position from an epoch that is gone gets the whole document,
	// with recovered: false.
	c3 := dialUser(t, h, "stranger")
	s = subscribe(t, c3, 2, stream, &protocol.Position{Epoch: "0123456789abcdef", Offset: 8})
	if s.Recovered == nil || *s.Recovered {
		t.Fatalf("recover from another epoch: recovered %v", s.Recovered)
	}
	snap, seqs = readDoc(t, c3, s)
	if snap != "state@6" {
		t.Fatalf("recover from another epoch: snapshot %q", snap)
	}
	wantSeqs(t, seqs, 7, 4)

	// history starts with the snapshot too.
	if err := c3.Send(&protocol.HistoryRequest{ID: 9, S: stream}); err != nil {
		t.Fatal(err)
	}
	hist := nextAs[*protocol.History](t, c3)
	if len(hist.Pubs) != 5 || hist.Pubs[0].Snap == nil || hist.Pubs[0].Offset != 6 {
		t.Fatalf("history: %d pubs, first %+v", len(hist.Pubs), hist.Pubs[0])
	}
}

// Every CompactEvery publications the publisher is asked for a snapshot.
func TestDocumentCompactHint(t *testing.T) {
	h := start(t, docRules, func(o *harnessOpts) { o.cfg.CompactEvery = 4 })
	w := dialUser(t, h, "writer")
	for i := 1; i <= 9; i++ {
		for _, stream := range []string{"doc:hint", "chat:hint"} {
			if err := w.Send(&protocol.Publish{ID: uint64(i), S: stream, Data: protocol.MustRaw(i)}); err != nil {
				t.Fatal(err)
			}
			ack := nextAs[*protocol.Ack](t, w)
			want := stream == "doc:hint" && i%4 == 0
			if ack.Compact != want {
				t.Fatalf("%s ack of offset %d: compact %v, want %v", stream, ack.Offset, ack.Compact, want)
			}
		}
	}
}

func TestDocumentCompactRefused(t *testing.T) {
	h := start(t, docRules, func(o *harnessOpts) { o.rules = append(o.rules, "doc:ro:=sub;deny=pub") })
	res := publishSeq(t, h, "doc:refused", 1, 3)
	epoch := res[0].Epoch
	w := dialUser(t, h, "writer")
	cases := []struct {
		name string
		m    protocol.Compact
		code protocol.Code
	}{
		{"not a document", protocol.Compact{S: "chat:x", Epoch: epoch, Offset: 1, Data: protocol.MustRaw("s")}, protocol.CodeBadRequest},
		{"past the top", protocol.Compact{S: "doc:refused", Epoch: epoch, Offset: 4, Data: protocol.MustRaw("s")}, protocol.CodeBadRequest},
		{"other epoch", protocol.Compact{S: "doc:refused", Epoch: "0123456789abcdef", Offset: 2, Data: protocol.MustRaw("s")}, protocol.CodeInsufficientState},
		{"no data", protocol.Compact{S: "doc:refused", Epoch: epoch, Offset: 2}, protocol.CodeBadRequest},
		{"offset 0", protocol.Compact{S: "doc:refused", Epoch: epoch, Data: protocol.MustRaw("s")}, protocol.CodeBadRequest},
		{"no pub op", protocol.Compact{S: "doc:ro:1", Epoch: epoch, Offset: 1, Data: protocol.MustRaw("s")}, protocol.CodeForbidden},
	}
	for i, tc := range cases {
		tc.m.ID = uint64(10 + i)
		if err := w.Send(&tc.m); err != nil {
			t.Fatal(err)
		}
		e := wantError(t, w, tc.m.ID, tc.code)
		t.Logf("%s: %s", tc.name, e.Reason)
	}
	// Nothing changed: a joiner gets the three publications, no snapshot.
	c := dialUser(t, h, "joiner")
	s := subscribe(t, c, 2, "doc:refused", nil)
	snap, seqs := readDoc(t, c, s)
	if snap != "" {
		t.Fatalf("snapshot %q after refused compacts", snap)
	}
	wantSeqs(t, seqs, 1, 3)
	wantAlive(t, w)
}

// A document at its cap refuses publications with 4005 until a snapshot
// makes room; nothing is evicted.
func TestDocumentFull(t *testing.T) {
	log := storage.NewMemoryLogWith(storage.MemoryConfig{MaxDocumentBytes: 2000})
	t.Cleanup(func() { log.Close() })
	h := start(t, docRules, func(o *harnessOpts) { o.deps.Log = log })
	w := dialUser(t, h, "writer")
	var epoch string
	full := 0
	for i := 1; i <= 30 && full == 0; i++ {
		if err := w.Send(&protocol.Publish{ID: uint64(i), S: "doc:full", Data: protocol.MustRaw(map[string]any{"seq": i, "pad": "0123456789012345678901234567890123456789"})}); err != nil {
			t.Fatal(err)
		}
		switch m := nextMsg(t, w).(type) {
		case *protocol.Ack:
			epoch = m.Epoch
		case *protocol.ErrorReply:
			if m.Code != protocol.CodeTooLarge || m.ID != uint64(i) {
				t.Fatalf("publish #%d: error %d %q", i, m.Code, m.Reason)
			}
			full = i
		default:
			t.Fatalf("publish #%d: got %s", i, m.Type())
		}
	}
	if full == 0 {
		t.Fatal("the document never filled up")
	}
	if err := w.Send(&protocol.Compact{ID: 100, S: "doc:full", Epoch: epoch, Offset: uint64(full - 1), Data: protocol.MustRaw("small")}); err != nil {
		t.Fatal(err)
	}
	nextAs[*protocol.Ack](t, w)
	if err := w.Send(&protocol.Publish{ID: 101, S: "doc:full", Data: protocol.MustRaw(map[string]any{"seq": full})}); err != nil {
		t.Fatal(err)
	}
	if ack := nextAs[*protocol.Ack](t, w); ack.Offset != uint64(full) {
		t.Fatalf("publish after compact: offset %d, want %d (the refused one was not numbered)", ack.Offset, full)
	}
	c := dialUser(t, h, "joiner")
	s := subscribe(t, c, 2, "doc:full", nil)
	snap, seqs := readDoc(t, c, s)
	if snap != "small" {
		t.Fatalf("snapshot %q", snap)
	}
	wantSeqs(t, seqs, full, 1)
}
