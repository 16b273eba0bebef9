// Package transport owns long-lived connections below any wire protocol:
// WebSockets, and HTTP responses that stream (server-sent events, Framed):
// the accept paths (raw epoll sockets on Linux, a reader and a writer
// goroutine per connection elsewhere), the request's head (and a short
// body), frame parsing, each connection's outbound queue and writer, the
// bounded worker pool and the whisper pacer.
//
// It knows no protocol's messages. At the upgrade a Handler gives every
// connection a Session, which turns complete messages into work and encodes
// what the transport must say by itself (a disconnect before the close
// frame of a slow consumer). The transport must not hold a lock across I/O
// or a Session call, except the hooks named Locked.
package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/netpoll"
	"github.com/huddle-rt/huddle/internal/ratelog"
)

// HandshakeTimeout bounds how long a new connection may take to send its
// HTTP request head.
const HandshakeTimeout = 10 * time.Second

// Config tunes a Transport.
type Config struct {
	// MaxQueue bounds a connection's unsent bytes; beyond it the
	// connection ends as a slow consumer (Session.Goodbye).
	MaxQueue int
	// Workers bounds the goroutines that read, process and write.
	Workers int
	// WhisperPace holds whisper-only output for up to this long after the
	// connection's last write (see pacer). Zero: no pacing.
	WhisperPace time.Duration
	// ForcePortable uses a goroutine pair per connection even where epoll
	// exists.
	ForcePortable bool
	Logger        *slog.Logger
}

// Handler routes new connections.
type Handler interface {
	// UpgradePath reports whether a request for path is a WebSocket
	// endpoint; every other request goes to the HTTP listener.
	UpgradePath(path string) bool
	// Upgrade answers the upgrade request whose head (request line and
	// headers) is given, writing the response to w, and returns the
	// connection's session. On error the refusal has been written.
	Upgrade(c *Conn, head []byte, w io.Writer) (Session, error)
}

// Reason is why the transport ends a connection by itself.
type Reason uint8

// Reasons passed to Session.Goodbye.
const (
	BadFrame     Reason = iota // the peer broke WebSocket framing
	TooLarge                   // a message over Session.MaxMessage
	SlowConsumer               // the queue would exceed Config.MaxQueue
)

// Session is a connection's protocol side.
type Session interface {
	// OnMessage handles one complete message. The payload is valid only
	// during the call. Calls never overlap.
	OnMessage(payload []byte)
	// MaxMessage is the largest message the session takes now.
	MaxMessage() int
	// Goodbye encodes the message sent before the close frame when the
	// transport ends the connection, its close code, and whether the peer
	// may reconnect. It runs with the connection's lock held and must not
	// take it.
	Goodbye(r Reason, detail string) (code uint16, msg []byte, reconnect bool)
	// Check runs the session's timed duties (pings, deadlines); the
	// transport calls it about once a second while the connection is open.
	Check(now time.Time)
	// WaitingLocked reports whether the session has replies waiting for
	// room in the queue; if so, Room runs after each write. The
	// connection's lock is held.
	WaitingLocked() bool
	// Room is called after a write while WaitingLocked.
	Room()
	// Closed runs once, after the socket closed. clean reports that the
	// peer sent a close frame or was told not to reconnect.
	Closed(clean bool)
}

// Starter is a Session that speaks first: Started runs once the upgrade's
// response is on its way, so what it queues follows it.
type Starter interface {
	Started()
}

// Counters are the transport's totals, read by metrics.
type Counters struct {
	Accepted         atomic.Int64 // WebSocket connections upgraded
	BytesIn          atomic.Int64
	BytesOut         atomic.Int64
	FramesOut        atomic.Int64 // data frames written, each batching messages
	Conflated        atomic.Int64 // whispers that replaced a queued one
	Dropped          atomic.Int64 // connections whose peer vanished without a close
	SlowConsumers    atomic.Int64 // connections closed for their queue
	WhisperQueueFull atomic.Int64 // whispers dropped for a full queue
}

// Transport is the WebSocket machinery of one node.
type Transport struct {
	cfg      Config
	log      *slog.Logger
	handler  Handler
	poller   *netpoll.Poller // nil in portable mode
	pool     *workerPool
	pacer    *pacer // nil: whispers are not paced
	reg      registry
	httpLn   *chanListener
	stop     chan struct{}
	stopOnce sync.Once

	Counters Counters
	slowLog  ratelog.Limiter // slow-consumer disconnects, a line every 10 s
}

