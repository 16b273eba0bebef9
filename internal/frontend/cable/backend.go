package cable

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/protocol"
)

// The application backend (AnyCable RPC): with Config.RPC set, a connection
// without a jid token is accepted or refused by the application's connect,
// and the channels that are not $pubsub or Turbo Streams are the
// application's: their subscribe, unsubscribe and message commands go to
// it, and its answers say what to transmit and which streams to follow.
// Calls run off the transport's workers, one connection's in order.

// maxRPCQueue bounds the commands of one connection waiting for the
// backend; past it the connection is told to slow down by dropping them.
const maxRPCQueue = 64

// rpcConn is a connection's side of the backend.
type rpcConn struct {
	env rpc.Env // url and headers; cstate guarded by mu
	sid string  // the session id, named to the application before it accepts
	jid bool    // identified by a jid token: no connect call

	mu          sync.Mutex // guards the following
	identifiers string
	queue       []func()
	running     bool
	closed      bool // the connection closed: nothing more is queued
	accepted    bool // the application accepted the connect: it hears of the close
}

// envCopy returns the env with its own cstate map. r.mu must be held.
func (r *rpcConn) envCopy() rpc.Env {
	env := r.env
	env.CState = maps.Clone(r.env.CState)
	return env
}

// rpcChannel is an application channel's state.
type rpcChannel struct {
	streams []string
	istate  map[string]string
	// history is the subscribe's history request (ext), until the
	// subscribe's answer has started the streams it names.
	history *wire.HistoryRequest
	// replaying counts the streams whose missed publications are still
	// going out; confirm_history (or reject_history, when one of them
	// could not be recovered) follows the last.
	replaying int
	lost      bool
	// leaving: its unsubscribe waits for the backend. The client may
	// subscribe to the same identifier again meanwhile: that is a new
	// channel, queued behind.
	leaving bool
}

// backendStats counts what the backend did, for metrics.
type backendStats struct {
	DisconnectsDropped atomic.Int64
	CommandsDropped    atomic.Int64
	Errors             atomic.Int64
}

// BackendStats returns the backend calls that failed, the disconnect calls
// dropped from a full queue, and the commands dropped because too many of
// their connection's waited.
func (f *Frontend) BackendStats() (errors, disconnectsDropped, commandsDropped int64) {
	return f.backend.Errors.Load(), f.backend.DisconnectsDropped.Load(), f.backend.CommandsDropped.Load()
}

// requestEnv is the env of a connection's upgrade request: its URL and the
// headers the application asked for.
func (f *Frontend) requestEnv(r *requestInfo) rpc.Env {
	env := rpc.Env{URL: r.url, Headers: make(map[string]string, len(f.cfg.RPCHeaders))}
	for _, h := range f.cfg.RPCHeaders {
		if v := r.header.Get(h); v != "" {
			env.Headers[strings.ToLower(h)] = v // lower case, as AnyCable sends them
		}
	}
	if r.remoteIP != "" {
		env.Headers["REMOTE_ADDR"] = r.remoteIP // what Rails' request.remote_ip starts from, as anycable-go sends it
	}
	return env
}

type requestInfo struct {
	url      string
	header   http.Header
	remoteIP string
}

// enqueue runs fn on the connection's backend goroutine, after the calls
// before it. It reports false when too many wait.
func (c *conn) enqueue(fn func()) bool {
	r := c.rpc
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	if len(r.queue) >= maxRPCQueue {
		r.mu.Unlock()
		c.fe.backend.CommandsDropped.Add(1)
		return false
	}
	r.queue = append(r.queue, fn)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		c.fe.backends.Add(1)
		go c.runBackend()
	}
	return true
}

func (c *conn) runBackend() {
	defer c.fe.backends.Done()
	r := c.rpc
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		fn := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		fn()
	}
}

