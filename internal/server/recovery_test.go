package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// readPubs reads n pubs of stream from c and checks that their offsets run
// on from after without a gap and that each carries seq == offset.
func readPubs(t *testing.T, c *wsclient.Client, stream, epoch string, after uint64, n int) {
	t.Helper()
	for i := range n {
		p := nextAs[*protocol.Pub](t, c)
		want := after + uint64(i) + 1
		if p.S != stream || p.Epoch != epoch || p.Offset != want {
			t.Fatalf("pub s=%q epoch=%q offset=%d, want %q %q %d", p.S, p.Epoch, p.Offset, stream, epoch, want)
		}
		if got := seqOf(t, p.Data); got != int(want) {
			t.Fatalf("pub %d carries seq %d", want, got)
		}
	}
}

func TestRecoveryResume(t *testing.T) {
	h := start(t)
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			stream := "resume:" + codecName(codec)
			first := dialUser(t, h, "nina", codecOpts(codec))
			s := subscribe(t, first, 2, stream, nil)
			if s.Recovered != nil {
				t.Fatalf("subscribe without recover has recovered=%v", *s.Recovered)
			}
			publishSeq(t, h, stream, 1, 5) // offsets and seqs 1..5
			readPubs(t, first, stream, s.Epoch, 0, 5)
			first.Close()

			const missed = 7
			publishSeq(t, h, stream, 6, missed) // 6..12 while away

			second := dialUser(t, h, "nina", codecOpts(codec))
			r := subscribe(t, second, 3, stream, &protocol.Position{Epoch: s.Epoch, Offset: 5})
			if r.Recovered == nil || !*r.Recovered {
				t.Fatalf("subscribed %+v: want recovered true", r)
			}
			if r.Epoch != s.Epoch || r.Offset != 5+missed {
				t.Fatalf("subscribed epoch=%q offset=%d, want %q %d", r.Epoch, r.Offset, s.Epoch, 5+missed)
			}
			if len(r.Pubs) != missed {
				t.Fatalf("recovered %d pubs, want %d", len(r.Pubs), missed)
			}
			for i, p := range r.Pubs {
				want := uint64(6 + i)
				if p.Offset != want || p.Epoch != s.Epoch || p.S != stream || seqOf(t, p.Data) != int(want) || p.TS == 0 {
					t.Fatalf("recovered pub %d: %+v, want offset %d", i, p, want)
				}
			}
			// Live publications continue right after, and nothing is repeated.
			publishSeq(t, h, stream, 13, 3)
			readPubs(t, second, stream, s.Epoch, 12, 3)
			wantAlive(t, second)
		})
	}
	t.Run("client publications keep from", func(t *testing.T) {
		pub, pm := dialConnect(t, h, token(t, "oscar"))
		if err := pub.Send(&protocol.Publish{ID: 2, S: "resume:from", Data: protocol.MustRaw(1)}); err != nil {
			t.Fatal(err)
		}
		ack := nextAs[*protocol.Ack](t, pub)
		c := dialUser(t, h, "nina")
		r := subscribe(t, c, 2, "resume:from", &protocol.Position{Epoch: ack.Epoch, Offset: 0})
		if r.Recovered == nil || !*r.Recovered || len(r.Pubs) != 1 {
			t.Fatalf("subscribed %+v", r)
		}
		if f := r.Pubs[0].From; f == nil || *f != (protocol.ClientInfo{User: "oscar", Client: pm.Client}) {
			t.Fatalf("recovered pub from %+v, want oscar/%s", f, pm.Client)
		}
	})
}

