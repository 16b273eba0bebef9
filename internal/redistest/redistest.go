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
	return Start(t).URL()
}

// Server is a private redis-server that a test may kill and start again on
// the same port, to see how its clients live through an outage.
type Server struct {
	t    testing.TB
	bin  string
	addr string
	dir  string
	args []string

	mu     sync.Mutex // guards the following
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs a private redis-server on a free loopback port, whatever
// $HUDDLE_REDIS_URL says, with persistence off and its directory in
// t.TempDir() unless args (more redis-server options, such as
// "--appendonly", "yes") say otherwise. It is killed when t ends. Start
// skips t when redis-server is not installed.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis: %s is not set and no redis-server binary is installed (apt-get install redis-server)", EnvURL)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	var lastErr error
	for range 3 { // the free port may be taken before the server binds it
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("redistest: %v", lastErr)
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL returns redis://host:port/0.
func (s *Server) URL() string { return "redis://" + s.addr + "/0" }

// Kill stops the server with SIGKILL and waits until it has exited. It is
// a no-op when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the server again on the same port, after Kill, and waits
// until it answers PING. With persistence on it reloads its data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// start runs the server on s.addr and waits until it answers PING.
func (s *Server) start() error {
	host, port, _ := net.SplitHostPort(s.addr)
	args := []string{
		"--port", port,
		"--bind", host,
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	}
	args = append(args, s.args...) // later options win
	cmd := exec.Command(s.bin, args...)
	setParentDeathSignal(cmd)
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
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
		if err := ping(s.addr); err == nil {
			s.mu.Lock()
			s.cmd, s.exited = cmd, exited
			s.mu.Unlock()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("redis-server on %s exited: %s", s.addr, bytes.TrimSpace(out.Bytes()))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("redis-server on %s did not answer within %v: %s", s.addr, startTimeout, bytes.TrimSpace(out.Bytes()))
		}
	}
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

// clusterTimeout bounds how long a new Redis Cluster may take to cover
// every slot.
const clusterTimeout = 20 * time.Second

// StartCluster runs a private Redis Cluster of masters nodes (no replicas)
// on free loopback ports and returns its nodes once every slot is served.
// It skips t when redis-server or redis-cli is not installed.
func StartCluster(t testing.TB, masters int) []*Server {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis: no redis-cli binary to create a Redis Cluster with (apt-get install redis-tools)")
	}
	nodes := make([]*Server, masters)
	args := []string{"--cluster", "create"}
	for i := range nodes {
		nodes[i] = Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		args = append(args, nodes[i].Addr())
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	deadline := time.Now().Add(clusterTimeout)
	for _, n := range nodes {
		for {
			out, err := exec.Command(cli, "-h", "127.0.0.1", "-p", n.port(), "cluster", "info").Output()
			if err == nil && bytes.Contains(out, []byte("cluster_state:ok")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: Redis Cluster node %s not ok within %v: %s %v", n.Addr(), clusterTimeout, out, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nodes
}

// ClusterURL returns the comma-separated URLs of nodes, as huddle's
// --redis-url takes them.
func ClusterURL(nodes []*Server) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = "redis://" + n.Addr()
	}
	return strings.Join(urls, ",")
}

func (s *Server) port() string {
	_, port, _ := net.SplitHostPort(s.addr)
	return port
}
