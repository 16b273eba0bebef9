package main

// End-to-end tests of several huddle processes on one Redis (--broker
// redis): real binaries, a private redis-server, real WebSocket clients,
// kill -9, SIGTERM and a Redis restart.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/redistest"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// clusterTTL is the presence TTL of the test nodes: a killed node's members
// must leave on the others within it.
const clusterTTL = 3 * time.Second

// testCluster is a private redis-server and huddle nodes on it, each of
// which a test may kill, stop and start again on the same address.
type testCluster struct {
	t        *testing.T
	bin      string
	redis    *redistest.Server // nil on a Redis Cluster
	redisURL string
	addrs    []string
	extra    []string // flags for every node

	mu    sync.Mutex // guards procs
	procs []*e2eProc
}

// startCluster starts redis-server (with redisArgs) and n nodes.
func startCluster(t *testing.T, n int, redisArgs []string, extra ...string) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and runs several nodes on a private redis-server")
	}
	redis := redistest.Start(t, redisArgs...)
	return startNodes(t, n, redis, redis.URL(), extra...)
}

// startNodes starts n nodes on the Redis at redisURL.
func startNodes(t *testing.T, n int, redis *redistest.Server, redisURL string, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, bin: e2eBuild(t), redis: redis, redisURL: redisURL, extra: extra}
	for range n {
		c.addrs = append(c.addrs, e2eFreeAddr(t))
	}
	c.procs = make([]*e2eProc, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.launch(i)
		}()
	}
	wg.Wait()
	for i := range n {
		c.proc(i).waitReady(t)
	}
	return c
}

// launch starts node i (again) on its address.
func (c *testCluster) launch(i int) {
	args := append([]string{
		"--addr", c.addrs[i],
		"--node", "n" + strconv.Itoa(i),
		"--broker", "redis",
		"--redis-url", c.redisURL,
		"--secret", e2eSecret,
		"--api-key", e2eAPIKey,
		"--presence-ttl", clusterTTL.String(),
		"--presence-grace", "200ms",
		"--shutdown-timeout", "5s",
		"--log-level", "warn",
	}, c.extra...)
	p := e2eStart(c.t, c.bin, nil, args...)
	c.mu.Lock()
	c.procs[i] = p
	c.mu.Unlock()
}

func (c *testCluster) proc(i int) *e2eProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[i]
}

// restart starts node i again and waits until it is ready.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	c.launch(i)
	c.proc(i).waitReady(c.t)
}

// kill ends node i with SIGKILL.
func (c *testCluster) kill(i int) {
	c.t.Helper()
	p := c.proc(i)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-p.done
}

func (c *testCluster) url(i int) string { return "ws://" + c.addrs[i] + "/ws" }

// running fails the test if a node exited by itself.
func (c *testCluster) running() {
	c.t.Helper()
	for i := range c.addrs {
		p := c.proc(i)
		select {
		case <-p.done:
			c.t.Fatalf("node %d exited with %d:\n%s", i, p.cmd.ProcessState.ExitCode(), p.out.String())
		default:
		}
	}
}

