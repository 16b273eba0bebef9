//go:build linux

package netpoll

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller is an epoll instance with one goroutine reporting its events.
//
// The goroutine never blocks in epoll_wait: it takes what is ready with a
// zero timeout and, when nothing is, waits for the epoll descriptor itself
// to become readable in the Go runtime's poller (an epoll instance is
// readable while it has events). A blocking epoll_wait would hold the P in
// a system call; with GOMAXPROCS=1 the goroutines the runtime's poller
// wakes (an HTTP client's answer, a Redis reply) would then wait for
// sysmon to take the P back, up to 10 ms.
type Poller struct {
	epfd    int
	file    *os.File // epfd, registered with the runtime's poller
	raw     syscall.RawConn
	handler Handler
	done    chan struct{}

	mu     sync.Mutex // guards closed
	closed bool
}

// New starts a poller that reports events to h.
func New(h Handler) (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("netpoll: epoll fd: %w", err)
	}
	// Non-blocking, so os.NewFile registers it with the runtime's poller.
	file := os.NewFile(uintptr(epfd), "epoll")
	raw, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("netpoll: epoll fd: %w", err)
	}
	p := &Poller{epfd: epfd, file: file, raw: raw, handler: h, done: make(chan struct{})}
	go p.run()
	return p, nil
}

const events = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// Add starts watching fd; events report key. The registration lasts until
// Remove: there is nothing to re-arm after an event.
func (p *Poller) Add(fd int, key int32) error {
	ev := unix.EpollEvent{Events: events, Fd: key}
	if err := epollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("netpoll: add fd %d: %w", fd, err)
	}
	return nil
}

// Remove stops watching fd. Call it before closing fd.
func (p *Poller) Remove(fd int) error {
	if err := epollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netpoll: remove fd %d: %w", fd, err)
	}
	return nil
}

// Close stops the poller's goroutine and releases the epoll instance.
func (p *Poller) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.file.SetReadDeadline(time.Now()) // wakes a wait for events
	<-p.done
	return p.file.Close()
}

func (p *Poller) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Poller) run() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		// Take what is ready without a blocking system call; when nothing
		// is, park in the runtime's poller until the epoll fd is readable
		// (Close's deadline ends the wait).
		n, err := epollWaitNow(p.epfd, events)
		if n == 0 && err == nil {
			rerr := p.raw.Read(func(uintptr) bool {
				n, err = epollWaitNow(p.epfd, events)
				return n > 0 || err != nil
			})
			if rerr != nil {
				if p.isClosed() {
					return
				}
				err = rerr
			}
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		for i := 0; i < n; i++ {
			var ev Event
			e := events[i].Events
			if e&(unix.EPOLLIN|unix.EPOLLPRI) != 0 {
				ev |= Readable
			}
			if e&unix.EPOLLOUT != 0 {
				ev |= Writable
			}
			if e&(unix.EPOLLHUP|unix.EPOLLRDHUP|unix.EPOLLERR) != 0 {
				ev |= Hangup | Readable
			}
			p.handler(events[i].Fd, ev)
		}
		if p.isClosed() {
			return
		}
		// Let the work just handed out run before looking again: with one
		// P, a poller that never blocks would otherwise keep it.
		runtime.Gosched()
	}
}

// epollCtl and epollWaitNow never wait, so they skip the scheduler's
// syscall bookkeeping (see sysWrite in internal/server).
func epollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func epollWaitNow(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
