package core

import (
	"cmp"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/hub"
	"github.com/huddle-rt/huddle/presence"
	"github.com/huddle-rt/huddle/protocol"
)

// Kinds of hub messages besides publications and whispers.
const (
	// kindPresence marks presence diffs; only subscriptions that asked for
	// presence keep them.
	kindPresence = 1 + iota
	// kindLost tells every subscription that publications may have been
	// lost; kindLostPresence tells those that receive presence that diffs
	// may have been. Each closes its connection with 4010.
	kindLost
	kindLostPresence
)

// emitPresence fans a stream's batched diff out, encoded once per format.
func (node *Node) emitPresence(stream string, diff *protocol.Presence) {
	frames := node.frames(diff)
	n := node.hub.Broadcast(stream, hub.Message{Kind: kindPresence}, frames, nil)
	node.metrics.CountOut(protocol.TypePresence, n)
	node.relay(stream, frames, diff, true)
	if node.events != nil {
		node.events.OnPresence(stream, diff)
	}
}

// checkState validates a join state or an update patch.
func (c *Session) checkState(reqID uint64, stream string, state protocol.Raw) bool {
	if len(state) > c.node.cfg.Presence.MaxState {
		c.sendError(reqID, stream, protocol.CodeTooLarge, "presence state over the limit of "+strconv.Itoa(c.node.cfg.Presence.MaxState)+" bytes")
		return false
	}
	if !state.IsNil() && !state.IsMap() {
		c.sendError(reqID, stream, protocol.CodeBadRequest, "presence state must be a map")
		return false
	}
	return true
}

// join enters the connection into stream's presence with state.
func (c *Session) join(id *auth.Identity, reqID uint64, stream string, state protocol.Raw) bool {
	return c.joinAs(id, reqID, stream, state, "")
}

// ClaimedPrefix marks a presence user that an anonymous client claimed
// (Action Cable's join carries an id): huddle.v1 clients see it with this
// prefix, so a claimed id never passes for a verified user.
const ClaimedPrefix = "~"

// JoinClaimed is Join for a protocol whose anonymous clients name their
// presence id themselves: the member's user is ClaimedPrefix+claimed when
// the session's identity has no user, and the identity's user otherwise.
func (c *Session) JoinClaimed(m *protocol.Join, claimed string) {
	id := c.ident.Load()
	c.settleJoin(m.S, false)
	if id.User != "" || claimed == "" {
		claimed = ""
	} else {
		claimed = ClaimedPrefix + claimed
	}
	if c.joinAs(id, m.ID, m.S, m.State, claimed) {
		c.send(&protocol.Ack{ID: m.ID})
	}
}