// top returns the stream's last offset, asking any node that answers.
func (c *testCluster) top(stream string) protocol.Position {
	c.t.Helper()
	for range 50 {
		for i := range c.addrs {
			code, body, err := clusterAPI(c.addrs[i], "GET", "/api/history/"+stream+"?limit=1&reverse=true", "")
			if err != nil || code != http.StatusOK {
				continue
			}
			var h struct {
				Epoch  string `json:"epoch"`
				Offset uint64 `json:"offset"`
			}
			if err := json.Unmarshal([]byte(body), &h); err != nil {
				c.t.Fatalf("history: %v: %s", err, body)
			}
			return protocol.Position{Epoch: h.Epoch, Offset: h.Offset}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no node answers /api/history")
	return protocol.Position{}
}

var clusterHTTP = &http.Client{Timeout: 3 * time.Second}

// clusterAPI calls a node's HTTP API with the API key; unlike e2eAPI it
// returns errors, for callers off the test goroutine and nodes that may be
// down.
func clusterAPI(addr, method, path, body string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	resp, err := clusterHTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// clusterToken grants every op on every stream.
func clusterToken(user string) string {
	tok, err := auth.SignHS256([]byte(e2eSecret), user, time.Now().Add(time.Hour), map[string]any{"name": user},
		map[string][]string{"*": {"sub", "pub", "history", "whisper", "presence"}})
	if err != nil {
		panic(err)
	}
	return tok
}

// clusterDial connects user to node url, with a reader that never falls
// behind the server.
func clusterDial(url, user string) (*wsclient.Client, *protocol.Connected, error) {
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	return wsclient.DialConnected(ctx, url, clusterToken(user), wsclient.Options{})
}

func clusterDialT(t *testing.T, url, user string) (*wsclient.Client, *protocol.Connected) {
	t.Helper()
	c, cm, err := clusterDial(url, user)
	if err != nil {
		t.Fatalf("%s: dial %s: %v", user, url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cm
}

// request sends m and waits for the reply of type T, failing on an error
// reply.
func request[T protocol.Message](t *testing.T, c *wsclient.Client, m protocol.Message) T {
	t.Helper()
	if err := c.Send(m); err != nil {
		t.Fatal(err)
	}
	var zero T
	deadline := time.Now().Add(e2eWait)
	for {
		msg, err := c.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %T: %v", zero, err)
		}
		switch r := msg.(type) {
		case T:
			return r
		case *protocol.ErrorReply:
			t.Fatalf("waiting for %T: error %d %s", zero, r.Code, r.Reason)
		}
	}
}

// publishRetrying publishes m as a client does: an error that says retry
// (a node's connection to Redis that has not yet noticed a Redis restart
// fails its next publish once) is retried after a pause.
func publishRetrying(t *testing.T, c *wsclient.Client, m *protocol.Publish) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if err := c.Send(m); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := c.Next(e2eWait)
			if err != nil {
				t.Fatalf("publish %d: %v", m.ID, err)
			}
			if a, ok := msg.(*protocol.Ack); ok && a.ID == m.ID {
				return
			}
			if e, ok := msg.(*protocol.ErrorReply); ok && e.ID == m.ID {
				if !e.Retry || attempt == 10 {
					t.Fatalf("publish %d, attempt %d: error %d %s", m.ID, attempt, e.Code, e.Reason)
				}
				time.Sleep(50 * time.Millisecond)
				break
			}
		}
	}
}

// follower is a client that follows one stream through node failures:
// whenever its connection ends it connects to the next node that takes it
// and subscribes with recover. It checks that every publication arrives
// once, in offset order, and that every recovery succeeds.
type follower struct {
	c      *testCluster
	user   string
	stream string
	stop   chan struct{}
	done   chan struct{}

	mu          sync.Mutex // guards the following
	node        int
	pos         protocol.Position
	first       uint64 // the first offset received
	count       int    // publications received
	reconnects  int
	recoveredAt time.Time // when the last recovering subscribe succeeded
	recovered   int       // publications received in subscribed.pubs when recovering
	codes       []protocol.Code
	errs        []string
	change      chan struct{}
	// epochMayChange accepts a recovery that fails because the stream's
	// history is gone (a new epoch): the follower starts over from there.
	epochMayChange bool
}

func newFollower(c *testCluster, node int, user, stream string) *follower {
	f := &follower{c: c, user: user, stream: stream, node: node,
		stop: make(chan struct{}), done: make(chan struct{}), change: make(chan struct{}, 1)}
	return f
}

// start connects and subscribes, then follows on its own goroutine.
func (f *follower) start(t *testing.T) {
	t.Helper()
	c, err := f.connect()
	if err != nil {
		t.Fatalf("%s: %v", f.user, err)
	}
	go f.run(c)
	t.Cleanup(func() { f.halt() })
}

func (f *follower) halt() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func (f *follower) fail(format string, args ...any) {
	f.mu.Lock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *follower) signal() {
	select {
	case f.change <- struct{}{}:
	default:
	}
}

// connect dials the current node and subscribes, recovering from pos once
// it has one.
func (f *follower) connect() (*wsclient.Client, error) {
	f.mu.Lock()
	node, pos := f.node, f.pos
	f.mu.Unlock()
	c, _, err := clusterDial(f.c.url(node), f.user)
	if err != nil {
		return nil, err
	}
	sub := &protocol.Subscribe{ID: 2, S: f.stream}
	if pos.Epoch != "" {
		sub.Recover = &pos
	}
	if err := c.Send(sub); err != nil {
		c.Close()
		return nil, err
	}
	for {
		m, err := c.Next(e2eWait)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("subscribe on node %d: %w", node, err)
		}
		switch m := m.(type) {
		case *protocol.ErrorReply:
			c.Close()
			return nil, fmt.Errorf("subscribe on node %d: error %d %s", node, m.Code, m.Reason)
		case *protocol.Subscribed:
			f.mu.Lock()
			switch {
			case sub.Recover != nil && f.epochMayChange && m.Recovered != nil && !*m.Recovered && m.Epoch != pos.Epoch:
				// History is gone: start over in the new epoch.
				f.pos = protocol.Position{Epoch: m.Epoch, Offset: m.Offset}
				f.first, f.count = m.Offset+1, 0
				f.recoveredAt = time.Now()
			case sub.Recover != nil:
				if m.Recovered == nil || !*m.Recovered || m.Epoch != pos.Epoch {
					f.errs = append(f.errs, fmt.Sprintf("recovering from %+v on node %d: recovered %v, epoch %q", pos, node, m.Recovered, m.Epoch))
				}
				f.recoveredAt = time.Now()
				f.recovered += len(m.Pubs)
			default:
				f.pos = protocol.Position{Epoch: m.Epoch, Offset: m.Offset}
			}
			f.mu.Unlock()
			for i := range m.Pubs {
				f.deliver(&m.Pubs[i])
			}
			f.signal()
			return c, nil
		}
	}
}

