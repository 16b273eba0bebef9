package server_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// ---- helpers ----

// prPeer is a client with its view of one stream's presence, built as the
// SDK builds it: subscribed.members, then every presence diff in order.
type prPeer struct {
	c      *wsclient.Client
	me     *protocol.Connected
	stream string
	view   map[string]protocol.Member // by client
	diffs  int                        // presence messages received
}

// prDial connects a peer for stream with tok; it is not subscribed yet.
func prDial(t *testing.T, h *harness, tok, stream string, opts ...func(*wsclient.Options)) *prPeer {
	t.Helper()
	c, me := dialConnect(t, h, tok, opts...)
	return &prPeer{c: c, me: me, stream: stream, view: map[string]protocol.Member{}}
}

// prUser connects a peer as user with full grants.
func prUser(t *testing.T, h *harness, user, stream string, opts ...func(*wsclient.Options)) *prPeer {
	t.Helper()
	return prDial(t, h, token(t, user), stream, opts...)
}

// sub subscribes with presence (joining with join unless it is nil) and
// starts the view from the snapshot.
func (p *prPeer) sub(t *testing.T, id uint64, join any) *protocol.Subscribed {
	t.Helper()
	m := &protocol.Subscribe{ID: id, S: p.stream, Presence: true}
	if join != nil {
		m.Join = protocol.MustRaw(join)
	}
	if err := p.c.Send(m); err != nil {
		t.Fatal(err)
	}
	s := nextAs[*protocol.Subscribed](t, p.c)
	if s.ID != id || s.S != p.stream {
		t.Fatalf("subscribed %+v, want id %d s %q", s, id, p.stream)
	}
	p.view = map[string]protocol.Member{}
	for _, mb := range s.Members {
		if _, dup := p.view[mb.Client]; dup {
			t.Errorf("snapshot lists client %s twice", mb.Client)
		}
		p.view[mb.Client] = mb
	}
	return s
}

// send writes a protocol message.
func (p *prPeer) send(t *testing.T, m protocol.Message) {
	t.Helper()
	if err := p.c.Send(m); err != nil {
		t.Fatal(err)
	}
}

// sendMap writes one message given as a map, so it can carry fields the
// protocol does not define.
func (p *prPeer) sendMap(t *testing.T, m map[string]any) {
	t.Helper()
	var b []byte
	var err error
	op := ws.OpBinary
	if p.c.Codec == protocol.JSON {
		b, err = json.Marshal(m)
		op = ws.OpText
	} else {
		b, err = msgpack.Marshal(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.c.SendRaw(op, b); err != nil {
		t.Fatal(err)
	}
}

// apply folds a diff into the view: joins add or replace, updates patch,
// leaves remove.
func (p *prPeer) apply(t *testing.T, d *protocol.Presence) {
	t.Helper()
	p.diffs++
	if d.S != p.stream {
		t.Fatalf("presence for %q, want %q", d.S, p.stream)
	}
	if len(d.Joins)+len(d.Leaves)+len(d.Updates) == 0 {
		t.Errorf("empty presence diff %s", prJSON(d))
	}
	for _, j := range d.Joins {
		p.view[j.Client] = j
	}
	updated := map[string]bool{}
	for _, u := range d.Updates {
		if updated[u.Client] {
			t.Errorf("diff has two updates of %s: %s", u.Client, prJSON(d))
		}
		updated[u.Client] = true
		m, ok := p.view[u.Client]
		if !ok {
			t.Errorf("update of %s, who is not in the view", u.Client)
			continue
		}
		s, err := presence.ApplyPatch(m.State, u.State)
		if err != nil {
			t.Fatalf("update %s: %v", prJSON(u), err)
		}
		m.State = s
		p.view[u.Client] = m
	}
	for _, l := range d.Leaves {
		delete(p.view, l.Client)
	}
}

// next returns the next message other than a ping within timeout, or nil;
// a presence diff of the stream is applied before it is returned.
func (p *prPeer) next(t *testing.T, timeout time.Duration) protocol.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		m, err := p.c.Next(left)
		if err != nil {
			if p.c.Err() != nil {
				code, reason := p.c.CloseCode()
				t.Fatalf("connection ended: %v (close %d %q)", p.c.Err(), code, reason)
			}
			return nil
		}
		switch m := m.(type) {
		case *protocol.Ping:
			continue
		case *protocol.Presence:
			p.apply(t, m)
		}
		return m
	}
}

// diff returns the next message, which must be a presence diff.
func (p *prPeer) diff(t *testing.T) *protocol.Presence {
	t.Helper()
	m := p.next(t, wait)
	if m == nil {
		t.Fatalf("no presence diff within %v", wait)
	}
	d, ok := m.(*protocol.Presence)
	if !ok {
		t.Fatalf("got %s %s, want a presence diff", m.Type(), prJSON(m))
	}
	return d
}

// quiet fails if anything but a ping arrives within d.
func (p *prPeer) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	if m := p.next(t, d); m != nil {
		t.Fatalf("unexpected %s %s", m.Type(), prJSON(m))
	}
}

// prReply returns the next message that is not a presence diff (diffs on the
// way are applied); it must be a T.
func prReply[T protocol.Message](t *testing.T, p *prPeer) T {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		m := p.next(t, time.Until(deadline))
		if m == nil {
			var zero T
			t.Fatalf("no %T within %v", zero, wait)
		}
		if _, ok := m.(*protocol.Presence); ok {
			continue
		}
		v, ok := m.(T)
		if !ok {
			var zero T
			t.Fatalf("got %s %s, want %T", m.Type(), prJSON(m), zero)
		}
		return v
	}
}

// prError returns the next error reply (diffs on the way applied) and
// checks its id and code.
func prError(t *testing.T, p *prPeer, id uint64, code protocol.Code) *protocol.ErrorReply {
	t.Helper()
	e := prReply[*protocol.ErrorReply](t, p)
	if e.ID != id || e.Code != code || e.Reason == "" {
		t.Fatalf("error id=%d code=%d %q, want id=%d code=%d with a reason", e.ID, e.Code, e.Reason, id, code)
	}
	return e
}

// whoIs asks who and returns the members by client.
func (p *prPeer) whoIs(t *testing.T, id uint64) map[string]protocol.Member {
	t.Helper()
	p.send(t, &protocol.WhoRequest{ID: id, S: p.stream})
	w := prReply[*protocol.Who](t, p)
	if w.ID != id || w.S != p.stream {
		t.Fatalf("who %+v, want id %d s %q", w, id, p.stream)
	}
	out := make(map[string]protocol.Member, len(w.Members))
	for _, m := range w.Members {
		out[m.Client] = m
	}
	return out
}

// join sends join and waits for its ack.
func (p *prPeer) join(t *testing.T, id uint64, state any) {
	t.Helper()
	p.send(t, &protocol.Join{ID: id, S: p.stream, State: protocol.MustRaw(state)})
	if a := prReply[*protocol.Ack](t, p); a.ID != id {
		t.Fatalf("ack %+v, want id %d", a, id)
	}
}

// leave sends leave and waits for its ack.
func (p *prPeer) leave(t *testing.T, id uint64) {
	t.Helper()
	p.send(t, &protocol.Leave{ID: id, S: p.stream})
	if a := prReply[*protocol.Ack](t, p); a.ID != id {
		t.Fatalf("ack %+v, want id %d", a, id)
	}
}

