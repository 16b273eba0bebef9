package presence

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// Emit receives a stream's batched diff. The tracker calls it from its own
// goroutine, holding no lock.
type Emit func(stream string, diff *protocol.Presence)

// Tracker is a node's presence: it writes members to the Store, heartbeats
// the ones whose connections it owns, and batches changes per tick.
type Tracker struct {
	cfg   Config
	store Store
	emit  Emit
	stop  chan struct{}
	done  chan struct{}
	wake  chan struct{} // something is pending: the flush ticker must run

	stopOnce sync.Once

	mu      sync.Mutex // guards the following
	pending map[string]*diff
	updated map[graceKey]time.Time                // when a member's last update went out
	local   map[string]map[string]protocol.Member // stream -> client -> member, for those this node owns (latest state)
	graces  map[graceKey]*time.Timer
}

type graceKey struct{ stream, client string }

// diff accumulates one stream's changes within a tick.
type diff struct {
	joins   map[string]protocol.Member
	leaves  map[string]protocol.ClientInfo
	updates map[string]protocol.MemberUpdate
	order   []string            // clients in first-change order, for stable output
	ordered map[string]struct{} // clients already in order
}

// NewTracker starts a tracker over store; diffs go to emit.
func NewTracker(cfg Config, store Store, emit Emit) *Tracker {
	t := &Tracker{
		cfg:     cfg.WithDefaults(),
		store:   store,
		emit:    emit,
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		wake:    make(chan struct{}, 1),
		pending: make(map[string]*diff),
		updated: make(map[graceKey]time.Time),
		local:   make(map[string]map[string]protocol.Member),
		graces:  make(map[graceKey]*time.Timer),
	}
	go t.run()
	return t
}

// Config returns the tracker's configuration with defaults applied.
func (t *Tracker) Config() Config { return t.cfg }

// Close stops the ticker and the heartbeat. Members still in their grace
// period leave at once, as nothing will keep them alive any more, and the
// last diffs go out.
func (t *Tracker) Close() {
	t.stopOnce.Do(func() { close(t.stop) }) // two Closes at once must not both close it
	<-t.done
	t.mu.Lock()
	leaving := make([]graceKey, 0, len(t.graces))
	for k, tm := range t.graces {
		tm.Stop()
		delete(t.graces, k) // a timer that fired already finds it gone and does nothing
		leaving = append(leaving, k)
	}
	t.mu.Unlock()
	if len(leaving) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		for _, k := range leaving {
			_ = t.Leave(ctx, k.stream, k.client)
		}
		cancel()
	}
	t.flushAll()
}

// Join enters m into stream's presence, or replaces its state.
func (t *Tracker) Join(ctx context.Context, stream string, m protocol.Member) error {
	if _, err := t.store.Join(ctx, stream, m, t.cfg.TTL, t.cfg.MaxMembers); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cancelGraceLocked(stream, m.Client)
	clients := t.local[stream]
	if clients == nil {
		clients = make(map[string]protocol.Member)
		t.local[stream] = clients
	}
	clients[m.Client] = m
	d := t.diffLocked(stream, m.Client)
	delete(d.updates, m.Client)
	delete(d.leaves, m.Client) // a leave and a rejoin in one tick: the join replaces
	d.joins[m.Client] = m
	return nil
}

// Update patches a member's state.
func (t *Tracker) Update(ctx context.Context, stream string, who protocol.ClientInfo, patch protocol.Raw) error {
	state, err := t.store.Update(ctx, stream, who.Client, patch, t.cfg.TTL, t.cfg.MaxState)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	m, ok := t.local[stream][who.Client]
	if !ok {
		return nil // it left while the store applied the patch: its leave is out
	}
	m.State = state // what a re-join after a partition restores
	t.local[stream][who.Client] = m
	d := t.diffLocked(stream, who.Client)
	if j, ok := d.joins[who.Client]; ok {
		j.State = state // the join goes out with the latest state
		d.joins[who.Client] = j
		return nil
	}
	u, ok := d.updates[who.Client]
	if ok {
		merged, err := MergePatches(u.State, patch)
		if err != nil {
			return err
		}
		u.State = merged
	} else {
		u = protocol.MemberUpdate{User: who.User, Client: who.Client, State: patch}
	}
	d.updates[who.Client] = u
	return nil
}