func TestRecoveryNotPossible(t *testing.T) {
	h := start(t, func(o *harnessOpts) {
		o.rules = []string{"small:*=sub,pub,history;history=5", "off:*=sub,pub,history;history=off"}
	})
	// Each case publishes 10 (offsets 1..10) to a fresh stream of its kind
	// and recovers from pos(epoch).
	const top = 10
	tests := []struct {
		name      string
		kind      string // stream prefix: default history, 5 kept, or none
		pos       func(epoch string) protocol.Position
		recovered bool
		pubs      int
	}{
		{"wrong epoch", "big:", func(string) protocol.Position { return protocol.Position{Epoch: "not-the-epoch", Offset: 3} }, false, 0},
		{"wrong epoch at top", "big:", func(string) protocol.Position { return protocol.Position{Epoch: "not-the-epoch", Offset: top} }, false, 0},
		{"offset ahead of top", "big:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: top + 5} }, false, 0},
		{"at top", "big:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: top} }, true, 0},
		{"from zero", "big:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: 0} }, true, 10},
		{"older than window", "small:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: 2} }, false, 0},
		{"one before window", "small:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: 4} }, false, 0},
		{"window edge", "small:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: 5} }, true, 5},
		{"history off", "off:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: 8} }, false, 0},
		{"history off at top", "off:", func(e string) protocol.Position { return protocol.Position{Epoch: e, Offset: top} }, true, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream := fmt.Sprintf("%s%d", tt.kind, i)
			res := publishSeq(t, h, stream, 1, top)
			epoch := res[0].Epoch
			pos := tt.pos(epoch)
			c := dialUser(t, h, "pia")
			r := subscribe(t, c, 2, stream, &pos)
			if r.Recovered == nil {
				t.Fatalf("subscribed %+v has no recovered, though sub carried recover", r)
			}
			if *r.Recovered != tt.recovered || r.Epoch != epoch || r.Offset != top || len(r.Pubs) != tt.pubs {
				t.Fatalf("subscribed recovered=%v epoch=%q offset=%d pubs=%d, want %v %q %d %d", *r.Recovered, r.Epoch, r.Offset, len(r.Pubs), tt.recovered, epoch, top, tt.pubs)
			}
			for i, p := range r.Pubs {
				if p.Offset != pos.Offset+uint64(i)+1 {
					t.Fatalf("recovered pub %d has offset %d", i, p.Offset)
				}
			}
			// Whatever the outcome, live pubs continue from the reported top.
			publishSeq(t, h, stream, top+1, 1)
			readPubs(t, c, stream, epoch, top, 1)
		})
	}
}

// Sizes of one round of TestRecoveryRace.
const (
	raceAPIWorkers    = 4
	raceAPIBatches    = 30
	raceAPIBatch      = 3
	raceClientWorkers = 3
	raceClientPubs    = 80
	raceSubscribers   = 24
	// raceTotal is the final offset: one seed publication, then the rest.
	raceTotal = 1 + raceAPIWorkers*raceAPIBatches*raceAPIBatch + raceClientWorkers*raceClientPubs
)

func TestRecoveryRace(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) { recoveryRace(t, uint64(round)) })
	}
}

// recoveryRace publishes from several goroutines through the API and client
// pubs while clients subscribe, most of them recovering from various
// positions. Every client must see one contiguous run of offsets
// (subscribed.pubs, then live pubs) up to the final offset.
func recoveryRace(t *testing.T, seed uint64) {
	h := start(t, func(o *harnessOpts) { o.rules = []string{"race:*=sub,pub,history;history=5000"} })
	const stream = "race:x"
	seedRes := publishSeq(t, h, stream, 1, 1)
	epoch := seedRes[0].Epoch
	var top atomic.Uint64 // highest offset known to be published
	top.Store(seedRes[0].Offset)
	raise := func(off uint64) {
		for {
			cur := top.Load()
			if off <= cur || top.CompareAndSwap(cur, off) {
				return
			}
		}
	}

	// Dial everything up front: t.Fatal must not run off the test goroutine.
	pubClients := make([]*wsclient.Client, raceClientWorkers)
	for i := range pubClients {
		pubClients[i] = dialUser(t, h, fmt.Sprintf("pub%d", i), codecOpts(protocol.Codec(i%2)))
	}
	subClients := make([]*wsclient.Client, raceSubscribers)
	for i := range subClients {
		subClients[i] = dialUser(t, h, fmt.Sprintf("sub%d", i), codecOpts(protocol.Codec(i%2)))
	}

	var wg sync.WaitGroup
	errs := make(chan error, raceAPIWorkers+raceClientWorkers+raceSubscribers)
	for w := range raceAPIWorkers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			for range raceAPIBatches {
				res, err := racePublishAPI(h, stream, raceAPIBatch)
				if err != nil {
					errs <- err
					return
				}
				for _, r := range res {
					if r.Epoch != epoch {
						errs <- fmt.Errorf("API publish in epoch %q, want %q", r.Epoch, epoch)
						return
					}
					raise(r.Offset)
				}
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
			}
		})
	}
	for w, c := range pubClients {
		wg.Go(func() {
			for i := range raceClientPubs {
				id := uint64(i + 1)
				if err := c.Send(&protocol.Publish{ID: id, S: stream, Data: protocol.MustRaw(map[string]int{"w": w, "i": i})}); err != nil {
					errs <- err
					return
				}
				m, err := wsclient.Wait[*protocol.Ack](c, wait)
				if err != nil {
					errs <- fmt.Errorf("publisher %d: %w", w, err)
					return
				}
				if m.ID != id || m.Epoch != epoch || m.S != stream {
					errs <- fmt.Errorf("publisher %d: ack %+v, want id %d", w, m, id)
					return
				}
				raise(m.Offset)
			}
		})
	}
	rng := rand.New(rand.NewPCG(seed, 99))
	for i, c := range subClients {
		// Start once a share of the publications is out, so subscribes are
		// spread over the publishing; recover from zero, the newest known
		// offset, or somewhere between.
		threshold := uint64(1 + rng.IntN(raceTotal*3/4))
		mode := i % 4
		frac := rng.Float64()
		wg.Go(func() {
			deadline := time.Now().Add(wait)
			for top.Load() < threshold && time.Now().Before(deadline) {
				time.Sleep(200 * time.Microsecond)
			}
			var rec *protocol.Position
			switch known := top.Load(); mode {
			case 1:
				rec = &protocol.Position{Epoch: epoch, Offset: 0}
			case 2:
				rec = &protocol.Position{Epoch: epoch, Offset: known}
			case 3:
				rec = &protocol.Position{Epoch: epoch, Offset: uint64(frac * float64(known))}
			}
			if err := raceSubscriber(c, stream, epoch, rec); err != nil {
				errs <- fmt.Errorf("subscriber %d (recover %+v): %w", i, rec, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if got := top.Load(); got != raceTotal {
		t.Fatalf("top offset %d, want %d", got, raceTotal)
	}
	// Nothing more is queued for anyone: the next pub each subscriber sees is
	// a fresh one after the final offset.
	publishSeq(t, h, stream, 0, 1)
	for i, c := range subClients {
		if p := nextAs[*protocol.Pub](t, c); p.Offset != raceTotal+1 {
			t.Fatalf("subscriber %d: after the final offset got offset %d, want %d", i, p.Offset, raceTotal+1)
		}
	}
}

// raceSubscriber subscribes c (recovering from rec when set) and reads until
// the final offset, checking that the offsets it sees are contiguous.
func raceSubscriber(c *wsclient.Client, stream, epoch string, rec *protocol.Position) error {
	if err := c.Send(&protocol.Subscribe{ID: 2, S: stream, Recover: rec}); err != nil {
		return err
	}
	var last uint64
	check := func(p *protocol.Pub, where string) error {
		if p.S != stream || p.Epoch != epoch {
			return fmt.Errorf("%s pub on %q epoch %q", where, p.S, p.Epoch)
		}
		if p.Offset != last+1 {
			return fmt.Errorf("%s pub offset %d after %d: %s", where, p.Offset, last, gapKind(p.Offset, last))
		}
		last = p.Offset
		return nil
	}
	subscribed := false
	for last < raceTotal || !subscribed {
		m, err := c.Next(wait)
		if err != nil {
			return fmt.Errorf("after offset %d (subscribed %v): %w", last, subscribed, err)
		}
		switch m := m.(type) {
		case *protocol.Ping:
		case *protocol.Subscribed:
			if subscribed {
				return errors.New("second subscribed")
			}
			subscribed = true
			if m.ID != 2 || m.Epoch != epoch {
				return fmt.Errorf("subscribed %+v", m)
			}
			if rec == nil {
				if m.Recovered != nil || len(m.Pubs) > 0 {
					return fmt.Errorf("plain subscribe got recovered=%v and %d pubs", m.Recovered != nil, len(m.Pubs))
				}
				last = m.Offset
				continue
			}
			if m.Recovered == nil || !*m.Recovered {
				return fmt.Errorf("not recovered from %d (top %d) though history holds everything", rec.Offset, m.Offset)
			}
			last = rec.Offset
			for i := range m.Pubs {
				if err := check(&m.Pubs[i], "recovered"); err != nil {
					return err
				}
			}
			if last != m.Offset {
				return fmt.Errorf("recovered pubs end at %d, subscribed offset is %d", last, m.Offset)
			}
		case *protocol.Pub:
			if !subscribed {
				return fmt.Errorf("pub %d before subscribed", m.Offset)
			}
			if err := check(m, "live"); err != nil {
				return err
			}
		case *protocol.ErrorReply:
			return fmt.Errorf("error %d: %s", m.Code, m.Reason)
		default:
			return fmt.Errorf("unexpected %s %+v", m.Type(), m)
		}
	}
	return nil
}

func gapKind(got, last uint64) string {
	if got <= last {
		return "duplicate or reordered"
	}
	return fmt.Sprintf("gap of %d", got-last-1)
}

// racePublishAPI publishes n items to stream through the API; it is safe
// off the test goroutine.
func racePublishAPI(h *harness, stream string, n int) ([]apiResult, error) {
	req, err := http.NewRequest("POST", h.HTTP+"/api/publish", strings.NewReader(seqBatch(stream, 0, n)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := apiClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("API publish: %d %s", resp.StatusCode, body)
	}
	var r struct{ Results []apiResult }
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if len(r.Results) != n {
		return nil, fmt.Errorf("API publish: %d results for %d items", len(r.Results), n)
	}
	// Other publishers may interleave, but a batch keeps its order.
	for i := 1; i < n; i++ {
		if r.Results[i].Offset <= r.Results[i-1].Offset {
			return nil, fmt.Errorf("API batch offsets %d then %d", r.Results[i-1].Offset, r.Results[i].Offset)
		}
	}
	return r.Results, nil
}