// rpcConnect asks the application to accept the connection; it runs on the
// backend goroutine and says welcome, or disconnect.
func (c *conn) rpcConnect() {
	ctx, cancel := context.WithTimeout(rpc.WithSession(context.Background(), c.rpc.sid), 10*time.Second)
	defer cancel()
	c.rpc.mu.Lock()
	env := c.rpc.envCopy()
	c.rpc.mu.Unlock()
	resp, err := c.fe.cfg.RPC.Connect(ctx, &rpc.ConnectRequest{Env: env})
	switch {
	case err != nil || resp.Status == rpc.Error:
		c.fe.backend.Errors.Add(1)
		c.fe.node.Logger().Warn("rpc connect failed", "err", err, "error_msg", errorMsg(resp, err))
		c.goodbye(wire.ReasonServerRestart, true)
		return
	case resp.Status == rpc.Failure:
		c.transmit(resp.Transmissions, true)
		c.goodbye(wire.ReasonUnauthorized, false)
		return
	}
	c.rpc.mu.Lock()
	c.rpc.identifiers, c.rpc.accepted = resp.Identifiers, true
	if resp.Env != nil && resp.Env.CState != nil {
		c.rpc.env.CState = resp.Env.CState
	}
	c.rpc.mu.Unlock()
	// Under the connection's lock: a close either came first (and the
	// session stays unconnected) or comes after, and then Closed sees the
	// identity and undoes the connect.
	tc := c.Conn()
	tc.Lock()
	open := tc.OpenLocked()
	if open {
		c.ConnectAs(&auth.Identity{User: resp.Identifiers}, c.rpc.sid)
	}
	tc.Unlock()
	if !open {
		return
	}
	c.Conn().Send(wire.AppendWelcome(nil, c.d, wire.Welcome{SID: c.ClientID()}))
	c.transmit(resp.Transmissions, true)
	c.sseSubscribe()
}

// errorMsg is a failed call's error_msg, when it got an answer.
func errorMsg[R *rpc.ConnectResponse | *rpc.CommandResponse](resp R, err error) string {
	if err != nil || resp == nil {
		return ""
	}
	switch r := any(resp).(type) {
	case *rpc.ConnectResponse:
		return r.ErrorMsg
	case *rpc.CommandResponse:
		return r.ErrorMsg
	}
	return ""
}

// goodbye disconnects with an Action Cable reason.
func (c *conn) goodbye(reason string, reconnect bool) {
	c.Conn().Close(uint16(protocol.CodeUnauthorized), reason, wire.AppendDisconnect(nil, c.d, reason, reconnect), reconnect)
}

// transmit sends the application's messages to the client; skipWelcome
// leaves out its welcome (the server sends its own, with the session id).
func (c *conn) transmit(msgs []string, skipWelcome bool) {
	for _, m := range msgs {
		if skipWelcome {
			var probe struct {
				Type string `json:"type"`
			}
			if json.Unmarshal([]byte(m), &probe) == nil && (probe.Type == "welcome" || probe.Type == "disconnect") {
				continue
			}
		}
		b, err := wire.AppendTransmission(nil, c.d, []byte(m))
		if err != nil {
			c.fe.node.Logger().Warn("rpc transmission is not JSON; not sent", "err", err)
			continue
		}
		c.Conn().Send(b)
	}
}

// rpcCommand sends a channel command to the application and applies its
// answer. It runs on the backend goroutine.
func (c *conn) rpcCommand(ch *channel, command, data string) {
	c.rpc.mu.Lock()
	req := &rpc.CommandRequest{Command: command, Identifier: ch.identifier, ConnectionIdentifiers: c.rpc.identifiers, Data: data, Env: c.rpc.envCopy()}
	c.rpc.mu.Unlock()
	c.mu.Lock()
	req.Env.IState = maps.Clone(ch.rpc.istate)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(rpc.WithSession(context.Background(), c.ClientID()), 10*time.Second)
	defer cancel()
	resp, err := c.fe.cfg.RPC.Command(ctx, req)
	if err != nil || resp.Status == rpc.Error {
		c.fe.backend.Errors.Add(1)
		c.fe.node.Logger().Warn("rpc command failed", "command", command, "identifier", ch.identifier, "err", err, "error_msg", errorMsg(resp, err))
		switch command {
		case "subscribe":
			c.forget(ch)
			c.Conn().Send(wire.AppendReply(nil, c.d, wire.RejectSubscription, ch.identifier))
			return
		case "unsubscribe":
			// The client has left the channel whatever the application
			// said: its streams stop here all the same.
			resp = &rpc.CommandResponse{Status: rpc.Success}
		default:
			return
		}
	}
	c.apply(ch, command, resp)
}