// joinAs is join with the member's user set to user when not empty.
func (c *Session) joinAs(id *auth.Identity, reqID uint64, stream string, state protocol.Raw, user string) bool {
	if !c.streamCheck(id, reqID, stream, auth.OpPresence) || !c.checkState(reqID, stream, state) {
		return false
	}
	if state.IsNil() {
		state = nil
	}
	c.tc.Lock()
	full := !contains(c.joined, stream) && len(c.joined) >= c.node.cfg.MaxSubscriptions
	c.tc.Unlock()
	if full {
		c.sendError(reqID, stream, protocol.CodeRateLimited, "too many presence joins on one connection (limit "+strconv.Itoa(c.node.cfg.MaxSubscriptions)+")")
		return false
	}
	m := protocol.Member{User: cmp.Or(user, id.User), Client: c.clientID, State: state}
	if len(id.Info) > 0 {
		m.Info, _ = protocol.RawFromJSON(id.Info) // the info claim of the token in use
	}
	if mi, ok := c.out.(MemberInfo); ok {
		if info := mi.MemberInfo(stream); info != nil {
			m.Info = info
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := c.node.presence.Join(ctx, stream, m); err != nil {
		if errors.Is(err, presence.ErrFull) {
			c.sendError(reqID, stream, protocol.CodeForbidden, "presence of this stream is full ("+strconv.Itoa(c.node.cfg.Presence.MaxMembers)+" members)")
			return false
		}
		c.sendError(reqID, stream, protocol.CodeInternal, "join failed: "+err.Error())
		return false
	}
	c.tc.Lock()
	closed := c.tc.ClosedLocked()
	if !closed && !contains(c.joined, stream) {
		c.joined = append(c.joined, stream)
	}
	c.tc.Unlock()
	if closed {
		// destroy's leaveAll ran during the Join: undo it, or the member
		// would outlive its connection.
		lctx, lcancel := context.WithTimeout(context.Background(), requestTimeout)
		_ = c.node.presence.Leave(lctx, stream, c.clientID)
		lcancel()
		return false
	}
	return true
}

func (c *Session) Join(m *protocol.Join) {
	id := c.ident.Load()
	c.settleJoin(m.S, false)
	if c.join(id, m.ID, m.S, m.State) {
		c.send(&protocol.Ack{ID: m.ID})
	}
}

func (c *Session) Update(m *protocol.Update) {
	id := c.ident.Load()
	c.settleJoin(m.S, true)
	if !c.checkState(0, m.S, m.State) {
		return
	}
	if ok, warn := c.r().updates.Allow(time.Now().UnixNano(), &c.node.updateLimit); !ok {
		c.node.metrics.Drops[DropPresenceRate].Add(1)
		if warn {
			c.sendError(0, m.S, protocol.CodeRateLimited, "presence update rate limit: excess updates are dropped")
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	err := c.node.presence.Update(ctx, m.S, protocol.ClientInfo{User: id.User, Client: c.clientID}, m.State)
	switch {
	case errors.Is(err, presence.ErrNotMember):
		c.sendError(0, m.S, protocol.CodeBadRequest, "update before join")
	case errors.Is(err, presence.ErrTooLarge):
		c.sendError(0, m.S, protocol.CodeTooLarge, "presence state would grow over the limit of "+strconv.Itoa(c.node.cfg.Presence.MaxState)+" bytes; update refused")
	case err != nil:
		c.sendError(0, m.S, protocol.CodeInternal, "update failed: "+err.Error())
	}
}

func (c *Session) Leave(m *protocol.Leave) {
	c.settleJoin(m.S, false)
	c.leave(m.S)
	if m.ID != 0 {
		c.send(&protocol.Ack{ID: m.ID})
	}
}

// leave removes the connection from stream's presence at once.
func (c *Session) leave(stream string) {
	c.tc.Lock()
	i := indexOf(c.joined, stream)
	if i >= 0 {
		c.joined = append(c.joined[:i], c.joined[i+1:]...)
	}
	c.tc.Unlock()
	if i < 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_ = c.node.presence.Leave(ctx, stream, c.clientID)
}

func (c *Session) Who(m *protocol.WhoRequest) {
	id := c.ident.Load()
	if !auth.ValidStream(m.S) {
		c.sendError(m.ID, m.S, protocol.CodeBadRequest, "invalid stream name")
		return
	}
	if !c.allowed(id, auth.OpSub, m.S) && !c.allowed(id, auth.OpPresence, m.S) {
		c.sendError(m.ID, m.S, protocol.CodeForbidden, "who needs op sub or presence on this stream")
		return
	}
	if !c.addJob(whoJob{m: m}, true) {
		c.sendError(m.ID, m.S, protocol.CodeRateLimited, "too many history and who requests waiting for the connection to read its replies (limit "+strconv.Itoa(maxWaitingRequests)+")")
	}
}

// leaveAll removes the connection from every stream's presence: at once
// after a clean close, after the grace period when the peer vanished.
func (c *Session) leaveAll(abrupt bool) {
	c.tc.Lock()
	joined := c.joined
	c.joined = nil
	c.tc.Unlock()
	for _, stream := range joined {
		if abrupt {
			c.node.presence.LeaveAfterGrace(stream, c.clientID)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		_ = c.node.presence.Leave(ctx, stream, c.clientID)
		cancel()
	}
}

func contains(list []string, s string) bool { return indexOf(list, s) >= 0 }

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}
