package huddlev1

import (
	"cmp"
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/protocol"
)

// The application's hooks (Config.Hooks, docs/hooks.md): a connect whose
// token is not one Huddle verifies goes to the connect hook; a subscribe or
// publish on a stream the rules route to a hook goes to it, and the hook's
// answer is the authorization (a rule's deny still wins).
//
// Calls run on a goroutine of the connection's own that exists only while
// calls wait, one after another, never on a transport worker. While a
// stream has calls waiting, the connection's later requests about that
// stream wait behind them, so a connection's requests about a stream take
// effect in the order they came (its publishes are stored in order). While
// a connect is at the hook, every later message waits behind it.
// Whispers and presence updates never wait behind a subscribe or publish:
// they keep rate limits that only the worker touches.

// DefaultHookQueue is Config.HookQueue's default.
const DefaultHookQueue = 64

// hookConn is a connection's side of the hooks. It is the connection's
// core.Output: it encodes with the codec's output, and grants what the
// hooks allowed.
type hookConn struct {
	c   *conn
	out *output

	mu sync.Mutex // guards the following; a leaf (Grants runs under the connection's lock)
	// env is the upgrade's URL, headers and address, for the connect hook;
	// nil once connect is done.
	env     *hooks.ConnectRequest
	queue   []hookItem
	running bool // a goroutine runs the queue
	// barrier: a connect went to the hook, so every message waits in the
	// queue until it is empty.
	barrier bool
	pending map[string]int     // stream -> queued items about it
	subs    map[string]hookSub // streams the subscribe hook allowed, until unsub
	pub     string             // the stream whose hook-allowed publish is in the core now
	cancel  context.CancelFunc // ends the call in flight; nil when none
	closed  bool
}

// hookSub is what the subscribe hook allowed on a stream.
type hookSub struct {
	info     protocol.Raw // presence info in the stream; nil: the identity's
	presence bool         // op presence granted
}

// hookItem is a queued request, and the stream it is about ("" for none).
type hookItem struct {
	stream string
	fn     func()
}

var (
	_ core.Output     = (*hookConn)(nil)
	_ core.Granter    = (*hookConn)(nil)
	_ core.MemberInfo = (*hookConn)(nil)
)

// Encode implements core.Output.
func (h *hookConn) Encode(m protocol.Message) ([]byte, error) { return h.out.Encode(m) }

// Grants implements core.Granter: op sub (and presence, if it said so) on
// a stream the subscribe hook allowed, until unsub; op pub for the publish
// the publish hook allowed, while the core stores it. A rule's deny wins.
func (h *hookConn) Grants(op auth.Op, stream string) bool {
	if h.out.fe.node.Auth().Denied(op, stream) {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch op {
	case auth.OpSub:
		_, ok := h.subs[stream]
		return ok
	case auth.OpPresence:
		return h.subs[stream].presence
	case auth.OpPub:
		return stream != "" && h.pub == stream
	}
	return false
}

// MemberInfo implements core.MemberInfo: the presence info the subscribe
// hook gave the connection in stream; nil: its identity's.
func (h *hookConn) MemberInfo(stream string) protocol.Raw {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[stream].info
}

func (h *hookConn) client() *hooks.Client { return h.out.fe.cfg.Hooks }

// routed reports whether op on stream goes to its hook: the hook is set,
// the name is valid and no rule denies op (the core answers those), and
// the rules route it.
func (h *hookConn) routed(op auth.Op, stream string) bool {
	hook := hooks.Subscribe
	if op == auth.OpPub {
		hook = hooks.Publish
	}
	a := h.out.fe.node.Auth()
	return h.client().Has(hook) && auth.ValidStream(stream) && !a.Denied(op, stream) && a.Hooked(op, stream)
}

// route queues m when it must wait for or go to a hook, and reports
// whether it did. It runs on the worker.
func (h *hookConn) route(m protocol.Message) bool {
	var stream string
	var id uint64
	hooked, holds := false, true
	switch m := m.(type) {
	case *protocol.Subscribe:
		stream, id = m.S, m.ID
		hooked = h.c.Ident() != nil && h.routed(auth.OpSub, m.S)
	case *protocol.Publish:
		stream, id = m.S, m.ID
		hooked = h.c.Ident() != nil && h.routed(auth.OpPub, m.S)
	case *protocol.Unsubscribe:
		stream, id = m.S, m.ID
	case *protocol.Compact:
		stream, id = m.S, m.ID
	case *protocol.HistoryRequest:
		stream, id = m.S, m.ID
	case *protocol.Join:
		stream, id = m.S, m.ID
	case *protocol.Leave:
		stream, id = m.S, m.ID
	case *protocol.WhoRequest:
		stream, id = m.S, m.ID
	case *protocol.SendWhisper:
		stream, holds = m.S, false
	case *protocol.Update:
		stream, holds = m.S, false
	}
	h.mu.Lock()
	if !h.barrier && !hooked && (!holds || stream == "" || h.pending[stream] == 0) {
		h.mu.Unlock()
		return false
	}
	if h.barrier {
		stream = "" // everything waits anyway
	}
	if !h.pushLocked(stream, func() { h.c.runQueued(m) }) {
		h.mu.Unlock()
		h.c.SendError(id, stream, protocol.CodeRateLimited, "too many requests waiting for the application's hooks (limit "+strconv.Itoa(h.limit())+")")
		return true
	}
	h.mu.Unlock()
	return true
}

func (h *hookConn) limit() int { return cmp.Or(h.out.fe.cfg.HookQueue, DefaultHookQueue) }

// pushLocked queues fn, starting the queue's goroutine if none runs; false
// when the queue is full or the connection closed. h.mu must be held.
func (h *hookConn) pushLocked(stream string, fn func()) bool {
	if h.closed || len(h.queue) >= h.limit() {
		return false
	}
	h.queue = append(h.queue, hookItem{stream: stream, fn: fn})
	if stream != "" {
		if h.pending == nil {
			h.pending = make(map[string]int)
		}
		h.pending[stream]++
	}
	if !h.running {
		h.running = true
		go h.run()
	}
	return true
}

// run runs the queue until it is empty; what a closed connection queued is
// dropped unrun.
func (h *hookConn) run() {
	for {
		h.mu.Lock()
		if len(h.queue) == 0 || h.closed {
			h.queue, h.pending = nil, nil
			h.running, h.barrier = false, false
			h.mu.Unlock()
			return
		}
		it := h.queue[0]
		h.queue[0] = hookItem{}
		h.queue = h.queue[1:]
		h.mu.Unlock()
		if h.c.Conn().Accepting() {
			it.fn()
		}
		if it.stream != "" {
			h.mu.Lock()
			if n := h.pending[it.stream] - 1; n > 0 {
				h.pending[it.stream] = n
			} else {
				delete(h.pending, it.stream)
			}
			h.mu.Unlock()
		}
	}
}

// connecting reports whether a connect is at the hook.
func (h *hookConn) connecting() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.barrier
}