// until reads diffs until ok(diff) holds and returns that diff.
func (p *prPeer) until(t *testing.T, timeout time.Duration, what string, ok func(*protocol.Presence) bool) *protocol.Presence {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := p.next(t, time.Until(deadline))
		if m == nil {
			t.Fatalf("no %s within %v; view %s", what, timeout, prViewString(t, p.view))
		}
		d, isDiff := m.(*protocol.Presence)
		if !isDiff {
			t.Fatalf("got %s %s while waiting for %s", m.Type(), prJSON(m), what)
		}
		if ok(d) {
			return d
		}
	}
}

func hasJoin(d *protocol.Presence, client string) bool {
	for _, j := range d.Joins {
		if j.Client == client {
			return true
		}
	}
	return false
}

func hasLeave(d *protocol.Presence, client string) bool {
	for _, l := range d.Leaves {
		if l.Client == client {
			return true
		}
	}
	return false
}

// prCanon renders a msgpack value as JSON with sorted keys; "" when absent.
func prCanon(t testing.TB, raw protocol.Raw) string {
	t.Helper()
	if raw.IsNil() {
		return ""
	}
	j, err := protocol.MsgpackToJSON(nil, raw)
	if err != nil {
		t.Fatalf("value %x: %v", []byte(raw), err)
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func prJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// prViewString renders members as client -> user info state, sorted.
func prViewString(t testing.TB, view map[string]protocol.Member) string {
	var lines []string
	for c, m := range view {
		lines = append(lines, fmt.Sprintf("%s=%s %s %s", c, m.User, prCanon(t, m.Info), prCanon(t, m.State)))
	}
	sort.Strings(lines)
	return "{" + strings.Join(lines, "; ") + "}"
}

// sameMembers fails unless two views hold the same members with the same
// user, info and state.
func sameMembers(t *testing.T, what string, got, want map[string]protocol.Member) {
	t.Helper()
	if g, w := prViewString(t, got), prViewString(t, want); g != w {
		t.Fatalf("%s:\n got  %s\n want %s", what, g, w)
	}
}

// stateOf returns the state of client in view as sorted JSON.
func stateOf(t *testing.T, view map[string]protocol.Member, client string) string {
	t.Helper()
	m, ok := view[client]
	if !ok {
		t.Fatalf("%s is not a member: %s", client, prViewString(t, view))
	}
	return prCanon(t, m.State)
}

// signedToken signs a token for user with info and the given grants.
func signedToken(t *testing.T, user string, info map[string]any, streams map[string][]string) string {
	t.Helper()
	tok, err := auth.SignHS256([]byte(testSecret), user, time.Now().Add(time.Hour), info, streams)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiPresence is the answer of GET /api/presence/{stream}.
type apiPresence struct {
	Stream  string `json:"stream"`
	Members []struct {
		User   string          `json:"user"`
		Client string          `json:"client"`
		Info   json.RawMessage `json:"info"`
		State  json.RawMessage `json:"state"`
	} `json:"members"`
	Users   *int `json:"users"`
	Clients *int `json:"clients"`
}

func getPresence(t *testing.T, h *harness, stream string) apiPresence {
	t.Helper()
	status, _, body := apiCall(t, h, "GET", "/api/presence/"+stream, "Bearer "+testAPIKey, "")
	if status != http.StatusOK {
		t.Fatalf("GET /api/presence/%s: %d %s", stream, status, body)
	}
	var p apiPresence
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if p.Members == nil || p.Users == nil || p.Clients == nil {
		t.Fatalf("body %s lacks members, users or clients", body)
	}
	return p
}

// ---- tests ----

// TestPresenceLifecycle: a peer sees another join with its token's info and
// its state, its updates as shallow patches, a second tab as a second
// member, and its leave; who matches the view throughout.
func TestPresenceLifecycle(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.cfg.Presence.Grace = 3 * time.Second })
	bobInfo := map[string]any{"name": "Bob", "avatar": "https://example.com/bob.png", "color": "#ff8800"}
	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			stream := "doc:life-" + codecName(codec)
			a := prUser(t, h, "alice", stream, codecOpts(codec))
			if s := a.sub(t, 2, nil); len(s.Members) != 0 {
				t.Fatalf("snapshot of an empty stream: %s", prJSON(s.Members))
			}
			b := prDial(t, h, signedToken(t, "bob", bobInfo, allStreams), stream)
			b.sub(t, 2, map[string]any{"cursor": map[string]any{"x": 1, "y": 2}, "status": "idle", "tmp": true})

			d := a.diff(t)
			if len(d.Joins) != 1 || len(d.Leaves)+len(d.Updates) != 0 {
				t.Fatalf("diff %s, want one join", prJSON(d))
			}
			j := d.Joins[0]
			if j.User != "bob" || j.Client != b.me.Client {
				t.Fatalf("join of %s/%s, want bob/%s", j.User, j.Client, b.me.Client)
			}
			if got := prCanon(t, j.Info); got != `{"avatar":"https://example.com/bob.png","color":"#ff8800","name":"Bob"}` {
				t.Fatalf("join info %s, want the token's info", got)
			}
			if got := prCanon(t, j.State); got != `{"cursor":{"x":1,"y":2},"status":"idle","tmp":true}` {
				t.Fatalf("join state %s", got)
			}
			// bob hears of his own join too (he subscribed with presence).
			if d := b.diff(t); !hasJoin(d, b.me.Client) {
				t.Fatalf("bob got %s, want his own join", prJSON(d))
			}

			// Shallow patches: keys replace, nil deletes, nested maps are
			// replaced whole.
			b.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"status": "typing", "tmp": nil})})
			d = a.diff(t)
			if len(d.Updates) != 1 || len(d.Joins)+len(d.Leaves) != 0 {
				t.Fatalf("diff %s, want one update", prJSON(d))
			}
			if u := d.Updates[0]; u.User != "bob" || u.Client != b.me.Client || prCanon(t, u.State) != `{"status":"typing","tmp":null}` {
				t.Fatalf("update %s, want bob's patch with tmp: null", prJSON(u))
			}
			b.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"cursor": map[string]any{"x": 5}})})
			a.diff(t)
			want := `{"cursor":{"x":5},"status":"typing"}`
			if got := stateOf(t, a.view, b.me.Client); got != want {
				t.Fatalf("alice's view of bob %s, want %s", got, want)
			}
			who := a.whoIs(t, 3)
			if got := stateOf(t, who, b.me.Client); got != want {
				t.Fatalf("who: bob's state %s, want %s", got, want)
			}
			sameMembers(t, "alice's view vs who", a.view, who)

			// A second tab of bob, joining without subscribing, is a second
			// member with the same user and info.
			b2 := prDial(t, h, signedToken(t, "bob", bobInfo, allStreams), stream)
			b2.join(t, 7, map[string]any{"tab": 2})
			d = a.diff(t)
			if len(d.Joins) != 1 || d.Joins[0].Client != b2.me.Client || d.Joins[0].User != "bob" || prCanon(t, d.Joins[0].Info) != prCanon(t, j.Info) {
				t.Fatalf("diff %s, want the join of bob's second tab", prJSON(d))
			}
			who = a.whoIs(t, 4)
			sameMembers(t, "alice's view vs who", a.view, who)
			tabs := 0
			for _, m := range who {
				if m.User == "bob" {
					tabs++
				}
			}
			if len(who) != 2 || tabs != 2 || b.me.Client == b2.me.Client {
				t.Fatalf("who %s, want two members of bob", prViewString(t, who))
			}

			// leave removes at once, long before the grace.
			began := time.Now()
			b.leave(t, 9)
			d = a.until(t, wait, "bob's leave", func(d *protocol.Presence) bool { return hasLeave(d, b.me.Client) })
			if d.Leaves[0].User != "bob" {
				t.Fatalf("leave %s", prJSON(d))
			}
			if el := time.Since(began); el > time.Second {
				t.Fatalf("leave arrived after %v (grace is 3s)", el)
			}
			// A second leave is acknowledged and changes nothing.
			b.leave(t, 10)
			// Rejoining, then unsubscribing, also removes at once.
			b.join(t, 11, map[string]any{"back": true})
			a.until(t, wait, "bob's rejoin", func(d *protocol.Presence) bool { return hasJoin(d, b.me.Client) })
			began = time.Now()
			b.send(t, &protocol.Unsubscribe{ID: 12, S: stream})
			if u := prReply[*protocol.Unsubscribed](t, b); u.ID != 12 {
				t.Fatalf("unsubscribed %+v", u)
			}
			a.until(t, wait, "bob's leave at unsub", func(d *protocol.Presence) bool { return hasLeave(d, b.me.Client) })
			if el := time.Since(began); el > time.Second {
				t.Fatalf("leave at unsub arrived after %v (grace is 3s)", el)
			}
			who = a.whoIs(t, 5)
			sameMembers(t, "alice's view vs who", a.view, who)
			if len(who) != 1 || who[b2.me.Client].User != "bob" {
				t.Fatalf("who %s, want only bob's second tab", prViewString(t, who))
			}
			a.quiet(t, 200*time.Millisecond)
		})
	}
}

