package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reactor reads every client connection of a process on one goroutine with
// epoll, in place of a reader goroutine per connection. A goroutine per
// connection cost the client core about 11 µs per message received (a
// wakeup, a scheduler switch and a second read that meets EAGAIN); at 10,000
// subscribers that made the client, not the server, set the broadcast
// figures. The reactor reads each ready socket once per event
// (level-triggered, so data left behind is reported again) into one shared
// buffer and decodes the frames there.
//
// Only the reactor closes a connection's file descriptor, so a number it
// reads from can never have been reused: Close from elsewhere shuts the
// socket down and the reactor, seeing the hangup, ends the connection.
type reactor struct {
	epfd int
	file *os.File // epfd, kept open for the process's life
	rc   syscall.RawConn
	buf  []byte // reactor goroutine only

	mu    sync.Mutex
	conns map[int32]*huddleConn
}

var (
	reactorOnce sync.Once
	theReactor  *reactor
	reactorErr  error
)

// clientReactor returns the process's reactor, starting it on first use.
func clientReactor() (*reactor, error) {
	reactorOnce.Do(func() {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			reactorErr = fmt.Errorf("bench: epoll: %w", err)
			return
		}
		// The runtime's poller watches the epoll set itself, so that the
		// reactor parks like any goroutine when there is nothing to read
		// instead of holding its P in a blocking epoll_wait (with the
		// client pinned to one core, GOMAXPROCS is 1: the dialers would
		// wait for sysmon to take the P back).
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			reactorErr = fmt.Errorf("bench: epoll: %w", err)
			return
		}
		f := os.NewFile(uintptr(fd), "epoll")
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			reactorErr = fmt.Errorf("bench: epoll: %w", err)
			return
		}
		theReactor = &reactor{epfd: fd, file: f, rc: rc, buf: make([]byte, 256<<10), conns: map[int32]*huddleConn{}}
		go theReactor.run()
	})
	return theReactor, reactorErr
}

// reactorSpin is how long the reactor keeps polling before it sleeps in
// epoll_wait (Shape.Spin). On loopback the kernel wakes a sleeping reader
// in the sender's context: while the client sleeps between packets, the
// server's core pays for waking it, once per subscriber (19% of the
// server's samples at 10,000 subscribers). A remote client never costs a
// server that; a client that keeps polling through a fan-out does not
// either.
var reactorSpin atomic.Int64

const readEvents = unix.EPOLLIN | unix.EPOLLRDHUP

// add starts reading c.
func (r *reactor) add(c *huddleConn) error {
	r.mu.Lock()
	r.conns[int32(c.fd)] = c
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: readEvents, Fd: int32(c.fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.conns, int32(c.fd))
		r.mu.Unlock()
		return fmt.Errorf("bench: epoll add: %w", err)
	}
	return nil
}

// pause stops (or resumes) reading c. A paused connection still reports a
// hangup, so Close ends it.
func (r *reactor) pause(c *huddleConn, paused bool) {
	c.wmu.Lock() // the reactor closes fd under it: the number may not be ours any more
	defer c.wmu.Unlock()
	if c.dead {
		return
	}
	ev := unix.EpollEvent{Events: readEvents, Fd: int32(c.fd)}
	if paused {
		ev.Events = 0 // a hangup (both ways, or a reset) is always reported
	}
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev)
}

func (r *reactor) run() {
	evs := make([]unix.EpollEvent, 512)
	for {
		// Look without sleeping first: while messages keep coming this
		// skips the sleep and the wakeup (which the sender would pay for
		// on loopback).
		n, err := unix.EpollWait(r.epfd, evs, 0)
		if spin := time.Duration(reactorSpin.Load()); spin > 0 {
			for t := time.Now(); n == 0 && err == nil && time.Since(t) < spin; {
				runtime.Gosched()
				n, err = unix.EpollWait(r.epfd, evs, 0)
			}
		}
		if n == 0 && err == nil {
			rerr := r.rc.Read(func(uintptr) bool {
				n, err = unix.EpollWait(r.epfd, evs, 0)
				return n != 0 || err != nil
			})
			if rerr != nil {
				panic(fmt.Sprintf("bench: epoll wait: %v", rerr))
			}
		}
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			panic(fmt.Sprintf("bench: epoll_wait: %v", err))
		}
		for i := range evs[:n] {
			r.mu.Lock()
			c := r.conns[evs[i].Fd]
			r.mu.Unlock()
			if c == nil {
				continue
			}
			if !c.readable(r.buf) {
				r.end(c)
			}
		}
	}
}

// end forgets c, closes its socket and tells its handler.
func (r *reactor) end(c *huddleConn) {
	r.mu.Lock()
	delete(r.conns, int32(c.fd))
	r.mu.Unlock()
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	c.wmu.Lock()
	c.dead = true
	_ = unix.Close(c.fd)
	c.wmu.Unlock()
	ev := Event{Kind: EventClosed, At: time.Now().UnixNano(), Code: int(c.closeCode.Load())}
	c.h(&ev)
	close(c.done)
}