// apply carries out the application's answer to a command.
func (c *conn) apply(ch *channel, command string, resp *rpc.CommandResponse) {
	if resp.Env != nil {
		c.rpc.mu.Lock()
		for k, v := range resp.Env.CState {
			if c.rpc.env.CState == nil {
				c.rpc.env.CState = make(map[string]string)
			}
			c.rpc.env.CState[k] = v
		}
		c.rpc.mu.Unlock()
	}
	if command == "subscribe" && resp.Status == rpc.Failure {
		c.forget(ch)
		if len(resp.Transmissions) == 0 {
			resp.Transmissions = []string{string(wire.AppendReply(nil, wire.JSON, wire.RejectSubscription, ch.identifier))}
		}
		c.transmit(resp.Transmissions, false)
		return
	}
	c.mu.Lock()
	if resp.Env != nil && resp.Env.IState != nil {
		if ch.rpc.istate == nil {
			ch.rpc.istate = make(map[string]string)
		}
		for k, v := range resp.Env.IState {
			ch.rpc.istate[k] = v
		}
	}
	// One subscription per stream and connection: a stream that another
	// channel of the connection follows too is shared, its publications
	// wrapped once for each channel (rewrap).
	var stop, rewrap []string
	var stopped []string
	if resp.StopStreams || command == "unsubscribe" {
		stopped, ch.rpc.streams = ch.rpc.streams, nil
	} else {
		for _, s := range resp.StoppedStreams {
			if i := slices.Index(ch.rpc.streams, s); i >= 0 {
				ch.rpc.streams = slices.Delete(ch.rpc.streams, i, i+1)
				stopped = append(stopped, s)
			}
		}
	}
	for _, s := range stopped {
		if c.byStreamLocked(s) != nil {
			rewrap = append(rewrap, s)
		} else {
			stop = append(stop, s)
		}
	}
	var start []string
	for _, s := range resp.Streams {
		if !auth.ValidStream(s) || slices.Contains(ch.rpc.streams, s) {
			continue
		}
		shared := c.byStreamLocked(s) != nil
		ch.rpc.streams = append(ch.rpc.streams, s)
		if shared {
			rewrap = append(rewrap, s)
		} else {
			start = append(start, s)
		}
	}
	wrappers := make([]*core.Wrapper, len(rewrap))
	for i, s := range rewrap {
		wrappers[i] = c.wrapperLocked(s)
	}
	var history *wire.HistoryRequest
	if command == "subscribe" {
		history, ch.rpc.history = ch.rpc.history, nil
		if history != nil {
			ch.rpc.replaying = len(start)
		}
	}
	c.mu.Unlock()
	for _, s := range stop {
		c.Unsubscribe(&protocol.Unsubscribe{S: s})
	}
	for i, s := range rewrap {
		c.Rewrap(s, wrappers[i])
	}
	c.transmit(resp.Transmissions, false)
	for _, s := range start {
		m := &protocol.Subscribe{ID: subscribeID, S: s}
		var since int64 // unix ms
		if history != nil {
			if pos, ok := history.Streams[s]; ok {
				m.Recover = &protocol.Position{Epoch: pos.Epoch, Offset: pos.Offset}
			} else if history.Since > 0 {
				since = history.Since * 1000
			}
		}
		c.SubscribeSince(m, ch.wrapper, since)
	}
	if history != nil && len(start) == 0 {
		c.Conn().Send(wire.AppendReply(nil, c.d, wire.ConfirmHistory, ch.identifier))
	}
	if command == "unsubscribe" {
		c.forget(ch)
	}
	if resp.Disconnect {
		c.goodbye(wire.ReasonRemote, false)
	}
}

// forget drops a channel the application refused or left.
func (c *conn) forget(ch *channel) {
	c.mu.Lock()
	c.removeLocked(ch)
	c.mu.Unlock()
}

