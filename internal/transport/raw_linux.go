//go:build linux

package transport

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AcceptRaw accepts with accept4 on the listener's descriptor and registers
// each new socket with the poller straight away: no net.Conn, no runtime
// poller entry and no goroutine per connection, even during the handshake.
// It waits for the listener with poll(2) in slices of 100ms so that it
// notices StopAccepting; close the listener only after this returns.
func (t *Transport) AcceptRaw(ln *net.TCPListener) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	lfd := -1
	_ = rc.Control(func(fd uintptr) { lfd = int(fd) })
	var delay time.Duration
	pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	for {
		select {
		case <-t.stop:
			return nil
		default:
		}
		pfd[0].Revents = 0
		if _, err := unix.Poll(pfd, 100); err != nil && err != unix.EINTR {
			return os.NewSyscallError("poll", err)
		}
		if pfd[0].Revents&unix.POLLNVAL != 0 {
			return nil // the listener was closed
		}
		if pfd[0].Revents == 0 {
			continue
		}
		for i := 0; i < 1024; i++ {
			fd, _, e := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if e == nil {
				t.startRaw(fd)
				delay = 0
				continue
			}
			if e == unix.EINTR || e == unix.ECONNABORTED {
				continue
			}
			if e == unix.EAGAIN {
				break
			}
			if errors.Is(e, unix.EMFILE) || errors.Is(e, unix.ENFILE) || errors.Is(e, unix.ENOBUFS) || errors.Is(e, unix.ENOMEM) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t.log.Warn("accept failed; retrying", "err", e, "delay", delay)
				time.Sleep(delay)
				break
			}
			return os.NewSyscallError("accept4", e)
		}
	}
}

// startRaw registers an accepted socket; its HTTP request head is read by
// workers as it arrives.
func (t *Transport) startRaw(fd int) { t.startRawWith(fd, nil) }

// startRawWith is startRaw for a socket whose first bytes were read
// already (read).
func (t *Transport) startRawWith(fd int, read []byte) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &Conn{t: t, fd: fd, created: time.Now().UnixNano(), partial: read}
	c.handshaking.Store(true)
	c.lastSeen.Store(c.created)
	t.reg.add(c)
	if err := t.poller.Add(fd, c.slot); err != nil {
		t.log.Error("cannot watch connection", "err", err)
		c.destroy(true)
		return
	}
	if len(read) > 0 {
		c.schedule(evRead) // no new bytes may come to make it readable
	}
}

// dupFd returns a non-blocking duplicate of a TCP connection's socket.
func dupFd(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(s uintptr) { fd, err = unix.Dup(int(s)) })
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func rawRead(fd int, b []byte) (int, error) {
	for {
		n, err := sysRead(fd, b)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return 0, errWouldBlock
		case err != nil:
			return 0, err
		case n == 0:
			return 0, errEOF
		}
		return n, nil
	}
}

// rawWrite writes as much of b as the socket takes now.
func rawWrite(fd int, b []byte) (int, error) {
	total := 0
	for total < len(b) {
		n, err := sysWrite(fd, b[total:])
		if n > 0 {
			total += n
		}
		switch {
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return total, nil
		case err != nil:
			return total, err
		}
	}
	return total, nil
}

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket,
// made without telling the Go scheduler: such a call never waits, and
// announcing it (entersyscall) costs more than it saves. A P marked "in a
// syscall" also keeps the runtime's sysmon thread waking every 20µs to look
// at it, and hands the P to another thread when a write runs long; on one
// core, that waking and handing over cost a fifth of the server's CPU.
func sysRead(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func closeFd(fd int) { _ = unix.Close(fd) }

// fdConn turns an accepted socket into a net.Conn for net/http. The
// descriptor is duplicated by the runtime and the original closed.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "http")
	defer f.Close()
	return net.FileConn(f)
}

// peerIP is the address at the other end of socket fd; empty when it
// cannot be read (the peer is gone).
func peerIP(fd int) string {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return ""
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]).String()
	case *unix.SockaddrInet6:
		return net.IP(a.Addr[:]).String()
	}
	return ""
}
