// Package occupancy tells, across the nodes of a cluster, when a key (a
// stream with subscribers, a user with connections) becomes held by its
// first node and when its last node lets go: each exactly once in the
// cluster, including for the keys of a node that died.
//
// A Store keeps, per key, one entry per node that holds it, each with an
// expiry. A node's Tracker counts its local holders per key, adds its entry
// when the count leaves zero and removes it when the count returns to zero,
// and refreshes its entries well before they expire. The Store reports the
// add that found a key with no entry (first) and the remove, or the sweep
// of expired entries, that left it with none (last); each such change is
// atomic, so exactly one node sees it. A node killed without removing its
// entries has them swept by the others once they expire.
//
// The package does no I/O of its own besides the Store's and never calls
// out holding its lock; the callbacks run on the Tracker's goroutine.
package occupancy

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Store keeps the entries of every node. Implementations are safe for
// concurrent use by the Trackers of many nodes.
type Store interface {
	// Add sets node's entry of each key to expire at expires, creating it
	// if needed, and returns the keys that had no entry at all before
	// (entries expired but not swept yet count). On an error, first holds
	// what is known; adding a key again is harmless.
	Add(ctx context.Context, node string, keys []string, expires time.Time) (first []string, err error)
	// Remove deletes node's entry of each key and returns the keys left
	// with none. A key whose entry was gone already (swept) is not
	// returned: whoever removed it did that.
	Remove(ctx context.Context, node string, keys []string) (last []string, err error)
	// Expire removes the entries that expired before now and returns the
	// keys left with none. Of several callers at once, each key is
	// returned to one.
	Expire(ctx context.Context, now time.Time) (last []string, err error)
}

// Config tunes a Tracker. Zero fields take the defaults.
type Config struct {
	// Node names this node's entries; it must differ between processes
	// sharing a Store, restarts included. Default: a random id.
	Node string
	// TTL is how long an entry lives without a refresh: a dead node's keys
	// are released within about TTL plus a sweep. Entries are refreshed
	// every TTL/3. Default 30s.
	TTL time.Duration
	// Sweep is how often the Tracker removes expired entries. Default
	// min(TTL/3, 1s).
	Sweep time.Duration
	// Linger delays the effect of a Dec, so that a holder that comes back
	// within it (a reconnect) does not release the key and take it again.
	// Default 0: none.
	Linger time.Duration
	// OnError receives Store errors (the Tracker retries by itself).
	// Default: ignored.
	OnError func(error)
}

// retryDelay is how long a failed Store call waits to be tried again.
const retryDelay = time.Second

// Tracker is one node's side. Inc and Dec never block.
type Tracker struct {
	cfg         Config
	store       Store
	first, last func(key string)
	wake        chan struct{}
	stop        chan struct{}
	done        chan struct{}
	closing     sync.Once

	mu      sync.Mutex // guards the following
	count   map[string]int
	dirty   map[string]struct{} // keys whose count crossed zero since the last sync
	lingers []linger            // Decs waiting for Linger, in due order

	// Owned by run.
	held map[string]struct{} // keys whose entry the Store has (as far as this node knows)
}

// linger is a Dec that takes effect at due.
type linger struct {
	key string
	due time.Time
}