// TestPresenceGrace: an abrupt disconnect keeps the member for the grace,
// so a quick reconnect never shows the user absent; a close handshake,
// leave or unsub remove at once.
func TestPresenceGrace(t *testing.T) {
	t.Parallel()
	const grace = time.Second
	h := start(t, func(o *harnessOpts) { o.cfg.Presence.Grace = grace })

	t.Run("reconnect within the grace", func(t *testing.T) {
		const stream = "doc:reconnect"
		a := prUser(t, h, "alice", stream)
		a.sub(t, 2, nil)
		b1 := prUser(t, h, "bob", stream)
		b1.sub(t, 2, map[string]any{"v": 1})
		a.until(t, wait, "bob's join", func(d *protocol.Presence) bool { return hasJoin(d, b1.me.Client) })

		closed := time.Now()
		b1.c.Close() // no close frame: the peer vanished
		time.Sleep(200 * time.Millisecond)
		b2 := prUser(t, h, "bob", stream)
		b2.sub(t, 2, map[string]any{"v": 2})

		sawNew := false
		bobPresent := func() bool {
			for _, m := range a.view {
				if m.User == "bob" {
					return true
				}
			}
			return false
		}
		a.until(t, grace+2*time.Second, "the old connection's leave", func(d *protocol.Presence) bool {
			if hasJoin(d, b2.me.Client) {
				sawNew = true
			}
			if !bobPresent() {
				t.Fatalf("alice's view lacks bob after %s", prJSON(d))
			}
			if hasLeave(d, b1.me.Client) && !sawNew {
				t.Fatalf("the old connection left (%s) before the new one joined", prJSON(d))
			}
			return hasLeave(d, b1.me.Client)
		})
		el := time.Since(closed)
		if el < grace || el > grace+time.Second {
			t.Fatalf("old connection left %v after the disconnect, want within [%v, %v]", el, grace, grace+time.Second)
		}
		who := a.whoIs(t, 3)
		sameMembers(t, "alice's view vs who", a.view, who)
		if len(who) != 1 || prCanon(t, who[b2.me.Client].State) != `{"v":2}` {
			t.Fatalf("who %s, want only bob's new connection", prViewString(t, who))
		}
	})

	t.Run("abrupt disconnect leaves after the grace", func(t *testing.T) {
		const stream = "doc:vanish"
		a := prUser(t, h, "alice", stream)
		a.sub(t, 2, nil)
		b := prUser(t, h, "bob", stream)
		b.sub(t, 2, map[string]any{"v": 1})
		a.until(t, wait, "bob's join", func(d *protocol.Presence) bool { return hasJoin(d, b.me.Client) })
		closed := time.Now()
		b.c.Close()
		time.Sleep(grace / 2)
		if who := a.whoIs(t, 3); len(who) != 1 {
			t.Fatalf("who during the grace %s, want bob still there", prViewString(t, who))
		}
		a.until(t, grace+2*time.Second, "bob's leave", func(d *protocol.Presence) bool {
			if len(d.Leaves) != 1 || !hasLeave(d, b.me.Client) || d.Leaves[0].User != "bob" || len(d.Joins)+len(d.Updates) != 0 {
				t.Fatalf("diff %s, want bob's leave alone", prJSON(d))
			}
			return true
		})
		if el := time.Since(closed); el < grace || el > grace+time.Second {
			t.Fatalf("leave %v after the disconnect, want within [%v, %v]", el, grace, grace+time.Second)
		}
		if who := a.whoIs(t, 4); len(who) != 0 {
			t.Fatalf("who %s, want nobody", prViewString(t, who))
		}
	})

	closeBody := func(code uint16) []byte {
		b := make([]byte, 2)
		binary.BigEndian.PutUint16(b, code)
		return b
	}
	clean := []struct {
		name string
		gone func(t *testing.T, b *prPeer)
	}{
		{"close handshake", func(t *testing.T, b *prPeer) {
			if err := b.c.SendRaw(ws.OpClose, closeBody(1000)); err != nil {
				t.Fatal(err)
			}
			if code, err := b.c.WaitClosed(wait); err != nil || code != 1000 {
				t.Fatalf("close reply %d %v, want 1000", code, err)
			}
		}},
		// A browser closing a tab sends a close frame and may drop the
		// socket without waiting for the reply.
		{"close frame, then hang up", func(t *testing.T, b *prPeer) {
			if err := b.c.SendRaw(ws.OpClose, closeBody(1001)); err != nil {
				t.Fatal(err)
			}
			b.c.Close()
		}},
		{"leave", func(t *testing.T, b *prPeer) { b.send(t, &protocol.Leave{S: b.stream}) }},
		{"unsub", func(t *testing.T, b *prPeer) { b.send(t, &protocol.Unsubscribe{S: b.stream}) }},
	}
	for i, tt := range clean {
		t.Run(tt.name+" removes at once", func(t *testing.T) {
			stream := fmt.Sprintf("doc:clean%d", i)
			a := prUser(t, h, "alice", stream)
			a.sub(t, 2, nil)
			// Several rounds: how the server sees the end may race.
			for round := range 3 {
				b := prUser(t, h, "bob", stream)
				b.sub(t, 2, map[string]any{"round": round})
				a.until(t, wait, "bob's join", func(d *protocol.Presence) bool { return hasJoin(d, b.me.Client) })
				began := time.Now()
				tt.gone(t, b)
				a.until(t, wait, "bob's leave", func(d *protocol.Presence) bool { return hasLeave(d, b.me.Client) })
				if el := time.Since(began); el > grace/2 {
					t.Fatalf("round %d: leave %v after a clean end, want well under the grace of %v", round, el, grace)
				}
			}
		})
	}
}