// deliver checks that p follows the last publication received.
func (f *follower) deliver(p *protocol.Pub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.S != f.stream {
		return
	}
	if p.Epoch != f.pos.Epoch || p.Offset != f.pos.Offset+1 {
		f.errs = append(f.errs, fmt.Sprintf("pub %s/%d after %s/%d", p.Epoch, p.Offset, f.pos.Epoch, f.pos.Offset))
	}
	if f.count == 0 {
		f.first = p.Offset
	}
	f.pos = protocol.Position{Epoch: p.Epoch, Offset: p.Offset}
	f.count++
}

func (f *follower) run(c *wsclient.Client) {
	defer close(f.done)
	for {
		f.read(c)
		c.Close()
		select {
		case <-f.stop:
			return
		default:
		}
		// The connection ended: the next node that takes us.
		for {
			f.mu.Lock()
			f.node = (f.node + 1) % len(f.c.addrs)
			f.reconnects++
			f.mu.Unlock()
			var err error
			if c, err = f.connect(); err == nil {
				break
			}
			select {
			case <-f.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// read handles messages until the connection ends or the follower stops.
func (f *follower) read(c *wsclient.Client) {
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		m, err := c.Next(100 * time.Millisecond)
		if err != nil {
			if c.Err() != nil {
				return
			}
			continue
		}
		switch m := m.(type) {
		case *protocol.Pub:
			f.deliver(m)
			f.signal()
		case *protocol.Disconnect:
			f.mu.Lock()
			f.codes = append(f.codes, m.Code)
			f.mu.Unlock()
		case *protocol.ErrorReply:
			f.fail("error %d %s", m.Code, m.Reason)
		}
	}
}

// snapshot returns the follower's state.
func (f *follower) snapshot() (pos protocol.Position, first uint64, count, reconnects int, recoveredAt time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pos, f.first, f.count, f.reconnects, f.recoveredAt
}

// waitFor waits until cond holds for the follower.
func (f *follower) waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-f.change:
		case <-time.After(50 * time.Millisecond):
		case <-deadline.C:
			pos, _, count, rec, _ := f.snapshot()
			t.Fatalf("%s: %s not within %v (at %+v after %d pubs, %d reconnects)", f.user, what, timeout, pos, count, rec)
		}
	}
}

// check stops f after it reached top and fails t unless it received every
// publication from its first to top once, in order.
func (f *follower) check(t *testing.T, top protocol.Position) {
	t.Helper()
	f.waitFor(t, fmt.Sprintf("position %+v", top), 2*e2eWait, func() bool {
		pos, _, _, _, _ := f.snapshot()
		return pos == top || pos.Epoch == top.Epoch && pos.Offset > top.Offset
	})
	f.halt()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.errs {
		t.Errorf("%s: %s", f.user, e)
	}
	if f.pos != top || f.count != int(top.Offset-f.first+1) {
		t.Errorf("%s: at %+v with %d publications from offset %d, want %+v and %d", f.user, f.pos, f.count, f.first, top, top.Offset-f.first+1)
	}
}