// call returns the context of a hook call, which the connection's close
// cancels, and the function that ends it.
func (h *hookConn) call() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	h.mu.Lock()
	if h.closed {
		cancel()
	} else {
		h.cancel = cancel
	}
	h.mu.Unlock()
	return ctx, func() {
		h.mu.Lock()
		h.cancel = nil
		h.mu.Unlock()
		cancel()
	}
}

// close drops what waits, cancels the call in flight (its answer is
// dropped) and forgets the grants.
func (h *hookConn) close() {
	h.mu.Lock()
	h.closed = true
	h.queue, h.pending, h.subs, h.env = nil, nil, nil, nil
	cancel := h.cancel
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// forget drops the subscribe hook's grant on stream (at unsub).
func (h *hookConn) forget(stream string) {
	h.mu.Lock()
	delete(h.subs, stream)
	h.mu.Unlock()
}

// Closed implements transport.Session: the core's, then the hooks'.
func (c *conn) Closed(clean bool) {
	c.Session.Closed(clean)
	if h := c.hooks(); h != nil {
		h.close()
	}
}

// hooks returns the connection's side of the hooks; nil without hooks.
func (c *conn) hooks() *hookConn {
	h, _ := c.Output().(*hookConn)
	return h
}

// runQueued runs a request that waited in the hook queue, on its
// goroutine: a subscribe or publish routed to a hook goes to it, anything
// else to the core.
func (c *conn) runQueued(m protocol.Message) {
	h := c.hooks()
	if c.Ident() != nil {
		switch m := m.(type) {
		case *protocol.Subscribe:
			if h.routed(auth.OpSub, m.S) {
				c.hookSubscribe(h, m)
				return
			}
		case *protocol.Publish:
			if h.routed(auth.OpPub, m.S) {
				c.hookPublish(h, m)
				return
			}
		}
	}
	c.handle(m)
}

// connectHook queues the connect hook's call for m; every message after
// it waits until it is done. It runs on the worker.
func (c *conn) connectHook(h *hookConn, m *protocol.Connect, token string) {
	h.mu.Lock()
	h.barrier = true
	h.pushLocked("", func() { c.hookConnect(h, m, token) })
	h.mu.Unlock()
}

// hookConnect asks the connect hook and connects, or closes: 4001 with the
// application's reason when it refused, 4500 (reconnect) when it did not
// answer.
func (c *conn) hookConnect(h *hookConn, m *protocol.Connect, token string) {
	h.mu.Lock()
	req := h.env
	h.env = nil
	h.mu.Unlock()
	if req == nil {
		req = &hooks.ConnectRequest{}
	}
	req.Token = token
	ctx, done := h.call()
	resp, err := h.client().Connect(ctx, req)
	done()
	if !c.Conn().Accepting() {
		return
	}
	var denied *hooks.Denied
	switch {
	case errors.As(err, &denied):
		c.CloseWith(protocol.CodeUnauthorized, cmp.Or(denied.Reason, "refused by the application"), false)
		return
	case err != nil:
		c.Node().Logger().Warn("connect hook failed", "err", err)
		c.CloseWith(protocol.CodeInternal, "connect hook unavailable; reconnect later", true)
		return
	}
	id, err := auth.NewIdentity(resp.User, resp.Expires(), resp.Info, resp.Streams)
	if err != nil {
		c.Node().Logger().Warn("connect hook answered an identity that cannot be used", "err", err)
		c.CloseWith(protocol.CodeInternal, "connect hook answered an invalid identity; reconnect later", true)
		return
	}
	// Under the connection's lock: a close either came first (and the
	// session stays unconnected) or comes after, and then Closed sees the
	// identity and undoes the connect.
	tc := c.Conn()
	tc.Lock()
	open := tc.OpenLocked()
	if open {
		c.Connect(id)
	}
	tc.Unlock()
	if open {
		c.connected(m.ID, id)
	}
}

// hookSubscribe asks the subscribe hook and subscribes, or answers error
// 4003 (refused) or 4500 (no answer).
func (c *conn) hookSubscribe(h *hookConn, m *protocol.Subscribe) {
	ctx, done := h.call()
	resp, err := h.client().Subscribe(ctx, &hooks.SubscribeRequest{
		Client: c.ClientID(), User: c.Ident().User, Stream: m.S, Presence: m.Presence, Join: len(m.Join) > 0,
	})
	done()
	if !c.Conn().Accepting() {
		return
	}
	if err != nil {
		c.hookFailed(hooks.Subscribe, m.ID, m.S, err)
		return
	}
	sub := hookSub{presence: resp.Presence}
	if info := resp.Info; len(info) > 0 && string(info) != "null" {
		if sub.info, err = protocol.RawFromJSON(info); err != nil {
			c.hookFailed(hooks.Subscribe, m.ID, m.S, err)
			return
		}
	}
	h.mu.Lock()
	_, had := h.subs[m.S]
	full := !had && len(h.subs) >= h.out.fe.maxSubs()
	if !full && !h.closed {
		if h.subs == nil {
			h.subs = make(map[string]hookSub)
		}
		h.subs[m.S] = sub
	}
	h.mu.Unlock()
	if full {
		c.SendError(m.ID, m.S, protocol.CodeRateLimited, "too many subscriptions on one connection (limit "+strconv.Itoa(h.out.fe.maxSubs())+")")
		return
	}
	c.Subscribe(m)
}

// hookPublish asks the publish hook and publishes, with the data it
// answered if any, or answers error 4003 (refused) or 4500 (no answer).
func (c *conn) hookPublish(h *hookConn, m *protocol.Publish) {
	data := []byte("null")
	if len(m.Data) > 0 {
		var err error
		if data, err = protocol.MsgpackToJSON(nil, m.Data); err != nil {
			c.SendError(m.ID, m.S, protocol.CodeBadRequest, "data cannot be converted to JSON for the publish hook: "+err.Error())
			return
		}
	}
	ctx, done := h.call()
	resp, err := h.client().Publish(ctx, &hooks.PublishRequest{Client: c.ClientID(), User: c.Ident().User, Stream: m.S, Data: data})
	done()
	if !c.Conn().Accepting() {
		return
	}
	if err != nil {
		c.hookFailed(hooks.Publish, m.ID, m.S, err)
		return
	}
	if resp.Data != nil {
		raw, err := protocol.RawFromJSON(resp.Data)
		if err != nil {
			c.hookFailed(hooks.Publish, m.ID, m.S, err)
			return
		}
		m.Data = raw
	}
	h.mu.Lock()
	h.pub = m.S
	h.mu.Unlock()
	c.Publish(m)
	h.mu.Lock()
	h.pub = ""
	h.mu.Unlock()
}

// hookFailed answers a request its hook refused (4003, with the
// application's reason) or did not answer (4500, retry).
func (c *conn) hookFailed(hook hooks.Hook, id uint64, stream string, err error) {
	var denied *hooks.Denied
	if errors.As(err, &denied) {
		c.SendError(id, stream, protocol.CodeForbidden, cmp.Or(denied.Reason, "refused by the application"))
		return
	}
	c.Node().Logger().Warn(hook.String()+" hook failed", "stream", stream, "err", err)
	c.SendError(id, stream, protocol.CodeInternal, hook.String()+" hook unavailable; retry later")
}