// TestPresenceIdentity: identity comes from the token and the connection;
// whatever a client sends, it cannot join, update or remove as another.
func TestPresenceIdentity(t *testing.T) {
	h := start(t)
	const stream = "doc:ident"
	a := prUser(t, h, "alice", stream)
	a.sub(t, 2, map[string]any{"mine": 1})
	a.until(t, wait, "alice's own join", func(d *protocol.Presence) bool { return hasJoin(d, a.me.Client) })
	obs := prUser(t, h, "olga", stream, jsonOpts)
	obs.sub(t, 2, nil)
	if len(obs.view) != 1 {
		t.Fatalf("snapshot %s, want alice", prViewString(t, obs.view))
	}

	for _, codec := range []protocol.Codec{protocol.Msgpack, protocol.JSON} {
		t.Run(codecName(codec), func(t *testing.T) {
			m := prDial(t, h, signedToken(t, "mallory", map[string]any{"name": "Mallory"}, allStreams), stream, codecOpts(codec))
			forged := map[string]any{"user": "alice", "client": a.me.Client, "info": map[string]any{"name": "Alice"}, "from": map[string]any{"user": "alice", "client": a.me.Client}}
			with := func(m map[string]any) map[string]any {
				for k, v := range forged {
					m[k] = v
				}
				return m
			}
			// join claiming to be alice's connection.
			m.sendMap(t, with(map[string]any{"t": "join", "id": 3, "s": stream, "state": map[string]any{"mine": 666}}))
			if ack := prReply[*protocol.Ack](t, m); ack.ID != 3 {
				t.Fatalf("ack %+v", ack)
			}
			d := obs.diff(t)
			if len(d.Joins) != 1 || d.Joins[0].User != "mallory" || d.Joins[0].Client != m.me.Client || prCanon(t, d.Joins[0].Info) != `{"name":"Mallory"}` {
				t.Fatalf("diff %s, want mallory's own join with her token's info", prJSON(d))
			}
			// update claiming alice's connection patches mallory's state only.
			m.sendMap(t, with(map[string]any{"t": "update", "s": stream, "state": map[string]any{"mine": 777, "x": 1}}))
			d = obs.diff(t)
			if len(d.Updates) != 1 || d.Updates[0].Client != m.me.Client || d.Updates[0].User != "mallory" {
				t.Fatalf("diff %s, want an update of mallory", prJSON(d))
			}
			// A state that names a user is just state.
			m.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"user": "alice", "client": a.me.Client})})
			obs.diff(t)
			who := obs.whoIs(t, 10)
			sameMembers(t, "olga's view vs who", obs.view, who)
			if got := stateOf(t, who, a.me.Client); got != `{"mine":1}` {
				t.Fatalf("alice's state %s, want it untouched", got)
			}
			if who[a.me.Client].User != "alice" || who[m.me.Client].User != "mallory" {
				t.Fatalf("who %s", prViewString(t, who))
			}
			if got := stateOf(t, who, m.me.Client); got != fmt.Sprintf(`{"client":%q,"mine":777,"user":"alice","x":1}`, a.me.Client) {
				t.Fatalf("mallory's state %s", got)
			}
			// leave naming alice's connection removes mallory.
			m.sendMap(t, with(map[string]any{"t": "leave", "id": 4, "s": stream}))
			if ack := prReply[*protocol.Ack](t, m); ack.ID != 4 {
				t.Fatalf("ack %+v", ack)
			}
			d = obs.diff(t)
			if len(d.Leaves) != 1 || d.Leaves[0].Client != m.me.Client || len(d.Joins)+len(d.Updates) != 0 {
				t.Fatalf("diff %s, want mallory's leave alone", prJSON(d))
			}
			// A client that never joined cannot update anyone.
			m.sendMap(t, with(map[string]any{"t": "update", "s": stream, "state": map[string]any{"mine": 888}}))
			prError(t, m, 0, protocol.CodeBadRequest)
			// sub with presence and a join, claiming alice's identity.
			m.sendMap(t, with(map[string]any{"t": "sub", "id": 5, "s": stream, "presence": true, "join": map[string]any{"mine": 999}}))
			if s := prReply[*protocol.Subscribed](t, m); s.ID != 5 {
				t.Fatalf("subscribed %+v", s)
			}
			d = obs.diff(t)
			if len(d.Joins) != 1 || d.Joins[0].User != "mallory" || d.Joins[0].Client != m.me.Client {
				t.Fatalf("diff %s, want mallory's join", prJSON(d))
			}
			who = obs.whoIs(t, 11)
			if got := stateOf(t, who, a.me.Client); got != `{"mine":1}` || len(who) != 2 {
				t.Fatalf("who %s, want alice untouched and mallory", prViewString(t, who))
			}
			m.leave(t, 6)
			obs.until(t, wait, "mallory's leave", func(d *protocol.Presence) bool { return hasLeave(d, m.me.Client) })
			obs.quiet(t, 100*time.Millisecond)
		})
	}
}

// TestPresenceForbidden: joining needs op presence and the presence feature;
// receiving presence needs the feature.
func TestPresenceForbidden(t *testing.T) {
	h := start(t, func(o *harnessOpts) { o.rules = []string{"quiet:*=;presence=off"} })

	t.Run("no presence op", func(t *testing.T) {
		const stream = "doc:noop"
		obs := prUser(t, h, "olga", stream)
		obs.sub(t, 2, nil)
		p := prDial(t, h, tokenWith(t, "pete", time.Now().Add(time.Hour), map[string][]string{"*": {"sub", "pub"}}), stream)
		p.send(t, &protocol.Join{ID: 3, S: stream, State: protocol.MustRaw(map[string]any{"x": 1})})
		prError(t, p, 3, protocol.CodeForbidden)
		p.send(t, &protocol.Subscribe{ID: 4, S: stream, Presence: true, Join: protocol.MustRaw(map[string]any{"x": 1})})
		prError(t, p, 4, protocol.CodeForbidden)
		p.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"x": 2})})
		prError(t, p, 0, protocol.CodeBadRequest) // not a member
		wantAlive(t, p.c)
		// Receiving presence needs only sub: the denied sub left no
		// subscription behind.
		p.sub(t, 5, nil)
		obs.quiet(t, 200*time.Millisecond)
		if who := obs.whoIs(t, 3); len(who) != 0 {
			t.Fatalf("who %s, want nobody", prViewString(t, who))
		}
	})

	t.Run("presence off by rule", func(t *testing.T) {
		const stream = "quiet:1"
		p := prUser(t, h, "pete", stream)
		p.send(t, &protocol.Subscribe{ID: 2, S: stream, Presence: true})
		prError(t, p, 2, protocol.CodeForbidden)
		p.send(t, &protocol.Subscribe{ID: 3, S: stream, Join: protocol.MustRaw(map[string]any{"x": 1})})
		prError(t, p, 3, protocol.CodeForbidden)
		p.send(t, &protocol.Join{ID: 4, S: stream, State: protocol.MustRaw(map[string]any{"x": 1})})
		prError(t, p, 4, protocol.CodeForbidden)
		// Plain subscribing still works.
		subscribe(t, p.c, 5, stream, nil)
		if got := getPresence(t, h, stream); len(got.Members) != 0 {
			t.Fatalf("members %+v, want none", got.Members)
		}
	})
}