// Leave removes a member now.
func (t *Tracker) Leave(ctx context.Context, stream, client string) error {
	// Forget the member first: a heartbeat that finds it missing from the
	// store from now on does not bring it back (see rejoin).
	t.mu.Lock()
	t.cancelGraceLocked(stream, client)
	own, owned := t.local[stream][client]
	t.forgetLocked(stream, client)
	t.mu.Unlock()
	m, ok, err := t.store.Leave(ctx, stream, client)
	if err != nil {
		if owned {
			// The store keeps it until its TTL runs out (no heartbeat
			// will renew it): it has left all the same, and saying so now
			// keeps this node's own count of its members right. The
			// expiry's leave, later, is for a member nobody holds.
			t.mu.Lock()
			t.leftLocked(stream, protocol.ClientInfo{User: own.User, Client: client})
			t.mu.Unlock()
		}
		return err
	}
	if !ok {
		if !owned {
			return nil // gone already, and its leave went out then
		}
		// Ours, but the store lost it (expired, being re-joined): announce
		// the leave anyway; a subscriber that no longer holds the member
		// ignores it.
		m = own
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.leftLocked(stream, protocol.ClientInfo{User: m.User, Client: client})
	return nil
}

func (t *Tracker) forgetLocked(stream, client string) {
	delete(t.updated, graceKey{stream, client})
	if clients := t.local[stream]; clients != nil {
		delete(clients, client)
		if len(clients) == 0 {
			delete(t.local, stream)
		}
	}
}

// LeaveAfterGrace removes a member after the grace period, unless it joins
// again first. For connections that dropped without a close.
func (t *Tracker) LeaveAfterGrace(stream, client string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := graceKey{stream, client}
	if t.graces[k] != nil {
		return
	}
	t.graces[k] = time.AfterFunc(t.cfg.Grace, func() {
		t.mu.Lock()
		_, still := t.graces[k]
		delete(t.graces, k)
		t.mu.Unlock()
		if still {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = t.Leave(ctx, stream, client)
		}
	})
}

func (t *Tracker) cancelGraceLocked(stream, client string) {
	k := graceKey{stream, client}
	if tm := t.graces[k]; tm != nil {
		tm.Stop()
		delete(t.graces, k)
	}
}

func (t *Tracker) leftLocked(stream string, who protocol.ClientInfo) {
	delete(t.updated, graceKey{stream, who.Client})
	d := t.diffLocked(stream, who.Client)
	delete(d.updates, who.Client)
	// A member that joined within this tick still gets its leave: a
	// subscriber may have taken a snapshot that holds it. Subscribers that
	// never saw it ignore the leave of an unknown member.
	delete(d.joins, who.Client)
	d.leaves[who.Client] = who
}

func (t *Tracker) diffLocked(stream, client string) *diff {
	d := t.pending[stream]
	if d == nil {
		if len(t.pending) == 0 {
			select { // the ticker may be stopped: nothing was pending
			case t.wake <- struct{}{}:
			default:
			}
		}
		d = &diff{
			joins:   make(map[string]protocol.Member),
			leaves:  make(map[string]protocol.ClientInfo),
			updates: make(map[string]protocol.MemberUpdate),
			ordered: make(map[string]struct{}),
		}
		t.pending[stream] = d
	}
	if _, ok := d.ordered[client]; !ok {
		d.ordered[client] = struct{}{}
		d.order = append(d.order, client)
	}
	return d
}

// Members returns stream's members from the store.
func (t *Tracker) Members(ctx context.Context, stream string) ([]protocol.Member, error) {
	return t.store.Members(ctx, stream)
}

func (t *Tracker) run() {
	defer close(t.done)
	// Joins and leaves go out every half tick; a member's updates at most
	// once a tick (see flush). The ticker runs only while something is
	// pending or the node has members, so an idle node does not wake 40
	// times a second.
	every := max(t.cfg.Tick/2, time.Millisecond)
	var tick *time.Ticker
	var tickC <-chan time.Time
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	beat := time.NewTicker(t.cfg.TTL / 3)
	defer beat.Stop()
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
			if tick == nil {
				tick = time.NewTicker(every)
				tickC = tick.C
			}
		case <-tickC:
			t.flush()
			if t.idle() {
				// A change after this sends wake again.
				tick.Stop()
				tick, tickC = nil, nil
			}
		case <-beat.C:
			t.heartbeat()
		case now := <-expire.C:
			t.expire(now)
		}
	}
}

// idle reports whether the ticker may stop: nothing waits for a flush and
// this node has no members (while it has, flushes keep their steady
// half-tick rhythm).
func (t *Tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending) == 0 && len(t.local) == 0
}

