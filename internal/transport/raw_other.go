//go:build !linux

package transport

import (
	"errors"
	"net"
)

var errNoRaw = errors.New("raw sockets need linux")

func (t *Transport) AcceptRaw(ln *net.TCPListener) error { return errNoRaw }
func rawRead(fd int, b []byte) (int, error)              { return 0, errNoRaw }
func rawWrite(fd int, b []byte) (int, error)             { return 0, errNoRaw }
func closeFd(fd int)                                     {}
func fdConn(fd int) (net.Conn, error)                    { return nil, errNoRaw }
func peerIP(fd int) string                               { return "" }
func dupFd(nc net.Conn) (int, error)                     { return -1, errNoRaw }
func (t *Transport) startRawWith(fd int, read []byte)    {}
