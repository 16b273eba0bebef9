// Package netpoll reports readiness of many sockets to one goroutine, so that
// idle connections need no goroutine of their own.
//
// It watches raw file descriptors taken with SyscallConn (never
// conn.File(), which duplicates the descriptor and makes it blocking).
// Registration is edge-triggered, once per descriptor, for reading and
// writing: an event means "something changed since the last one", so the
// caller reads until a read comes back short and, after a short write,
// waits for a Writable event. Events may come while the caller is still
// busy with the descriptor; keeping one worker per connection is the
// caller's business. It owns no buffers and does no I/O on the descriptors
// it watches.
package netpoll

import "errors"

// Event is a readiness bit set.
type Event uint32

// Readiness bits reported to the handler.
const (
	Readable Event = 1 << iota
	Writable
	Hangup // peer closed or error; a read will say which
)

// ErrUnsupported is returned by New where there is no epoll.
var ErrUnsupported = errors.New("netpoll: not supported on this platform")

// Handler receives readiness of the descriptor registered with key. It runs
// on the poller's goroutine and must not block.
type Handler func(key int32, ev Event)