// TestPresenceLimits: state size, members per stream, update rate.
func TestPresenceLimits(t *testing.T) {
	h := start(t, func(o *harnessOpts) {
		o.cfg.Presence.MaxMembers = 3
		o.cfg.Presence.UpdateRate = 5
		o.cfg.Presence.UpdateBurst = 5
	})
	// bigState is a state map that encodes to exactly n bytes of msgpack:
	// fixmap, fixstr "s", str16 header, then the string.
	bigState := func(n int) map[string]any { return map[string]any{"s": strings.Repeat("x", n-6)} }
	if n := len(protocol.MustRaw(bigState(4096))); n != 4096 {
		t.Fatalf("bigState(4096) encodes to %d bytes", n)
	}

	t.Run("state size", func(t *testing.T) {
		const stream = "doc:size"
		obs := prUser(t, h, "olga", stream)
		obs.sub(t, 2, nil)
		p := prUser(t, h, "pete", stream)
		p.send(t, &protocol.Join{ID: 3, S: stream, State: protocol.MustRaw(bigState(4097))})
		prError(t, p, 3, protocol.CodeTooLarge)
		p.send(t, &protocol.Subscribe{ID: 4, S: stream, Presence: true, Join: protocol.MustRaw(bigState(4097))})
		prError(t, p, 4, protocol.CodeTooLarge)
		wantAlive(t, p.c)
		obs.quiet(t, 200*time.Millisecond)

		p.join(t, 5, bigState(4096)) // exactly the limit
		obs.diff(t)
		p.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(bigState(4097))})
		prError(t, p, 0, protocol.CodeTooLarge)
		wantAlive(t, p.c)
		obs.quiet(t, 200*time.Millisecond)
		if got := stateOf(t, obs.whoIs(t, 3), p.me.Client); len(got) < 4000 {
			t.Fatalf("state changed to %.40s...", got)
		}
	})

	t.Run("state grown by updates", func(t *testing.T) {
		// Each patch is under the limit, the state they add up to is not.
		const stream = "doc:grow"
		p := prUser(t, h, "pete", stream)
		p.join(t, 2, map[string]any{"a": strings.Repeat("a", 3000)})
		p.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"b": strings.Repeat("b", 3000)})})
		p.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{"c": strings.Repeat("c", 3000)})})
		refused := 0
		for m := p.next(t, 300*time.Millisecond); m != nil; m = p.next(t, 300*time.Millisecond) {
			if e, ok := m.(*protocol.ErrorReply); !ok || e.Code != protocol.CodeTooLarge {
				t.Fatalf("got %s %s, want nothing or error 4005", m.Type(), prJSON(m))
			}
			refused++
		}
		wantAlive(t, p.c)
		got := getPresence(t, h, stream)
		if len(got.Members) != 1 {
			t.Fatalf("members %+v", got.Members)
		}
		var st protocol.Raw
		st, _ = protocol.RawFromJSON(got.Members[0].State)
		if len(st) > 4096 || refused == 0 {
			t.Fatalf("member state grew to %d bytes of msgpack through two updates of 3 KB (%d refused with 4005); the limit is 4096", len(st), refused)
		}
	})

	t.Run("members per stream", func(t *testing.T) {
		const stream = "doc:full"
		obs := prUser(t, h, "olga", stream)
		obs.sub(t, 2, nil)
		var ps []*prPeer
		for i := range 3 {
			p := prUser(t, h, fmt.Sprintf("u%d", i), stream)
			p.join(t, 2, map[string]any{"i": i})
			ps = append(ps, p)
		}
		// The joins' diff goes out before the late subscriber arrives, or
		// it could reach it after its snapshot, ahead of the pong below.
		obs.until(t, wait, "the third join", func(d *protocol.Presence) bool { return hasJoin(d, ps[2].me.Client) })
		fourth := prUser(t, h, "late", stream)
		fourth.send(t, &protocol.Join{ID: 3, S: stream, State: protocol.MustRaw(map[string]any{"i": 3})})
		e := prError(t, fourth, 3, protocol.CodeForbidden)
		if !strings.Contains(e.Reason, "full") || !strings.Contains(e.Reason, "3") {
			t.Fatalf("reason %q, want it to say the stream is full at 3", e.Reason)
		}
		// With sub+join the subscribe succeeds and the join is refused.
		fourth.send(t, &protocol.Subscribe{ID: 4, S: stream, Presence: true, Join: protocol.MustRaw(map[string]any{"i": 3})})
		if s := prReply[*protocol.Subscribed](t, fourth); len(s.Members) != 3 {
			t.Fatalf("snapshot %+v, want 3 members", s.Members)
		}
		e = prReply[*protocol.ErrorReply](t, fourth)
		if e.Code != protocol.CodeForbidden || e.S != stream || !strings.Contains(e.Reason, "full") {
			t.Fatalf("error %+v, want 4003 full for %s", e, stream)
		}
		wantAlive(t, fourth.c)
		// A member of a full stream may still replace its state.
		ps[2].join(t, 5, map[string]any{"i": 22})
		ps[0].leave(t, 6)
		fourth.join(t, 7, map[string]any{"i": 3})
		obs.until(t, wait, "the late join", func(d *protocol.Presence) bool { return hasJoin(d, fourth.me.Client) })
		who := obs.whoIs(t, 3)
		sameMembers(t, "olga's view vs who", obs.view, who)
		if len(who) != 3 || stateOf(t, who, ps[2].me.Client) != `{"i":22}` {
			t.Fatalf("who %s", prViewString(t, who))
		}
	})

	t.Run("update rate", func(t *testing.T) {
		const stream = "doc:rate"
		obs := prUser(t, h, "olga", stream)
		obs.sub(t, 2, nil)
		p := prUser(t, h, "pete", stream)
		p.join(t, 2, map[string]any{})
		obs.diff(t)
		// burst sends 40 updates, each adding a key, then asks who on the
		// same connection: the reply comes after all 40 were handled, and
		// any warning before it.
		whoID := uint64(10)
		burst := func(from int) (accepted, warned int, span time.Duration) {
			began := time.Now()
			for i := from; i < from+40; i++ {
				p.send(t, &protocol.Update{S: stream, State: protocol.MustRaw(map[string]any{fmt.Sprintf("k%02d", i): i})})
			}
			whoID++
			p.send(t, &protocol.WhoRequest{ID: whoID, S: stream})
			for {
				switch m := p.next(t, wait).(type) {
				case *protocol.ErrorReply:
					if m.Code != protocol.CodeRateLimited || m.S != stream || m.ID != 0 {
						t.Fatalf("error %s, want 4006 for %s", prJSON(m), stream)
					}
					warned++
				case *protocol.Who:
					var keys map[string]any
					for _, mb := range m.Members {
						if mb.Client == p.me.Client {
							if err := msgpack.Unmarshal(mb.State, &keys); err != nil {
								t.Fatal(err)
							}
						}
					}
					return len(keys), warned, time.Since(began)
				default:
					t.Fatalf("got %s %s, want 4006 errors, then who", m.Type(), prJSON(m))
				}
			}
		}
		// The bucket holds 5 and refills 5/s while the burst is handled.
		began := time.Now()
		n, warned, span := burst(0)
		if warned != 1 || n < 5 || float64(n) > 5+5*span.Seconds()+1 {
			t.Fatalf("40 updates handled within %v: %d accepted, %d warnings; want 5 (+5/s) and exactly 1", span, n, warned)
		}
		// A second later the bucket is full again and one more warning is due.
		time.Sleep(1100 * time.Millisecond)
		n2, warned2, span2 := burst(40)
		if warned2 != 1 || n2-n < 5 || float64(n2-n) > 5+5*span2.Seconds()+1 {
			t.Fatalf("second burst, handled within %v: %d accepted, %d warnings; want 5 (+5/s) and exactly 1", span2, n2-n, warned2)
		}
		if el := time.Since(began); float64(warned+warned2) > 1+el.Seconds() {
			t.Fatalf("%d warnings in %v: more than one a second", warned+warned2, el)
		}
		wantAlive(t, p.c)
		time.Sleep(200 * time.Millisecond) // the last tick's diff is out
		sameMembers(t, "olga's view vs who", obs.view, obs.whoIs(t, 3))
	})
}

