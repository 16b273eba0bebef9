package server

// Tests of the edge-triggered transport at its edges, through a node: a
// peer that sends and half-closes at once still gets its replies.

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/internal/auth"
)

func edgeServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	a, err := auth.New(auth.Config{Secret: []byte("edge-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(cfg, Deps{Auth: a})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv, ln.Addr().String()
}

const edgeUpgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// edgeUpgraded dials and completes the WebSocket upgrade by hand.
func edgeUpgraded(t *testing.T, addr string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := io.WriteString(nc, edgeUpgrade); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(nc)
	var head strings.Builder
	for !strings.HasSuffix(head.String(), "\r\n\r\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the upgrade response: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
	}
	if !strings.HasPrefix(head.String(), "HTTP/1.1 101") {
		t.Fatalf("upgrade answered %q", head.String())
	}
	return nc.(*net.TCPConn), br
}

// TestEdgeHalfCloseGetsReply: a peer sends a control frame and at once
// shuts down its sending side. The frame and the FIN arrive in one event:
// the read queues the reply (a pong, or the close echo of a client that ends
// the closing handshake with shutdown(SHUT_WR)), and the hangup makes the
// next read meet EOF and destroy the connection with its queue. The reply
// must be written first.
func TestEdgeHalfCloseGetsReply(t *testing.T) {
	srv, addr := edgeServer(t, Config{})
	if srv.Portable() {
		t.Skip("epoll transport only")
	}
	for _, tc := range []struct {
		name      string
		op, reply ws.OpCode
		payload   []byte
		check     func(f ws.Frame) bool
	}{
		{"ping gets pong", ws.OpPing, ws.OpPong, []byte("hi"), func(f ws.Frame) bool { return string(f.Payload) == "hi" }},
		{"close frame gets close echo", ws.OpClose, ws.OpClose, []byte{0x03, 0xe8}, func(ws.Frame) bool { return true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < 20; i++ {
				nc, br := edgeUpgraded(t, addr)
				if _, err := nc.Write(maskedFrame(tc.op, true, tc.payload)); err != nil {
					t.Fatal(err)
				}
				if err := nc.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
				f, err := ws.ReadFrame(br)
				if err != nil {
					t.Fatalf("attempt %d: no reply to %v sent before a half-close: %v", i, tc.op, err)
				}
				if f.Header.OpCode != tc.reply || !tc.check(f) {
					t.Fatalf("attempt %d: got op %v %q, want %v", i, f.Header.OpCode, f.Payload, tc.reply)
				}
			}
		})
	}
}

// TestEdgeHalfCloseUpgradeAnswered: the upgrade request followed by FIN:
// the 101 is queued by readHandshake, then the hangup read returns EOF
// before anyone flushed it.
func TestEdgeHalfCloseUpgradeAnswered(t *testing.T) {
	srv, addr := edgeServer(t, Config{})
	if srv.Portable() {
		t.Skip("epoll transport only")
	}
	for i := 0; i < 20; i++ {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if _, err := io.WriteString(nc, edgeUpgrade); err != nil {
			t.Fatal(err)
		}
		if err := nc.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, _ := io.ReadAll(nc)
		if !bytes.HasPrefix(got, []byte("HTTP/1.1 101")) {
			t.Fatalf("attempt %d: upgrade followed by a half-close answered %q, want 101", i, got)
		}
	}
}

// TestEdgeServeAfterShutdown: a Serve that starts after Shutdown stopped the
// accept loops returns ErrClosed at once instead of accepting on a stopped
// node (and its count of accept loops is never raced by Shutdown's wait).
func TestEdgeServeAfterShutdown(t *testing.T) {
	srv, _ := edgeServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		if err != ErrClosed {
			t.Fatalf("Serve after Shutdown: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve after Shutdown is still accepting")
	}
}

func maskedFrame(op ws.OpCode, fin bool, p []byte) []byte {
	var buf bytes.Buffer
	_ = ws.WriteFrame(&buf, ws.MaskFrameInPlace(ws.NewFrame(op, fin, append([]byte(nil), p...))))
	return buf.Bytes()
}
