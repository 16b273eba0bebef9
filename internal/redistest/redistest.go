// Package redistest gives tests a real Redis server: the one named by
// HUDDLE_REDIS_URL, or else a private redis-server it starts on a free
// loopback port for the test. When neither is available the test is
// skipped, never run against a fake.
//
// Tests sharing one server keep apart by key prefix (Prefix), so they may
// run in parallel and repeatedly (-count=N) against a long-lived server.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// EnvURL names the environment variable holding the URL of an existing
// Redis server, e.g. redis://127.0.0.1:6379/0. When set, tests use it and
// start no server of their own.
const EnvURL = "HUDDLE_REDIS_URL"

// startTimeout bounds how long a private server may take to answer PING.
const startTimeout = 10 * time.Second

// URL returns the URL of a Redis server for t: $HUDDLE_REDIS_URL if set,
// otherwise a private redis-server started now on a free loopback port,
// with persistence off and its directory in t.TempDir(), and killed when t
// ends. It skips t when no server can be had because redis-server is not
// installed.
func URL(t testing.TB) string {
	t.Helper()
	if u := strings.TrimSpace(os.Getenv(EnvURL)); u != "" {
		return u
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis: %s is not set and no redis-server binary is installed (apt-get install redis-server)", EnvURL)
	}
	var lastErr error
	for range 3 { // the free port may be taken before the server binds it
		addr, err := start(t, bin)
		if err == nil {
			return "redis://" + addr + "/0"
		}
		lastErr = err
	}
	t.Fatalf("redistest: %v", lastErr)
	return ""
}

// Client returns a new client of the server at url (from URL), closed when
// t ends. Each call opens its own connections, as another node would.
func Client(t testing.TB, url string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: parse %q: %v", url, err)
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatalf("redistest: connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Prefix returns a key prefix no other test or run uses, ending in ':'.
// When t ends it deletes the keys under the prefix through c, so a shared
// server does not fill up with test keys.
func Prefix(t testing.TB, c rueidis.Client) string {
	t.Helper()
	prefix := "huddletest:" + rand.Text()[:12] + ":" // base32: no glob metacharacters
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := deleteKeys(ctx, c, prefix+"*"); err != nil {
			t.Logf("redistest: delete keys %s*: %v", prefix, err)
		}
	})
	return prefix
}

// deleteKeys unlinks every key matching pattern on every node of c.
func deleteKeys(ctx context.Context, c rueidis.Client, pattern string) error {
	for _, node := range c.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				return err
			}
			for _, k := range e.Elements {
				if err := node.Do(ctx, node.B().Unlink().Key(k).Build()).Error(); err != nil {
					return err
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}

// start runs a redis-server on a free loopback port and returns its
// address once it answers PING. The server is killed when t ends.
func start(t testing.TB, bin string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", t.TempDir(),
		"--daemonize", "no",
		"--loglevel", "warning",
	)
	setParentDeathSignal(cmd)
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	deadline := time.Now().Add(startTimeout)
	for {
		if err := ping(addr); err == nil {
			t.Cleanup(stop)
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("redis-server on %s exited: %s", addr, bytes.TrimSpace(out.Bytes()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("redis-server on %s did not answer within %v: %s", addr, startTimeout, bytes.TrimSpace(out.Bytes()))
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends PING over a fresh connection and expects +PONG.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for the writes of a child process's
// output copier and the reads of the test.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// Bytes returns a copy of what was written so far.
func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