// TestPresenceSnapshotMidTick: a subscriber's snapshot and the diffs that
// follow must add up to the members, even when the snapshot is read between
// a join and a leave that fall in one tick.
func TestPresenceSnapshotMidTick(t *testing.T) {
	t.Parallel()
	const tick = time.Second // long, so the three steps below share one
	h := start(t, func(o *harnessOpts) { o.cfg.Presence.Tick = tick })
	for attempt := range 5 {
		stream := fmt.Sprintf("doc:midtick%d", attempt)
		watch := prUser(t, h, "wanda", stream)
		watch.sub(t, 2, nil)

		y := prUser(t, h, "yuri", stream)
		y.join(t, 2, map[string]any{"here": true})
		x := prUser(t, h, "xena", stream)
		x.sub(t, 2, nil)
		inSnapshot := len(x.view) == 1
		y.leave(t, 3)

		for x.next(t, tick+300*time.Millisecond) != nil {
		}
		// A diff with yuri's join but not his leave means the steps fell
		// in two ticks: no test then.
		straddled := false
		for m := watch.next(t, 10*time.Millisecond); m != nil; m = watch.next(t, 10*time.Millisecond) {
			if d, ok := m.(*protocol.Presence); ok && hasJoin(d, y.me.Client) && !hasLeave(d, y.me.Client) {
				straddled = true
			}
		}
		if straddled {
			t.Logf("attempt %d: the steps straddled a tick; again", attempt)
			continue
		}
		if !inSnapshot {
			t.Fatalf("snapshot %s lacks yuri, who had joined", prViewString(t, x.view))
		}
		who := x.whoIs(t, 3)
		sameMembers(t, "xena's view (snapshot + diffs) vs who", x.view, who)
		return
	}
	t.Skip("every attempt straddled a tick")
}

// TestPresenceAPI: GET /api/presence/{stream} lists members and counts users
// and clients.
func TestPresenceAPI(t *testing.T) {
	h := start(t)
	const stream = "doc:api"
	got := getPresence(t, h, stream)
	if got.Stream != stream || len(got.Members) != 0 || *got.Users != 0 || *got.Clients != 0 {
		t.Fatalf("empty stream: %+v", got)
	}
	a1 := prUser(t, h, "alice", stream)
	a1.join(t, 2, map[string]any{"tab": 1})
	a2 := prUser(t, h, "alice", stream, jsonOpts)
	a2.join(t, 2, map[string]any{"tab": 2})
	b := prUser(t, h, "bob", stream)
	b.join(t, 2, nil)

	got = getPresence(t, h, stream)
	if got.Stream != stream || len(got.Members) != 3 || *got.Users != 2 || *got.Clients != 3 {
		t.Fatalf("got %+v, want 3 members, 2 users, 3 clients", got)
	}
	byClient := map[string]string{}
	for _, m := range got.Members {
		byClient[m.Client] = m.User + " " + string(m.Info) + " " + string(m.State)
	}
	want := map[string]string{
		a1.me.Client: `alice {"name":"ALICE"} {"tab":1}`,
		a2.me.Client: `alice {"name":"ALICE"} {"tab":2}`,
		b.me.Client:  `bob {"name":"BOB"} `,
	}
	for c, w := range want {
		if byClient[c] != w {
			t.Fatalf("member %s: %q, want %q", c, byClient[c], w)
		}
	}
	a2.leave(t, 3)
	if got = getPresence(t, h, stream); len(got.Members) != 2 || *got.Users != 2 || *got.Clients != 2 {
		t.Fatalf("after a leave: %+v", got)
	}
	status, hdr, body := apiCall(t, h, "GET", "/api/presence/"+stream, "", "")
	wantAPIError(t, status, http.StatusUnauthorized, hdr, body)
}

// ---- the join storm ----

// stormPeer is one storm client. A full peer decodes every message with the
// protocol package and keeps whole members; a light peer reads raw msgpack
// frames and keeps only client ids, so a thousand of them stay cheap under
// the race detector while still building their views from the snapshot and
// every diff.
type stormPeer struct {
	c      *wsclient.Client
	client string
	full   bool

	mu         sync.Mutex // guards the following
	view       map[string]protocol.Member
	subscribed time.Time
	diffs      int
	lastDiff   time.Time
	err        error
}

func (p *stormPeer) failLocked(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf(format, args...)
	}
}

// onMessageLocked folds one message into the view.
func (p *stormPeer) onMessageLocked(stream string, m protocol.Message) {
	switch m := m.(type) {
	case *protocol.Ping:
	case *protocol.Subscribed:
		if p.view != nil {
			p.failLocked("second subscribed")
		}
		p.subscribed = time.Now()
		p.view = make(map[string]protocol.Member, len(m.Members))
		for _, mb := range m.Members {
			p.view[mb.Client] = mb
		}
	case *protocol.Presence:
		p.diffs++
		p.lastDiff = time.Now()
		if p.view == nil {
			p.failLocked("presence before subscribed")
			return
		}
		if m.S != stream {
			p.failLocked("presence for %q", m.S)
		}
		for _, j := range m.Joins {
			p.view[j.Client] = j
		}
		for _, u := range m.Updates {
			mb, ok := p.view[u.Client]
			if !ok {
				p.failLocked("update of unknown %s", u.Client)
				continue
			}
			s, err := presence.ApplyPatch(mb.State, u.State)
			if err != nil {
				p.failLocked("patch: %v", err)
			}
			mb.State = s
			p.view[u.Client] = mb
		}
		for _, l := range m.Leaves {
			delete(p.view, l.Client)
		}
	default:
		p.failLocked("unexpected %s %s", m.Type(), prJSON(m))
	}
}