// NewTracker starts a tracker. first is called for a key this node's add
// found empty in the cluster, last for a key this node's remove or sweep
// left empty; both on the tracker's goroutine.
func NewTracker(cfg Config, store Store, first, last func(key string)) *Tracker {
	if cfg.Node == "" {
		cfg.Node = uuid.NewString()
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Sweep <= 0 {
		cfg.Sweep = min(cfg.TTL/3, time.Second)
	}
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	t := &Tracker{
		cfg: cfg, store: store, first: first, last: last,
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		count: make(map[string]int),
		dirty: make(map[string]struct{}),
		held:  make(map[string]struct{}),
	}
	go t.run()
	return t
}

// Inc counts one more local holder of key.
func (t *Tracker) Inc(key string) { t.add(key, 1) }

// Dec counts one less, after Config.Linger. Inc and Dec of one holder may
// come in either order (they are counted, not matched).
func (t *Tracker) Dec(key string) {
	if t.cfg.Linger <= 0 {
		t.add(key, -1)
		return
	}
	t.mu.Lock()
	t.lingers = append(t.lingers, linger{key: key, due: time.Now().Add(t.cfg.Linger)})
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// DecNow counts one less at once, whatever Config.Linger (for a holder
// whose going was delayed already).
func (t *Tracker) DecNow(key string) { t.add(key, -1) }

// applyLingers applies the Decs due by now and returns when the next is
// due (zero: none waits).
func (t *Tracker) applyLingers(now time.Time) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	i := 0
	for ; i < len(t.lingers) && !t.lingers[i].due.After(now); i++ {
		k := t.lingers[i].key
		if n := t.count[k] - 1; n == 0 {
			delete(t.count, k)
		} else {
			t.count[k] = n
		}
		t.dirty[k] = struct{}{}
	}
	clear(t.lingers[:i])
	t.lingers = t.lingers[i:]
	if len(t.lingers) == 0 {
		t.lingers = nil
		return time.Time{}
	}
	return t.lingers[0].due
}

func (t *Tracker) add(key string, d int) {
	t.mu.Lock()
	n := t.count[key] + d
	if n == 0 {
		delete(t.count, key)
	} else {
		t.count[key] = n
	}
	t.dirty[key] = struct{}{}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// Held returns how many keys this node holds now (local count above zero).
func (t *Tracker) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, c := range t.count {
		if c > 0 {
			n++
		}
	}
	return n
}

// Close stops the tracker and removes every entry of this node, calling
// last for the keys that leaves empty, within ctx. The caller has released
// its holders first (a node that is shutting down has no subscribers).
func (t *Tracker) Close(ctx context.Context) {
	t.closing.Do(func() {
		close(t.stop)
		<-t.done
		t.applyLingers(time.Now().Add(t.cfg.Linger))
		t.sync(ctx)
		t.mu.Lock()
		clear(t.count)
		t.mu.Unlock()
		if len(t.held) > 0 {
			keys := slices.Collect(maps.Keys(t.held))
			last, err := t.store.Remove(ctx, t.cfg.Node, keys)
			t.report(err)
			for _, k := range last {
				t.last(k)
			}
			clear(t.held)
		}
	})
}

func (t *Tracker) run() {
	defer close(t.done)
	refresh := time.NewTicker(t.cfg.TTL / 3)
	defer refresh.Stop()
	sweep := time.NewTicker(t.cfg.Sweep)
	defer sweep.Stop()
	var retry <-chan time.Time
	lingerT := time.NewTimer(time.Hour)
	defer lingerT.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
		case <-retry:
			retry = nil
		case <-lingerT.C:
		case <-refresh.C:
			t.refresh()
		case now := <-sweep.C:
			t.sweep(now)
		}
		if next := t.applyLingers(time.Now()); !next.IsZero() {
			lingerT.Reset(time.Until(next))
		}
		if !t.sync(context.Background()) && retry == nil {
			retry = time.After(retryDelay)
		}
	}
}

// sync brings the Store in line with the local counts of the dirty keys.
// It reports false when a Store call failed (its keys stay dirty).
func (t *Tracker) sync(ctx context.Context) bool {
	t.mu.Lock()
	if len(t.dirty) == 0 {
		t.mu.Unlock()
		return true
	}
	var adds, removes []string
	for k := range t.dirty {
		_, held := t.held[k]
		want := t.count[k] > 0
		switch {
		case want && !held:
			adds = append(adds, k)
		case !want && held:
			removes = append(removes, k)
		}
	}
	clear(t.dirty)
	t.mu.Unlock()
	ok := true
	ctx, cancel := context.WithTimeout(ctx, t.cfg.TTL/3)
	defer cancel()
	if len(adds) > 0 {
		first, err := t.store.Add(ctx, t.cfg.Node, adds, time.Now().Add(t.cfg.TTL))
		for _, k := range first {
			t.first(k)
		}
		if err != nil {
			t.report(err)
			t.redirty(adds)
			ok = false
		} else {
			for _, k := range adds {
				t.held[k] = struct{}{}
			}
		}
	}
	if len(removes) > 0 {
		last, err := t.store.Remove(ctx, t.cfg.Node, removes)
		for _, k := range last {
			t.last(k)
		}
		if err != nil {
			t.report(err)
			t.redirty(removes)
			ok = false
		} else {
			for _, k := range removes {
				delete(t.held, k)
			}
		}
	}
	return ok
}

// redirty marks keys for the next sync after a failed Store call.
func (t *Tracker) redirty(keys []string) {
	t.mu.Lock()
	for _, k := range keys {
		t.dirty[k] = struct{}{}
	}
	t.mu.Unlock()
}

// refresh extends this node's entries. One that was swept meanwhile (this
// node could not reach the Store for a TTL, and another node reported the
// key last) is added again, and reported first if it was.
func (t *Tracker) refresh() {
	if len(t.held) == 0 {
		return
	}
	keys := slices.Collect(maps.Keys(t.held))
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.TTL/3)
	defer cancel()
	first, err := t.store.Add(ctx, t.cfg.Node, keys, time.Now().Add(t.cfg.TTL))
	t.report(err)
	for _, k := range first {
		t.first(k)
	}
}

// sweep removes expired entries of any node.
func (t *Tracker) sweep(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.Sweep)
	defer cancel()
	last, err := t.store.Expire(ctx, now)
	t.report(err)
	for _, k := range last {
		t.last(k)
	}
}

func (t *Tracker) report(err error) {
	if err != nil {
		t.cfg.OnError(err)
	}
}