// disconnecter calls the application's disconnect for closed connections,
// in the background, at most Config.DisconnectRate a second; what does not
// fit its queue is dropped and counted.
type disconnecter struct {
	client rpc.Backend
	queue  chan disconnectCall
	rate   float64
	stats  *backendStats
	log    *slog.Logger

	done    chan struct{}      // closed when run returns
	stop    context.Context    // ends when the calls still queued are to be dropped
	abandon context.CancelFunc // ends stop

	mu     sync.Mutex // guards closed, and sends on queue
	closed bool
}

func (d *disconnecter) run() {
	defer close(d.done)
	var every time.Duration
	if d.rate > 0 {
		every = time.Duration(float64(time.Second) / d.rate)
	}
	for call := range d.queue {
		if d.stop.Err() != nil { // the server stops and may wait no longer
			d.stats.DisconnectsDropped.Add(1)
			continue
		}
		ctx, cancel := context.WithTimeout(rpc.WithSession(d.stop, call.sid), 10*time.Second)
		resp, err := d.client.Disconnect(ctx, call.req)
		cancel()
		if err != nil || resp.Status != rpc.Success {
			d.stats.Errors.Add(1)
			d.log.Warn("rpc disconnect failed", "err", err)
		}
		if every > 0 {
			select {
			case <-time.After(every):
			case <-d.stop.Done():
			}
		}
	}
}

// disconnectCall is a queued disconnect: the request and its session id.
type disconnectCall struct {
	sid string
	req *rpc.DisconnectRequest
}

// push queues call, or drops it (counted) when the queue is full or closed.
func (d *disconnecter) push(call disconnectCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		d.stats.DisconnectsDropped.Add(1)
		return
	}
	select {
	case d.queue <- call:
	default:
		d.stats.DisconnectsDropped.Add(1)
	}
}

// close ends the queue: run makes the calls still queued, then returns.
func (d *disconnecter) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.closed = true
		close(d.queue)
	}
}

// Close lets the connections' last backend calls and the disconnect calls
// they queue be made, then stops; the server calls it after its
// connections are gone. What is still queued when ctx ends is dropped and
// counted.
func (f *Frontend) Close(ctx context.Context) {
	if f.disconnects == nil {
		return
	}
	calls := make(chan struct{})
	go func() {
		f.backends.Wait()
		close(calls)
	}()
	select {
	case <-calls:
	case <-ctx.Done():
	}
	d := f.disconnects
	d.close()
	select {
	case <-d.done:
	case <-ctx.Done():
		d.abandon()
		<-d.done
	}
}

// rpcClosed drops the commands waiting for the backend of a closed
// connection and queues its disconnect call behind the call in flight: a
// connect in flight may still be accepted, and the application must then
// hear of the close too.
func (c *conn) rpcClosed() {
	var subs []string // the channels as they were at the close
	c.mu.Lock()
	for _, ch := range c.chans {
		if ch.rpc != nil && !ch.rpc.leaving {
			subs = append(subs, ch.identifier)
		}
	}
	c.mu.Unlock()
	r := c.rpc
	r.mu.Lock()
	r.closed = true
	clear(r.queue)
	r.queue = append(r.queue[:0], func() { c.queueDisconnect(subs) })
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		c.fe.backends.Add(1)
		go c.runBackend()
	}
}

// queueDisconnect hands the application's disconnect call for a closed
// connection it accepted to the disconnecter. It runs on the backend
// goroutine, after the connection's last call.
func (c *conn) queueDisconnect(subscriptions []string) {
	r := c.rpc
	r.mu.Lock()
	req := &rpc.DisconnectRequest{Identifiers: r.identifiers, Env: r.envCopy(), Subscriptions: subscriptions}
	// A jid connection never met the application unless it used one of
	// its channels (anycable-go's disconnect_mode auto).
	tell := r.accepted || r.jid && len(subscriptions) > 0
	r.mu.Unlock()
	if !tell || c.fe.disconnects == nil {
		return
	}
	c.fe.disconnects.push(disconnectCall{sid: r.sid, req: req})
}