// run reads until the connection ends; done is called once, when the view
// holds want members or the connection ended.
func (p *stormPeer) run(stream string, want int, done func()) {
	signalled := false
	defer func() {
		if !signalled {
			done()
		}
	}()
	for {
		var msgs []protocol.Message
		if p.full {
			m, err := p.c.Next(time.Minute)
			if err != nil {
				return
			}
			msgs = append(msgs, m)
		} else {
			f, err := ws.ReadFrame(p.c.Conn)
			if err != nil {
				return
			}
			if f.Header.OpCode != ws.OpBinary {
				if f.Header.OpCode == ws.OpClose {
					return
				}
				continue // a WebSocket ping
			}
			if msgs, err = lightDecode(f.Payload); err != nil {
				p.mu.Lock()
				p.failLocked("frame: %v", err)
				p.mu.Unlock()
				return
			}
		}
		p.mu.Lock()
		for _, m := range msgs {
			p.onMessageLocked(stream, m)
		}
		if !signalled && len(p.view) == want {
			signalled = true
			done()
		}
		p.mu.Unlock()
	}
}

// dialLight connects a client whose frames the test reads itself.
func dialLight(url, tok string) (*wsclient.Client, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsclient.Dial(ctx, url, wsclient.Options{NoReader: true})
	if err != nil {
		return nil, "", err
	}
	if err := c.Send(&protocol.Connect{ID: 1, Token: tok}); err != nil {
		c.Close()
		return nil, "", err
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := ws.ReadFrame(c.Conn)
	_ = c.Conn.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, "", err
	}
	var r mpReader
	r.b = f.Payload
	m := r.message()
	if r.err != nil || m.t != protocol.TypeConnected || m.client == "" {
		c.Close()
		return nil, "", fmt.Errorf("connect: got %q %v", m.t, r.err)
	}
	return c, m.client, nil
}

// lightDecode turns a msgpack frame into messages that carry only what the
// storm checks: types, stream and client ids.
func lightDecode(b []byte) ([]protocol.Message, error) {
	r := mpReader{b: b}
	var out []protocol.Message
	for r.i < len(r.b) && r.err == nil {
		m := r.message()
		switch m.t {
		case protocol.TypeSubscribed:
			s := &protocol.Subscribed{S: m.s}
			for _, c := range m.members {
				s.Members = append(s.Members, protocol.Member{Client: c})
			}
			out = append(out, s)
		case protocol.TypePresence:
			d := &protocol.Presence{S: m.s}
			for _, c := range m.joins {
				d.Joins = append(d.Joins, protocol.Member{Client: c})
			}
			for _, c := range m.leaves {
				d.Leaves = append(d.Leaves, protocol.ClientInfo{Client: c})
			}
			for _, c := range m.updates {
				d.Updates = append(d.Updates, protocol.MemberUpdate{Client: c})
			}
			out = append(out, d)
		case protocol.TypePing:
			out = append(out, &protocol.Ping{})
		default:
			out = append(out, &protocol.Unknown{T: m.t})
		}
	}
	return out, r.err
}

// mpReader walks msgpack without decoding what it does not need.
type mpReader struct {
	b   []byte
	i   int
	err error
}

// lightMsg is what a light peer takes from one message.
type lightMsg struct {
	t, s, client                    string
	members, joins, leaves, updates []string
}

func (r *mpReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("msgpack: %s at byte %d", what, r.i)
	}
	r.i = len(r.b)
}

func (r *mpReader) take(n int) []byte {
	if n < 0 || r.i+n > len(r.b) {
		r.fail("truncated value")
		return nil
	}
	v := r.b[r.i : r.i+n]
	r.i += n
	return v
}

func (r *mpReader) uint(n int) int {
	v := 0
	for _, c := range r.take(n) {
		v = v<<8 | int(c)
	}
	return v
}

// head reads a value's header: kind 'm' (map of n pairs), 'a' (array of n
// values), 's' (string of n bytes) or 'v' (another value of n more bytes).
func (r *mpReader) head() (kind byte, n int) {
	b := r.take(1)
	if b == nil {
		return 'v', 0
	}
	c := b[0]
	switch {
	case c <= 0x7f || c >= 0xe0:
		return 'v', 0
	case c <= 0x8f:
		return 'm', int(c & 0x0f)
	case c <= 0x9f:
		return 'a', int(c & 0x0f)
	case c <= 0xbf:
		return 's', int(c & 0x1f)
	}
	switch c {
	case 0xc0, 0xc2, 0xc3:
		return 'v', 0
	case 0xc4:
		return 'v', r.uint(1)
	case 0xc5:
		return 'v', r.uint(2)
	case 0xc6:
		return 'v', r.uint(4)
	case 0xc7:
		return 'v', r.uint(1) + 1
	case 0xc8:
		return 'v', r.uint(2) + 1
	case 0xc9:
		return 'v', r.uint(4) + 1
	case 0xca, 0xce, 0xd2:
		return 'v', 4
	case 0xcb, 0xcf, 0xd3:
		return 'v', 8
	case 0xcc, 0xd0:
		return 'v', 1
	case 0xcd, 0xd1:
		return 'v', 2
	case 0xd4:
		return 'v', 2
	case 0xd5:
		return 'v', 3
	case 0xd6:
		return 'v', 5
	case 0xd7:
		return 'v', 9
	case 0xd8:
		return 'v', 17
	case 0xd9:
		return 's', r.uint(1)
	case 0xda:
		return 's', r.uint(2)
	case 0xdb:
		return 's', r.uint(4)
	case 0xdc:
		return 'a', r.uint(2)
	case 0xdd:
		return 'a', r.uint(4)
	case 0xde:
		return 'm', r.uint(2)
	case 0xdf:
		return 'm', r.uint(4)
	}
	r.fail("unknown type byte")
	return 'v', 0
}

func (r *mpReader) skip() {
	kind, n := r.head()
	switch kind {
	case 'm':
		n *= 2
		fallthrough
	case 'a':
		for ; n > 0 && r.err == nil; n-- {
			r.skip()
		}
	default:
		r.take(n)
	}
}

func (r *mpReader) str() string {
	kind, n := r.head()
	if kind != 's' {
		r.fail("want a string")
		return ""
	}
	return string(r.take(n))
}

// clients reads an array of maps and returns their "client" values.
func (r *mpReader) clients() []string {
	kind, n := r.head()
	if kind != 'a' {
		r.fail("want an array")
		return nil
	}
	out := make([]string, 0, n)
	for ; n > 0 && r.err == nil; n-- {
		kind, pairs := r.head()
		if kind != 'm' {
			r.fail("want a map")
			return nil
		}
		for ; pairs > 0 && r.err == nil; pairs-- {
			if r.str() == "client" {
				out = append(out, r.str())
			} else {
				r.skip()
			}
		}
	}
	return out
}

func (r *mpReader) message() (m lightMsg) {
	kind, n := r.head()
	if kind != 'm' {
		r.fail("message is not a map")
		return m
	}
	for ; n > 0 && r.err == nil; n-- {
		switch r.str() {
		case "t":
			m.t = r.str()
		case "s":
			m.s = r.str()
		case "client":
			m.client = r.str()
		case "members":
			m.members = r.clients()
		case "joins":
			m.joins = r.clients()
		case "leaves":
			m.leaves = r.clients()
		case "updates":
			m.updates = r.clients()
		default:
			r.skip()
		}
	}
	return m
}

