// Package netpoll reports readiness of many sockets to one goroutine, so that
// idle connections need no goroutine of their own.
//
// It watches raw file descriptors taken with SyscallConn (never
// conn.File(), which duplicates the descriptor and makes it blocking). Every
// registration is one-shot: after an event is reported the descriptor stays
// silent until Arm is called again, which is what lets the caller guarantee
// at most one worker per connection. It owns no buffers and does no I/O on
// the descriptors it watches.
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