// New builds a transport; h routes its connections.
func New(cfg Config, h Handler) (*Transport, error) {
	t := &Transport{cfg: cfg, log: cfg.Logger, handler: h, httpLn: newChanListener(), stop: make(chan struct{}), slowLog: ratelog.Limiter{Every: 10 * time.Second}}
	if t.log == nil {
		t.log = slog.Default()
	}
	if !cfg.ForcePortable {
		var err error
		t.poller, err = netpoll.New(t.onReady)
		if err != nil && !errors.Is(err, netpoll.ErrUnsupported) {
			return nil, err
		}
	}
	t.pool = newWorkerPool(max(cfg.Workers, 1))
	if cfg.WhisperPace > 0 {
		t.pacer = newPacer(cfg.WhisperPace)
	}
	return t, nil
}

// Portable reports whether connections run on goroutines instead of epoll.
func (t *Transport) Portable() bool { return t.poller == nil }

// Paced reports whether whispers are paced.
func (t *Transport) Paced() bool { return t.pacer != nil }

// HTTPListener yields the connections whose request was not an upgrade,
// with the bytes already read replayed.
func (t *Transport) HTTPListener() net.Listener { return t.httpLn }

// Raw reports whether Serve accepts on ln with the raw epoll loop.
func (t *Transport) Raw(ln net.Listener) bool {
	_, tcp := ln.(*net.TCPListener)
	return tcp && t.poller != nil
}

// StopAccepting ends raw accept loops (within 100ms); portable ones end
// when their listener closes.
func (t *Transport) StopAccepting() { t.stopOnce.Do(func() { close(t.stop) }) }

// Close releases the workers, the pacer, the poller and the HTTP listener.
// Connections must be destroyed first.
func (t *Transport) Close() {
	_ = t.httpLn.Close()
	if t.pacer != nil {
		t.pacer.stop()
	}
	t.pool.close()
	if t.poller != nil {
		_ = t.poller.Close()
	}
}

// Count returns the number of connections, upgraded or not.
func (t *Transport) Count() int { return t.reg.count() }

// Conns appends every connection to dst.
func (t *Transport) Conns(dst []*Conn) []*Conn { return t.reg.appendAll(dst) }

// Sweep runs every connection's timed duties: unfinished handshakes and
// closes, then the sessions' Check.
func (t *Transport) Sweep(now time.Time, batch []*Conn) []*Conn {
	batch = t.reg.appendAll(batch[:0])
	for _, c := range batch {
		c.check(now)
	}
	clear(batch)
	return batch
}

// onReady is the poller's handler.
func (t *Transport) onReady(key int32, ev netpoll.Event) {
	c := t.reg.get(key)
	if c == nil {
		return
	}
	var want uint8
	if ev&netpoll.Readable != 0 {
		want |= evRead
	}
	if ev&netpoll.Writable != 0 {
		want |= evWrite
	}
	if ev&netpoll.Hangup != 0 {
		want |= evHangup
	}
	c.schedule(want)
}

// registry holds every live connection in slots; a slot's index is the
// connection's key in the poller.
type registry struct {
	mu    sync.Mutex // guards the following
	slots []*Conn
	free  []int32
	n     int
}

// add assigns c a slot (c.slot is set under the registry lock, which is what
// orders it before the poller's lookups).
func (r *registry) add(c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	if k := len(r.free); k > 0 {
		c.slot = r.free[k-1]
		r.free = r.free[:k-1]
		r.slots[c.slot] = c
		return
	}
	r.slots = append(r.slots, c)
	c.slot = int32(len(r.slots) - 1)
}

func (r *registry) remove(slot int32, c *Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if int(slot) < len(r.slots) && r.slots[slot] == c {
		r.slots[slot] = nil
		r.free = append(r.free, slot)
		r.n--
	}
}

func (r *registry) get(slot int32) *Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slot >= 0 && int(slot) < len(r.slots) {
		return r.slots[slot]
	}
	return nil
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *registry) appendAll(dst []*Conn) []*Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.slots {
		if c != nil {
			dst = append(dst, c)
		}
	}
	return dst
}