func TestPresenceStormDecoder(t *testing.T) {
	d := &protocol.Presence{S: "s",
		Joins:   []protocol.Member{{User: "u", Client: "c1", Info: protocol.MustRaw(map[string]any{"a": []any{1.5, -3, int64(1) << 40, "x", nil, true}}), State: protocol.MustRaw(map[string]any{"b": map[string]any{"c": strings.Repeat("y", 300)}})}},
		Leaves:  []protocol.ClientInfo{{User: "u", Client: "c2"}},
		Updates: []protocol.MemberUpdate{{User: "u", Client: "c3", State: protocol.MustRaw(map[string]any{"d": nil})}},
	}
	frame, err := protocol.EncodeFrame(protocol.Msgpack, &protocol.Subscribed{ID: 2, S: "s", Epoch: "e", Members: []protocol.Member{{User: "u", Client: "c0"}}}, d)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := lightDecode(frame)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("%v %v", msgs, err)
	}
	s, p := msgs[0].(*protocol.Subscribed), msgs[1].(*protocol.Presence)
	if s.Members[0].Client != "c0" || p.S != "s" || p.Joins[0].Client != "c1" || p.Leaves[0].Client != "c2" || p.Updates[0].Client != "c3" {
		t.Fatalf("decoded %s %s", prJSON(s), prJSON(p))
	}
}

// TestPresenceJoinStorm: 1,000 connections subscribe with presence and join
// one stream at once. Every subscriber ends with the same 1,000-member view,
// and receives a number of diffs bounded by ticks, not by joins.
func TestPresenceJoinStorm(t *testing.T) {
	const (
		n       = 1000
		users   = 250 // four tabs each
		workers = 16
		stream  = "doc:storm"
	)
	h := start(t)
	tick := presence.Config{}.WithDefaults().Tick
	// Ten peers decode everything (three of them speak JSON) for the full
	// check of user, info and state; the others keep client ids.
	fullPeer := func(i int) bool { return i%(n/10) == 7 }
	jsonPeer := func(i int) bool { return fullPeer(i) && i%3 == 0 }

	toks := make([]string, users)
	for u := range toks {
		toks[u] = token(t, fmt.Sprintf("user%03d", u))
	}
	var errMu sync.Mutex
	var firstErr error
	setErr := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}

	// Connect everyone first: the storm is the subscribes.
	peers := make([]*stormPeer, n)
	dialStart := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				p := &stormPeer{full: fullPeer(i)}
				var err error
				if p.full {
					o := wsclient.Options{}
					if jsonPeer(i) {
						o.Subprotocols = []string{protocol.SubprotocolJSON}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					var me *protocol.Connected
					p.c, me, err = wsclient.DialConnected(ctx, h.URL, toks[i%users], o)
					cancel()
					if err == nil {
						p.client = me.Client
					}
				} else {
					p.c, p.client, err = dialLight(h.URL, toks[i%users])
				}
				if err != nil {
					setErr(fmt.Errorf("dial %d: %w", i, err))
					return
				}
				peers[i] = p
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, p := range peers {
			if p != nil {
				p.c.Close()
			}
		}
	})
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	dialTook := time.Since(dialStart)

	var converged, readers sync.WaitGroup
	converged.Add(n)
	for _, p := range peers {
		readers.Add(1)
		go func() {
			defer readers.Done()
			p.run(stream, n, converged.Done)
		}()
	}
	stateOfPeer := func(i int) map[string]any {
		return map[string]any{"i": i, "color": fmt.Sprintf("#%06x", i*4099)}
	}

	began := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				err := peers[i].c.Send(&protocol.Subscribe{ID: 2, S: stream, Presence: true, Join: protocol.MustRaw(stateOfPeer(i))})
				if err != nil {
					setErr(fmt.Errorf("sub %d: %w", i, err))
				}
			}
		}()
	}
	wg.Wait()
	sent := time.Since(began)
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	all := make(chan struct{})
	go func() { converged.Wait(); close(all) }()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		short := 0
		for _, p := range peers {
			p.mu.Lock()
			if len(p.view) != n {
				short++
			}
			p.mu.Unlock()
		}
		t.Fatalf("after 30s %d of %d views still lack members", short, n)
	}
	convergedAfter := time.Since(began)
	time.Sleep(5 * tick) // anything still in flight arrives

	api := getPresence(t, h, stream)
	if len(api.Members) != n || *api.Users != users || *api.Clients != n {
		t.Fatalf("GET /api/presence: %d members, %d users, %d clients; want %d, %d, %d", len(api.Members), *api.Users, *api.Clients, n, users, n)
	}

	// Stop the readers, then inspect their views at rest.
	for _, p := range peers {
		p.c.Close()
	}
	readers.Wait()

	want := make(map[string]string, n) // client -> user info state
	for i, p := range peers {
		user := fmt.Sprintf("user%03d", i%users)
		want[p.client] = fmt.Sprintf(`%s {"name":%q} %s`, user, strings.ToUpper(user), prCanon(t, protocol.MustRaw(stateOfPeer(i))))
	}
	var maxDiffs, sumDiffs, fullChecked int
	subs := make([]time.Duration, n)
	for i, p := range peers {
		if p.err != nil {
			t.Fatalf("peer %d: %v", i, p.err)
		}
		if len(p.view) != n {
			t.Fatalf("peer %d ends with %d members, want %d", i, len(p.view), n)
		}
		for c := range p.view {
			if _, ok := want[c]; !ok {
				t.Fatalf("peer %d sees unknown client %s", i, c)
			}
		}
		if p.full {
			fullChecked++
			for c, m := range p.view {
				if got := fmt.Sprintf("%s %s %s", m.User, prCanon(t, m.Info), prCanon(t, m.State)); got != want[c] {
					t.Fatalf("peer %d (%s) sees %s as %s, want %s", i, p.c.Codec, c, got, want[c])
				}
			}
		}
		// Diffs come at most once a tick: bounded by the time they span.
		span := p.lastDiff.Sub(began)
		if limit := int(span/tick) + 3; p.diffs > limit {
			t.Errorf("peer %d got %d presence messages over %v: more than one a tick (limit %d)", i, p.diffs, span, limit)
		}
		if p.diffs > n/10 {
			t.Errorf("peer %d got %d presence messages for %d joins", i, p.diffs, n)
		}
		maxDiffs = max(maxDiffs, p.diffs)
		sumDiffs += p.diffs
		subs[i] = p.subscribed.Sub(began)
	}
	if fullChecked != 10 {
		t.Fatalf("%d full views checked, want 10", fullChecked)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i] < subs[j] })
	t.Logf("%d connections dialled in %v; subs sent in %v; subscribed after p50 %v, p99 %v, all %v; all views complete after %v",
		n, dialTook.Round(time.Millisecond), sent.Round(time.Millisecond), subs[n/2].Round(time.Millisecond),
		subs[n*99/100].Round(time.Millisecond), subs[n-1].Round(time.Millisecond), convergedAfter.Round(time.Millisecond))
	t.Logf("presence messages per subscriber: max %d, mean %.1f (tick %v, %d joins)", maxDiffs, float64(sumDiffs)/n, tick, n)
}