// publisher publishes to one stream through the HTTP API of whichever node
// answers, one publication every interval, until stopped.
type publisher struct {
	c        *testCluster
	stream   string
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	acked    int
	failures int
}

func startPublisher(c *testCluster, stream string, interval time.Duration) *publisher {
	p := &publisher{c: c, stream: stream, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *publisher) run() {
	defer close(p.done)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	node := 0
	for i := 0; ; i++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		body := fmt.Sprintf(`{"stream":%q,"data":{"i":%d}}`, p.stream, i)
		for attempt := 0; ; attempt++ {
			node = (node + 1) % len(p.c.addrs)
			code, _, err := clusterAPI(p.c.addrs[node], "POST", "/api/publish", body)
			if err == nil && code == http.StatusOK {
				p.acked++
				break
			}
			p.failures++
			select {
			case <-p.stop:
				return
			default:
			}
			if attempt%len(p.c.addrs) == len(p.c.addrs)-1 {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// halt stops the publisher and waits for its last request.
func (p *publisher) halt() {
	close(p.stop)
	<-p.done
}

// TestCluster_OneView: clients on three nodes see each other's publications
// in one order, each other's presence (the snapshot from the shared store,
// then diffs), and whispers. It also measures publishing with history
// through Redis with the HTTP API.
func TestCluster_OneView(t *testing.T) {
	c := startCluster(t, 3, nil)

	// Publications from all three nodes, over their sockets, at once.
	clients := make([]*wsclient.Client, 3)
	for i := range clients {
		clients[i], _ = clusterDialT(t, c.url(i), "u"+strconv.Itoa(i))
		request[*protocol.Subscribed](t, clients[i], &protocol.Subscribe{ID: 1, S: "chat"})
	}
	const each = 50
	var wg sync.WaitGroup
	for i, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				if err := cl.Send(&protocol.Publish{ID: uint64(100 + j), S: "chat", Data: protocol.MustRaw(fmt.Sprintf("%d-%d", i, j))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var orders [3][]string
	for i, cl := range clients {
		var acks int
		for len(orders[i]) < 3*each || acks < each {
			m, err := cl.Next(e2eWait)
			if err != nil {
				t.Fatalf("client %d after %d pubs and %d acks: %v", i, len(orders[i]), acks, err)
			}
			switch m := m.(type) {
			case *protocol.Pub:
				if m.Offset != uint64(len(orders[i])+1) {
					t.Fatalf("client %d: offset %d after %d", i, m.Offset, len(orders[i]))
				}
				orders[i] = append(orders[i], string(m.Data))
			case *protocol.Ack:
				acks++
			case *protocol.ErrorReply:
				t.Fatalf("client %d: error %d %s", i, m.Code, m.Reason)
			}
		}
	}
	if !slices.Equal(orders[0], orders[1]) || !slices.Equal(orders[0], orders[2]) {
		t.Fatalf("the nodes delivered different orders:\n%v\n%v\n%v", orders[0], orders[1], orders[2])
	}

	// Presence: a member on node 0; a subscriber on node 2 finds it in its
	// snapshot; joins, updates and leaves cross nodes.
	ann, annConn := clusterDialT(t, c.url(0), "ann")
	request[*protocol.Subscribed](t, ann, &protocol.Subscribe{ID: 1, S: "room", Join: protocol.MustRaw(map[string]any{"color": "red"})})
	watch, _ := clusterDialT(t, c.url(2), "watcher")
	var snap *protocol.Subscribed
	deadline := time.Now().Add(e2eWait)
	for {
		// The join is written before the subscribe's reply; poll until the
		// snapshot on the other node holds it.
		snap = request[*protocol.Subscribed](t, watch, &protocol.Subscribe{ID: 1, S: "room", Presence: true})
		if len(snap.Members) == 1 || time.Now().After(deadline) {
			break
		}
		request[*protocol.Unsubscribed](t, watch, &protocol.Unsubscribe{ID: 9, S: "room"})
	}
	if len(snap.Members) != 1 || snap.Members[0].Client != annConn.Client || snap.Members[0].User != "ann" {
		t.Fatalf("snapshot on node 2: %+v, want ann's member from node 0", snap.Members)
	}
	bob, bobConn := clusterDialT(t, c.url(1), "bob")
	request[*protocol.Subscribed](t, bob, &protocol.Subscribe{ID: 1, S: "room", Join: protocol.MustRaw(map[string]any{"color": "blue"})})
	if err := ann.Send(&protocol.Update{S: "room", State: protocol.MustRaw(map[string]any{"x": 1})}); err != nil {
		t.Fatal(err)
	}
	var joined, updated bool
	for !joined || !updated {
		d, err := wsclient.Wait[*protocol.Presence](watch, e2eWait)
		if err != nil {
			t.Fatalf("presence diffs on node 2 (joined %v, updated %v): %v", joined, updated, err)
		}
		for _, j := range d.Joins {
			joined = joined || j.Client == bobConn.Client
			// Within ann's first tick the update folds into her join.
			var state map[string]any
			if j.Client == annConn.Client && msgpack.Unmarshal(j.State, &state) == nil {
				_, updated = state["x"]
			}
		}
		for _, u := range d.Updates {
			updated = updated || u.Client == annConn.Client
		}
	}
	request[*protocol.Ack](t, bob, &protocol.Leave{ID: 7, S: "room"})
	for left := false; !left; {
		d, err := wsclient.Wait[*protocol.Presence](watch, e2eWait)
		if err != nil {
			t.Fatalf("bob's leave on node 2: %v", err)
		}
		for _, l := range d.Leaves {
			left = left || l.Client == bobConn.Client
		}
	}

	// Whispers: from node 0 to nodes 1 and 2, with the sender's identity,
	// never back to the sender.
	request[*protocol.Subscribed](t, bob, &protocol.Subscribe{ID: 2, S: "cursors"})
	request[*protocol.Subscribed](t, watch, &protocol.Subscribe{ID: 2, S: "cursors"})
	request[*protocol.Subscribed](t, ann, &protocol.Subscribe{ID: 2, S: "cursors"})
	if err := ann.Send(&protocol.SendWhisper{S: "cursors", Ev: "cursor", Data: protocol.MustRaw(map[string]int{"x": 5})}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*wsclient.Client{bob, watch} {
		w, err := wsclient.Wait[*protocol.Whisper](r, e2eWait)
		if err != nil {
			t.Fatalf("whisper on another node: %v", err)
		}
		if w.From.User != "ann" || w.From.Client != annConn.Client || w.Ev != "cursor" || w.S != "cursors" {
			t.Errorf("whisper %+v, want ann's cursor", w)
		}
	}
	// A publication after the whisper reaches ann after anything the
	// whisper could have caused there.
	request[*protocol.Ack](t, bob, &protocol.Publish{ID: 3, S: "cursors", Data: protocol.MustRaw(1)})
	for {
		m, err := ann.Next(e2eWait)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*protocol.Whisper); ok {
			t.Fatal("the sender got its own whisper back")
		}
		if _, ok := m.(*protocol.Pub); ok {
			break
		}
	}

	// Throughput of publishing with history through Redis: batches of
	// 1,000 through the HTTP API of one node, all three nodes subscribed.
	for _, cl := range clients {
		request[*protocol.Subscribed](t, cl, &protocol.Subscribe{ID: 3, S: "bulk"})
	}
	const batches, batch = 10, 1000
	var b strings.Builder
	b.WriteByte('[')
	for i := range batch {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"stream":"bulk","data":{"i":%d,"pad":"%s"}}`, i, strings.Repeat("x", 64))
	}
	b.WriteByte(']')
	start := time.Now()
	for range batches {
		if code, body := e2eAPI(t, c.addrs[0], "POST", "/api/publish", b.String()); code != http.StatusOK {
			t.Fatalf("publish: %d %s", code, body)
		}
	}
	took := time.Since(start)
	for i, cl := range clients {
		for n := 0; n < batches*batch; {
			p, err := wsclient.Wait[*protocol.Pub](cl, e2eWait)
			if err != nil {
				t.Fatalf("client %d got %d of %d bulk publications: %v", i, n, batches*batch, err)
			}
			if p.S == "bulk" {
				n++
			}
		}
	}
	delivered := time.Since(start)
	t.Logf("publish with history through Redis, HTTP API batches of %d: %d in %v = %.0f pubs/s; all delivered to 3 nodes in %v",
		batch, batches*batch, took.Round(time.Millisecond), float64(batches*batch)/took.Seconds(), delivered.Round(time.Millisecond))
	c.running()
}

// TestCluster_OnRedisCluster: nodes given the seed nodes of a Redis
// Cluster (--redis-url with a comma-separated list) use it with sharded
// pub/sub: publications, presence and whispers cross nodes.
func TestCluster_OnRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and two nodes")
	}
	servers := redistest.StartCluster(t, 3)
	c := startNodes(t, 2, nil, redistest.ClusterURL(servers))
	a, aConn := clusterDialT(t, c.url(0), "ann")
	b, _ := clusterDialT(t, c.url(1), "bob")
	for i, s := range []string{"doc:1", "doc:2", "doc:3"} { // spread over the slots
		request[*protocol.Subscribed](t, b, &protocol.Subscribe{ID: uint64(1 + i), S: s, Presence: true})
		request[*protocol.Subscribed](t, a, &protocol.Subscribe{ID: uint64(1 + i), S: s, Join: protocol.MustRaw(map[string]int{"i": i})})
		request[*protocol.Ack](t, a, &protocol.Publish{ID: uint64(10 + i), S: s, Data: protocol.MustRaw(i)})
		if err := a.Send(&protocol.SendWhisper{S: s, Ev: "cursor", Data: protocol.MustRaw(i)}); err != nil {
			t.Fatal(err)
		}
		var pub, joined, whispered bool
		for !pub || !joined || !whispered {
			m, err := b.Next(e2eWait)
			if err != nil {
				t.Fatalf("%s on node 1 (pub %v, join %v, whisper %v): %v", s, pub, joined, whispered, err)
			}
			switch m := m.(type) {
			case *protocol.Pub:
				pub = pub || m.S == s && m.Offset == 1
			case *protocol.Presence:
				for _, j := range m.Joins {
					joined = joined || m.S == s && j.Client == aConn.Client
				}
			case *protocol.Whisper:
				whispered = whispered || m.S == s && m.From.Client == aConn.Client
			}
		}
	}
	// The nodes' subscriptions are sharded ones, on the slots' own nodes.
	admin := redistest.Client(t, servers[0].URL())
	shard := 0
	for _, n := range admin.Nodes() {
		chans, err := n.Do(t.Context(), n.B().PubsubShardchannels().Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chans {
			// Besides the streams', each node listens on a channel of its
			// own (POSTs of HTTP sessions relayed to it).
			if !strings.Contains(ch, "\x00direct:") {
				shard++
			}
		}
	}
	if shard != 3 {
		t.Errorf("%d sharded channels of streams across the Redis Cluster, want 3 (one per stream)", shard)
	}
	c.running()
}

// TestCluster_NodeKilled: kill -9 of one node while its clients are
// subscribed and publications keep flowing. Its presence members leave on
// the other nodes within the TTL; its clients reconnect to another node and
// recover every missed publication, in order, none twice.
func TestCluster_NodeKilled(t *testing.T) {
	c := startCluster(t, 3, nil)
	const perNode = 8
	var followers []*follower
	for i := range 3 * perNode {
		f := newFollower(c, i%3, "f"+strconv.Itoa(i), "feed")
		f.start(t)
		followers = append(followers, f)
	}
	// Presence: members on the doomed node 0, an observer on node 1.
	observer, _ := clusterDialT(t, c.url(1), "observer")
	request[*protocol.Subscribed](t, observer, &protocol.Subscribe{ID: 1, S: "room", Presence: true})
	doomed := map[string]bool{}
	for i := range 3 {
		m, cm := clusterDialT(t, c.url(0), "member"+strconv.Itoa(i))
		request[*protocol.Subscribed](t, m, &protocol.Subscribe{ID: 1, S: "room", Join: protocol.MustRaw(map[string]any{"i": i})})
		doomed[cm.Client] = true
	}
	for joined := 0; joined < len(doomed); {
		d, err := wsclient.Wait[*protocol.Presence](observer, e2eWait)
		if err != nil {
			t.Fatalf("joins of node 0's members on node 1: %v", err)
		}
		for _, j := range d.Joins {
			if doomed[j.Client] {
				joined++
			}
		}
	}

	pub := startPublisher(c, "feed", 2*time.Millisecond)
	defer func() {
		select {
		case <-pub.done:
		default:
			pub.halt()
		}
	}()
	for _, f := range followers {
		f.waitFor(t, "the first publications", e2eWait, func() bool { _, _, n, _, _ := f.snapshot(); return n >= 20 })
	}

	killed := time.Now()
	c.kill(0)

	// Node 0's followers move and recover.
	var recovery time.Duration
	for i, f := range followers {
		if i%3 != 0 {
			continue
		}
		f.waitFor(t, "recovery on another node", e2eWait, func() bool {
			_, _, _, _, at := f.snapshot()
			return at.After(killed)
		})
		_, _, _, _, at := f.snapshot()
		recovery = max(recovery, at.Sub(killed))
	}

	// Node 0's members leave on node 1 within the TTL.
	leaveDeadline := time.NewTimer(clusterTTL + 3*time.Second)
	defer leaveDeadline.Stop()
	var leftAfter time.Duration
	for left := 0; left < len(doomed); {
		m, err := observer.Next(100 * time.Millisecond)
		select {
		case <-leaveDeadline.C:
			t.Fatalf("%d of %d leaves of node 0's members on node 1 within %v of the kill", left, len(doomed), time.Since(killed))
		default:
		}
		if err != nil {
			if observer.Err() != nil {
				t.Fatalf("observer: %v", err)
			}
			continue
		}
		if d, ok := m.(*protocol.Presence); ok {
			for _, l := range d.Leaves {
				if doomed[l.Client] {
					left++
					leftAfter = time.Since(killed)
				}
			}
		}
	}
	if leftAfter > clusterTTL+1500*time.Millisecond {
		t.Errorf("node 0's members left %v after the kill; the TTL is %v", leftAfter, clusterTTL)
	}

	time.Sleep(200 * time.Millisecond) // publications keep flowing after the recovery
	pub.halt()
	top := c.top("feed")
	for _, f := range followers {
		f.check(t, top)
	}
	moved, missed := 0, 0
	for i, f := range followers {
		f.mu.Lock()
		if i%3 == 0 && f.reconnects > 0 {
			moved++
			missed += f.recovered
		}
		f.mu.Unlock()
	}
	t.Logf("kill -9 of 1 of 3 nodes: %d of its %d followers recovered on another node (%d missed publications from history), the last %v after the kill; its members left on the others %v after it (TTL %v); %d publications (%d publish attempts refused by the dead node)",
		moved, perNode, missed, recovery.Round(time.Millisecond), leftAfter.Round(time.Millisecond), clusterTTL, top.Offset, pub.failures)
	for i := 1; i < 3; i++ {
		select {
		case <-c.proc(i).done:
			t.Errorf("node %d exited", i)
		default:
		}
	}
}

// TestCluster_RollingRestart: SIGTERM of each node in turn, each started
// again before the next, under a steady publication stream: no client
// loses a publication.
func TestCluster_RollingRestart(t *testing.T) {
	c := startCluster(t, 3, nil)
	var followers []*follower
	for i := range 15 {
		f := newFollower(c, i%3, "f"+strconv.Itoa(i), "feed")
		f.start(t)
		followers = append(followers, f)
	}
	pub := startPublisher(c, "feed", 2*time.Millisecond)
	defer func() {
		select {
		case <-pub.done:
		default:
			pub.halt()
		}
	}()
	start := time.Now()
	for i := range 3 {
		time.Sleep(200 * time.Millisecond)
		p := c.proc(i)
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, 10*time.Second); code != 0 {
			t.Fatalf("node %d exited %d after SIGTERM:\n%s", i, code, p.out.String())
		}
		c.restart(i)
	}
	time.Sleep(200 * time.Millisecond)
	pub.halt()
	top := c.top("feed")
	for _, f := range followers {
		f.check(t, top)
	}
	reconnects := 0
	for _, f := range followers {
		f.mu.Lock()
		reconnects += f.reconnects
		for _, code := range f.codes {
			if code != protocol.CodeShutdown {
				t.Errorf("%s: disconnect %d, want only 4009", f.user, code)
			}
		}
		f.mu.Unlock()
	}
	t.Logf("rolling restart of 3 nodes in %v: %d publications, %d follower reconnects, no loss", time.Since(start).Round(time.Millisecond), top.Offset, reconnects)
}

// TestCluster_RedisRestart: Redis goes away and comes back. Meanwhile
// /readyz answers 503 and publishing fails clearly (HTTP 503, error 4500
// with retry) while connected clients stay connected; afterwards the nodes
// subscribe again by themselves and publishing resumes.
//
// With persistence (appendonly) nothing is lost and subscribers of
// publications notice nothing. Without it the history is gone: their node
// tells them (4010) and they recover with recovered:false in the new epoch.
// Either way a subscriber of presence diffs, which may have missed some, is
// told to recover (4010).
func TestCluster_RedisRestart(t *testing.T) {
	for _, tc := range []struct {
		name       string
		persistent bool
		redisArgs  []string
	}{
		{"appendonly", true, []string{"--appendonly", "yes", "--appendfsync", "always"}},
		{"no persistence", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 2, tc.redisArgs)
			var followers []*follower
			for i := range 4 {
				f := newFollower(c, i%2, "f"+strconv.Itoa(i), "feed")
				f.epochMayChange = !tc.persistent
				f.start(t)
				followers = append(followers, f)
			}
			pres, _ := clusterDialT(t, c.url(1), "presence-watcher")
			request[*protocol.Subscribed](t, pres, &protocol.Subscribe{ID: 1, S: "room", Presence: true})
			ws, _ := clusterDialT(t, c.url(0), "ws-publisher")
			for i := range 10 {
				request[*protocol.Ack](t, ws, &protocol.Publish{ID: uint64(10 + i), S: "feed", Data: protocol.MustRaw(i)})
			}
			before := c.top("feed")

			c.redis.Kill()
			for i := range c.addrs {
				if code, err := e2eStatus("http://" + c.addrs[i] + "/readyz"); err != nil || code != http.StatusServiceUnavailable {
					t.Errorf("node %d /readyz with Redis down: %d %v, want 503", i, code, err)
				}
			}
			if code, body := e2eAPI(t, c.addrs[0], "POST", "/api/publish", `{"stream":"feed","data":1}`); code != http.StatusServiceUnavailable {
				t.Errorf("HTTP publish with Redis down: %d %s, want 503", code, body)
			}
			if err := ws.Send(&protocol.Publish{ID: 99, S: "feed", Data: protocol.MustRaw("lost")}); err != nil {
				t.Fatal(err)
			}
			e, err := wsclient.Wait[*protocol.ErrorReply](ws, e2eWait)
			if err != nil {
				t.Fatal(err)
			}
			if e.ID != 99 || e.Code != protocol.CodeInternal || !e.Retry {
				t.Errorf("socket publish with Redis down: %+v, want error 4500 with retry", e)
			}
			time.Sleep(500 * time.Millisecond) // an outage long enough for every node to notice
			c.running()
			for _, f := range followers {
				if _, _, _, rec, _ := f.snapshot(); rec != 0 {
					t.Errorf("%s reconnected while Redis was down; clients should stay connected", f.user)
				}
			}

			outage := time.Now()
			c.redis.Restart()
			for i := range c.addrs {
				c.proc(i).waitReady(t)
			}
			back := time.Since(outage)
			for i := range 10 {
				publishRetrying(t, ws, &protocol.Publish{ID: uint64(100 + i), S: "feed", Data: protocol.MustRaw(i)})
			}
			top := c.top("feed")
			switch {
			case tc.persistent && (top.Epoch != before.Epoch || top.Offset != 20):
				t.Errorf("top %+v after the restart, want offset 20 in epoch %s (nothing published during the outage)", top, before.Epoch)
			case !tc.persistent && (top.Epoch == before.Epoch || top.Offset != 10):
				t.Errorf("top %+v after a restart without persistence, want offset 10 in a new epoch", top)
			}
			reconnects := 0
			for _, f := range followers {
				f.check(t, top)
				_, _, _, rec, _ := f.snapshot()
				reconnects += rec
				if tc.persistent && rec != 0 {
					t.Errorf("%s reconnected %d times; with the data kept, clients stay connected through a Redis restart", f.user, rec)
				}
			}
			d, err := wsclient.Wait[*protocol.Disconnect](pres, e2eWait)
			if err != nil {
				t.Fatalf("presence subscriber: %v, want disconnect 4010", err)
			}
			if d.Code != protocol.CodeInsufficientState || !d.Reconnect {
				t.Errorf("presence subscriber: disconnect %+v, want 4010 with reconnect", d)
			}
			c.running()
			t.Logf("Redis restart (%s): nodes ready again %v after it started; publishing resumed; %d follower reconnects", tc.name, back.Round(time.Millisecond), reconnects)
		})
	}
}
