package core

import (
	"context"
	"errors"
	"strconv"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/protocol"
	"github.com/huddle-rt/huddle/storage"
)

// Replies that can be large (a subscribe with its recovered publications
// and presence snapshot, a history page, a who) are built as jobs: a job
// runs only while the connection's queue holds at most replyRoom bytes, and
// one step of it reads at most a step budget of publication data. A job
// that has more to send stays first in line and takes its next step when
// the socket has drained. So a client that reads gets everything, however
// large, and a client that does not read holds at most about a queue's
// worth of encoded bytes, whatever it asks for.

// maxWaitingRequests bounds the history and who requests that wait for
// room on one connection; more get error 4006.
const maxWaitingRequests = 16

// job is a reply produced in steps as the connection's queue drains.
type job interface {
	// step sends the next part; it reports whether the job is done. It
	// runs on the goroutine that owns the connection's input or output,
	// never beside another step of the same connection, with no lock held.
	step(c *Session) (done bool)
}

// replyRoom is the queued bytes up to which a connection's jobs may run.
func (node *Node) replyRoom() int { return node.cfg.MaxQueue / 4 }

// maxReply is the largest reply a job may queue: what the queue still takes
// when the job runs. A presence snapshot larger than that (thousands of
// members with kilobytes of state each) is refused with 4005 rather than
// queued, which would end the connection with 4008 on every try.
// DefaultCompactEvery is Config.CompactEvery's default: a document is
// asked for a snapshot every 1,000 publications.
const DefaultCompactEvery = 1000

func (node *Node) compactEvery() int {
	if node.cfg.CompactEvery > 0 {
		return node.cfg.CompactEvery
	}
	return DefaultCompactEvery
}

func (node *Node) maxReply() int { return node.cfg.MaxQueue - node.replyRoom() }

func snapshotTooLarge(members, size int) string {
	return "the presence snapshot (" + strconv.Itoa(members) + " members, " + strconv.Itoa(size) + " bytes) is larger than this connection's queue takes (raise --max-queue, or subscribe without presence)"
}

// deliverable reports why a publication of data on stream could not be
// delivered: its pub message, in the larger of the wire formats, would be
// more than a connection's queue takes when a reply job runs. Stored, it
// would end every subscriber with 4008, and every resubscribe too, for as
// long as history holds it. Most publications are too small to need the
// encode: JSON spells a byte out as at most six.
func (node *Node) deliverable(stream string, user, client string, data []byte) error {
	limit := node.maxReply()
	if 6*(len(data)+len(stream)+len(user)+len(client))+pubOverhead <= limit {
		return nil
	}
	w := protocol.Pub{S: stream, Epoch: "0123456789abcdef", Offset: 1 << 62, Data: data, TS: 1 << 42}
	if user != "" || client != "" {
		w.From = &protocol.ClientInfo{User: user, Client: client}
	}
	for _, f := range node.formats {
		b, err := f.Encode(&w)
		if err != nil {
			return err
		}
		if len(b) > limit {
			return errors.New("publication of " + strconv.Itoa(len(data)) + " bytes is " + strconv.Itoa(len(b)) + " bytes as a " + f.Name + " message, over the " + strconv.Itoa(limit) + " a subscriber's queue takes (--max-queue × 3/4)")
		}
	}
	return nil
}

// stepPubs bounds the publications of one step: each costs its stream
// name, epoch, ids and timestamp besides its data, and a step of many tiny
// publications must stay within a step's bytes too.
func (node *Node) stepPubs(textual bool, stream string) int {
	return max(1, node.stepBytes(textual)/(len(stream)+pubOverhead))
}

// pubOverhead is what a pub message costs besides its stream name and
// data, at most: epoch, offset, timestamp, user and client ids, keys.
const pubOverhead = 160

// stepBytes is the publication data one step of a job reads (at least one
// publication is always read). JSON may spell data out larger than its
// msgpack form, so connections of a textual format read less per step.
func (node *Node) stepBytes(textual bool) int {
	if textual {
		return node.cfg.MaxQueue / 16
	}
	return node.cfg.MaxQueue / 8
}

// jobQueue is a connection's jobs, first in line first. Guarded by c.mu;
// a connection has one only while it has jobs, so an idle connection does
// not carry it.
type jobQueue struct {
	list []queuedJob
	busy bool // a goroutine is stepping list[0]
	// requests counts the history and who requests in list.
	requests int
}