// flush emits every stream's pending diff. It runs every half tick, so a
// join or a leave waits at most half a tick; an update of a member whose
// last update went out less than a tick ago stays pending (and merges with
// the member's next patches) until a tick has passed: at most one updates
// entry per member per tick, as the contract has it.
func (t *Tracker) flush() { t.flushAt(time.Now()) }

// flushAll emits everything pending, held updates included (at Close).
func (t *Tracker) flushAll() { t.flushAt(time.Now().Add(t.cfg.Tick)) }

func (t *Tracker) flushAt(now time.Time) {
	t.mu.Lock()
	pending := t.pending
	if len(pending) == 0 {
		t.mu.Unlock()
		return
	}
	t.pending = make(map[string]*diff, len(pending))
	for stream, d := range pending {
		for c, u := range d.updates {
			k := graceKey{stream, c}
			if last, ok := t.updated[k]; ok && now.Sub(last) < t.cfg.Tick-t.cfg.Tick/4 {
				delete(d.updates, c)
				t.diffLocked(stream, c).updates[c] = u
				continue
			}
			t.updated[k] = now
		}
	}
	t.mu.Unlock()
	for stream, d := range pending {
		msg := &protocol.Presence{S: stream}
		for _, c := range d.order {
			if m, ok := d.joins[c]; ok {
				msg.Joins = append(msg.Joins, m)
			}
			if l, ok := d.leaves[c]; ok {
				msg.Leaves = append(msg.Leaves, l)
			}
			if u, ok := d.updates[c]; ok {
				msg.Updates = append(msg.Updates, u)
			}
		}
		if len(msg.Joins)+len(msg.Leaves)+len(msg.Updates) > 0 {
			t.emit(stream, msg)
		}
	}
}

// heartbeat keeps this node's members alive in the store.
func (t *Tracker) heartbeat() {
	t.mu.Lock()
	work := make(map[string][]string, len(t.local))
	for stream, clients := range t.local {
		list := make([]string, 0, len(clients))
		for c := range clients {
			list = append(list, c)
		}
		work[stream] = list
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), t.cfg.TTL/3)
	defer cancel()
	for stream, clients := range work {
		missing, _ := t.store.Touch(ctx, stream, clients, t.cfg.TTL)
		for _, c := range missing {
			t.rejoin(ctx, stream, c)
		}
	}
}

// rejoin puts back a member this node still owns that the store lost: it
// expired while this node could not reach the store for longer than the
// TTL, and the other nodes announced its leave. Its connection is still
// open, so it joins again, with its latest state, and everyone sees the
// join. A member in its grace period (connection gone) is left to leave.
func (t *Tracker) rejoin(ctx context.Context, stream, client string) {
	t.mu.Lock()
	m, ok := t.local[stream][client]
	_, grace := t.graces[graceKey{stream, client}]
	t.mu.Unlock()
	if !ok || grace {
		return
	}
	var cur protocol.Member
	var still bool
	for attempt := 0; ; attempt++ {
		if _, err := t.store.Join(ctx, stream, m, t.cfg.TTL, t.cfg.MaxMembers); err != nil {
			return // the next heartbeat tries again
		}
		t.mu.Lock()
		cur, still = t.local[stream][client]
		if !still || bytes.Equal(cur.State, m.State) || attempt == 2 {
			break // t.mu stays held
		}
		// A join or an update came while we re-joined the old state:
		// write the newer one.
		t.mu.Unlock()
		m = cur
	}
	if !still {
		// It left while we re-joined it: Leave forgot it before removing
		// it from the store, so if our join came after that removal, undo
		// it (the leave went out already).
		t.mu.Unlock()
		_, _, _ = t.store.Leave(ctx, stream, client)
		return
	}
	defer t.mu.Unlock()
	d := t.diffLocked(stream, client)
	delete(d.updates, client)
	delete(d.leaves, client)
	d.joins[client] = cur
}

// expire turns members whose node stopped heartbeating into leaves.
func (t *Tracker) expire(now time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	gone, err := t.store.Expire(ctx, now)
	if err != nil || len(gone) == 0 {
		return
	}
	t.mu.Lock()
	var back []graceKey
	for _, g := range gone {
		k := graceKey{g.Stream, g.Client}
		if _, ok := t.local[g.Stream][g.Client]; ok && t.graces[k] == nil {
			// Our own live member, expired because our heartbeats did
			// not reach the store in time: it joins again.
			back = append(back, k)
			continue
		}
		t.forgetLocked(g.Stream, g.Client)
		t.leftLocked(g.Stream, g.ClientInfo)
	}
	t.mu.Unlock()
	for _, k := range back {
		t.rejoin(ctx, k.stream, k.client)
	}
}
