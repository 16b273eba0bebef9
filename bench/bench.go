// Package bench generates load against a Huddle server and measures it:
// scenarios, a lean protocol client, and server process statistics read
// from /proc. Clients run in several worker processes (the per-process file
// limit is 20,000) spread over 127.0.0.x source addresses.
//
// This first version holds the idle scenario (server memory per subscribed
// idle connection); the other scenarios of DESIGN.md build on the same
// pieces.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/protocol"
)

// ProcStats is a process's memory and CPU time, from /proc.
type ProcStats struct {
	RSS     int64         // resident set, bytes
	CPUTime time.Duration // user + system
}

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProc(pid int) (ProcStats, error) {
	var st ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			st.RSS = kb << 10
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// Fields after the command name (which may hold spaces) start at ')'.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 {
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 13 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			stt, _ := strconv.ParseInt(f[12], 10, 64)
			st.CPUTime = time.Duration(ut+stt) * time.Second / 100 // USER_HZ
		}
	}
	return st, nil
}

// IdleConn opens one connection from local, connects with token and
// subscribes to stream, reading until subscribed; then it stops reading.
func IdleConn(ctx context.Context, url string, local net.IP, token, stream string) (net.Conn, error) {
	d := ws.Dialer{Protocols: []string{protocol.SubprotocolMsgpack}}
	if local != nil {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
		d.NetDial = nd.DialContext
	}
	conn, br, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, err
	}
	frame, _ := protocol.EncodeFrame(protocol.Msgpack,
		&protocol.Connect{ID: 1, Token: token},
		&protocol.Subscribe{ID: 2, S: stream})
	f := ws.MaskFrameInPlace(ws.NewBinaryFrame(frame))
	if err := ws.WriteFrame(conn, f); err != nil {
		conn.Close()
		return nil, err
	}
	var r *bufio.Reader
	if br != nil {
		r = br
	} else {
		r = bufio.NewReaderSize(conn, 512)
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	for {
		fr, err := ws.ReadFrame(r)
		if err != nil {
			conn.Close()
			return nil, err
		}
		msgs, err := protocol.DecodeServer(protocol.Msgpack, fr.Payload, nil)
		if err != nil {
			conn.Close()
			return nil, err
		}
		for _, m := range msgs {
			switch m := m.Msg.(type) {
			case *protocol.Subscribed:
				return conn, nil
			case *protocol.ErrorReply:
				conn.Close()
				return nil, fmt.Errorf("subscribe: %d %s", m.Code, m.Reason)
			case *protocol.Disconnect:
				conn.Close()
				return nil, fmt.Errorf("disconnected: %d %s", m.Code, m.Reason)
			}
		}
	}
}

// ErrNoProc means /proc is not there (not Linux).
var ErrNoProc = errors.New("bench: /proc not available")