type queuedJob struct {
	j       job
	request bool
}

// addJob puts j behind the connection's other jobs and runs what there is
// room for. request tells whether j answers a history or who request, of
// which at most maxWaitingRequests may wait; subscribes are bounded by
// --max-subscriptions. false is returned when j is not taken.
func (c *Session) addJob(j job, request bool) bool {
	c.tc.Lock()
	if !c.tc.OpenLocked() {
		c.tc.Unlock()
		return false
	}
	if c.jobs == nil {
		c.jobs = &jobQueue{}
	}
	q := c.jobs
	if request && q.requests >= maxWaitingRequests || len(q.list) >= maxWaitingRequests+c.node.cfg.MaxSubscriptions {
		c.tc.Unlock()
		return false
	}
	if request {
		q.requests++
	}
	q.list = append(q.list, queuedJob{j: j, request: request})
	c.tc.Unlock()
	c.pump()
	return true
}

// pump runs the connection's jobs, first in line first, while its queue has
// room. Exactly one goroutine steps a connection's jobs at a time (busy).
func (c *Session) pump() {
	room := c.node.replyRoom()
	for {
		c.tc.Lock()
		q := c.jobs
		if q == nil || q.busy || !c.tc.OpenLocked() || c.tc.QueuedLocked() > room {
			c.tc.Unlock()
			return
		}
		if len(q.list) == 0 {
			c.jobs = nil
			c.tc.Unlock()
			return
		}
		head := q.list[0]
		q.busy = true
		c.tc.Unlock()

		done := head.j.step(c)

		c.tc.Lock()
		q.busy = false
		if done && c.jobs == q && len(q.list) > 0 {
			q.list[0] = queuedJob{}
			q.list = q.list[1:]
			if head.request {
				q.requests--
			}
			if len(q.list) == 0 {
				c.jobs = nil
			}
		}
		c.tc.Unlock()
	}
}

// jobsWaitingLocked reports whether a job waits for the queue to drain.
// Lock c.mu must be held.
func (c *Session) jobsWaitingLocked() bool { return c.jobs != nil && !c.jobs.busy }

// historyJob answers a history request with one page: at most the
// request's limit, and at most a step's bytes, with more: true when either
// cut it short.
type historyJob struct {
	m *protocol.HistoryRequest
}

func (j historyJob) step(c *Session) bool {
	m := j.m
	// A refresh while the request waited may have taken the op away.
	if id := c.ident.Load(); id == nil || !c.allowed(id, auth.OpHistory, m.S) {
		c.sendError(m.ID, m.S, protocol.CodeForbidden, "op history is not allowed on this stream")
		return true
	}
	limit := m.Limit
	if limit <= 0 {
		limit = defaultHistoryLimit
	}
	limit = min(limit, maxHistoryLimit)
	q := storage.Query{Limit: limit, Reverse: m.Reverse, MaxBytes: c.node.stepBytes(c.textual())}
	if m.Since != nil {
		q.After = storage.Position{Epoch: m.Since.Epoch, Offset: m.Since.Offset}
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	res, err := c.node.history.Read(ctx, m.S, q)
	if errors.Is(err, storage.ErrEpochMismatch) {
		c.sendError(m.ID, m.S, protocol.CodeInsufficientState, "epoch "+quote(m.Since.Epoch)+" is gone; the stream is now at epoch "+quote(res.Top.Epoch))
		return true
	}
	if err != nil {
		c.sendError(m.ID, m.S, protocol.CodeInternal, "history failed: "+err.Error())
		return true
	}
	c.send(&protocol.History{
		ID: m.ID, S: m.S, Epoch: res.Top.Epoch, Offset: res.Top.Offset,
		Pubs: WirePubs(m.S, res.Top.Epoch, res.Pubs, res.Snapshot), More: res.More,
	})
	return true
}

// whoJob answers a who request with the stream's presence snapshot.
type whoJob struct {
	m *protocol.WhoRequest
}

func (j whoJob) step(c *Session) bool {
	m := j.m
	if id := c.ident.Load(); id == nil || !c.allowed(id, auth.OpSub, m.S) && !c.allowed(id, auth.OpPresence, m.S) {
		c.sendError(m.ID, m.S, protocol.CodeForbidden, "who needs op sub or presence on this stream")
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	members, err := c.node.presence.Members(ctx, m.S)
	if err != nil {
		c.sendError(m.ID, m.S, protocol.CodeInternal, "who failed: "+err.Error())
		return true
	}
	if members == nil {
		members = []protocol.Member{}
	}
	b, err := c.encode(&protocol.Who{ID: m.ID, S: m.S, Members: members})
	if err != nil {
		c.sendError(m.ID, m.S, protocol.CodeInternal, "who failed: "+err.Error())
		return true
	}
	if len(b) > c.node.maxReply() {
		c.sendError(m.ID, m.S, protocol.CodeTooLarge, snapshotTooLarge(len(members), len(b)))
		return true
	}
	c.sendEncoded(protocol.TypeWho, b)
	return true
}

// subscribeJob completes a subscribe: its first step registers the
// subscription and answers with subscribed (the stream's position, the
// first missed publications when recovering, the presence snapshot, the
// latest whispers), then joins presence if the sub asked to; later steps
// send the rest of the missed publications as pub messages, a step's bytes
// at a time, until the subscription catches up with the live publications
// it buffered meanwhile.
type subscribeJob struct {
	sub *subscription
	m   *protocol.Subscribe // nil once subscribed was sent
	// join is the state the sub asked to join presence with; a later
	// join, leave, update or unsub of the stream settles it first (see
	// settleJoin). Guarded by c.mu.
	join protocol.Raw
}

func (j *subscribeJob) step(c *Session) bool {
	node := c.node
	if !c.owns(j.sub) {
		return true // unsubscribed or closed meanwhile
	}
	if j.m == nil {
		return node.catchUp(j.sub)
	}
	m := j.m
	j.m = nil
	if werr := node.register(j.sub); werr != nil {
		c.sendError(m.ID, m.S, werr.Code, werr.Reason)
		return true
	}
	ok, done := node.announce(j.sub, m)
	if ok {
		c.tc.Lock()
		join := j.join
		j.join = nil
		c.tc.Unlock()
		// The identity of now, not of the sub: a refresh in between may
		// have taken presence away.
		if id := c.ident.Load(); len(join) > 0 && id != nil {
			c.join(id, 0, m.S, join)
		}
	}
	return !ok || done
}

// settleJoin settles the presence join that a waiting subscribe of stream
// still holds, before a later presence request or unsub of the stream is
// handled, so that requests take effect in the order they came: for an
// update the join happens now (the update applies to it); for a join,
// leave or unsub it is dropped (the later request supersedes it). A
// subscribe that is no longer waiting has no join left.
func (c *Session) settleJoin(stream string, now bool) {
	c.tc.Lock()
	var join protocol.Raw
	if q := c.jobs; q != nil {
		for _, qj := range q.list {
			if sj, ok := qj.j.(*subscribeJob); ok && sj.sub.stream == stream && sj.join != nil {
				join, sj.join = sj.join, nil
			}
		}
	}
	c.tc.Unlock()
	if now && join != nil {
		if id := c.ident.Load(); id != nil {
			c.join(id, 0, stream, join)
		}
	}
}

// dropSubscribeJob removes the waiting subscribe of sub (unsubscribed
// before it ran), unless it is being stepped: that step sees it gone. It
// returns the sub request when subscribed was not sent for it yet.
func (c *Session) dropSubscribeJob(sub *subscription) *protocol.Subscribe {
	c.tc.Lock()
	defer c.tc.Unlock()
	q := c.jobs
	if q == nil {
		return nil
	}
	for i, qj := range q.list {
		if sj, ok := qj.j.(*subscribeJob); ok && sj.sub == sub && !(i == 0 && q.busy) {
			n := len(q.list) - 1
			copy(q.list[i:], q.list[i+1:])
			q.list[n] = queuedJob{} // no stale copy left in the array
			q.list = q.list[:n]
			return sj.m
		}
	}
	return nil
}

// owns reports whether sub is still one of the connection's subscriptions.
func (c *Session) owns(sub *subscription) bool {
	c.tc.Lock()
	defer c.tc.Unlock()
	return c.ownsLocked(sub)
}

// ownsLocked is owns for a caller holding c.mu.
func (c *Session) ownsLocked(sub *subscription) bool {
	i := c.findSubLocked(sub.stream)
	return c.tc.OpenLocked() && i >= 0 && c.subs[i] == sub
}
