package cable

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/protocol"
)

// OnMessage implements transport.Session: one command per message.
func (c *conn) OnMessage(payload []byte) {
	if c.Ident() == nil {
		return // refused at the upgrade; the disconnect is on its way
	}
	metrics := c.Node().Metrics()
	if ok, _, flood := c.Admit(time.Now().UnixNano()); !ok {
		if flood {
			c.CloseWith(protocol.CodeRateLimited, "message flood", false)
		}
		return
	}
	cmd, err := wire.DecodeCommand(c.d, payload)
	if err != nil {
		metrics.CountIn("invalid")
		if de, ok := err.(*wire.DecodeError); ok && de.Kind == wire.CmdSubscribe && de.Identifier != "" {
			c.Conn().Send(wire.AppendReply(nil, c.d, wire.RejectSubscription, de.Identifier))
		}
		return // Action Cable servers ignore what they cannot read
	}
	metrics.CountIn(cmd.Kind.String())
	if log := c.Node().Logger(); log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("cable command", "client", c.ClientID(), "command", cmd.Kind.String(), "identifier", cmd.Identifier, "history", cmd.History)
	}
	switch cmd.Kind {
	case wire.CmdSubscribe:
		c.subscribe(&cmd)
	case wire.CmdUnsubscribe:
		c.unsubscribe(&cmd)
	case wire.CmdWhisper:
		c.whisper(&cmd)
	case wire.CmdJoin:
		if ch := c.channel(cmd.Identifier); ch != nil {
			var state protocol.Raw
			claimed := ""
			if cmd.Presence != nil {
				claimed = cmd.Presence.ID
				if len(cmd.Presence.Info) > 0 {
					state, _ = protocol.RawFromJSON(cmd.Presence.Info)
				}
			}
			c.JoinClaimed(&protocol.Join{ID: presenceID, S: ch.stream, State: state}, claimed)
		}
	case wire.CmdLeave:
		if ch := c.channel(cmd.Identifier); ch != nil {
			c.Leave(&protocol.Leave{S: ch.stream})
		}
	case wire.CmdPresence:
		if ch := c.channel(cmd.Identifier); ch != nil {
			c.Who(&protocol.WhoRequest{ID: presenceID, S: ch.stream})
		}
	case wire.CmdHistory:
		c.history(&cmd)
	case wire.CmdMessage:
		c.perform(&cmd)
	case wire.CmdPong, wire.CmdUnknown:
		// Pongs need no answer.
	}
}

// channel returns the confirmed or pending subscription of identifier.
func (c *conn) channel(identifier string) *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byIDLocked(identifier)
}

// subscribe resolves the identifier to a stream (public, signed or Turbo)
// and subscribes; everything else is rejected, as is a stream the identity
// may not read.
func (c *conn) subscribe(cmd *wire.Command) {
	reject := func() { c.Conn().Send(wire.AppendReply(nil, c.d, wire.RejectSubscription, cmd.Identifier)) }
	id, err := wire.ParseIdentifier(cmd.Identifier)
	if err != nil {
		reject()
		return
	}
	var stream string
	signed := false
	switch {
	case id.Channel == wire.PubSubChannel && id.StreamName != "" && id.SignedStreamName == "":
		stream = id.StreamName
	case (id.Channel == wire.PubSubChannel || id.Channel == wire.TurboChannel) && id.SignedStreamName != "":
		s, err := wire.VerifyStream(c.fe.cfg.StreamsSecret, id.SignedStreamName)
		if err != nil {
			reject()
			return
		}
		stream, signed = s, true
	default:
		c.subscribeApp(cmd, reject)
		return
	}
	if !auth.ValidStream(stream) {
		reject()
		return
	}
	ch := &channel{ident: c.fe.ident(c.d, c.ev, cmd.Identifier), stream: stream}
	m := &protocol.Subscribe{ID: subscribeID, S: stream}
	var since int64 // unix ms
	if c.d.Ext() {
		if cmd.History != nil {
			ch.history = true
			if pos, ok := cmd.History.Streams[stream]; ok {
				m.Recover = &protocol.Position{Epoch: pos.Epoch, Offset: pos.Offset}
			} else if cmd.History.Since > 0 {
				since = cmd.History.Since * 1000
			}
		}
		m.Presence = c.Node().Auth().StreamOptions(stream).Presence
	}
	ch.signed = signed
	c.mu.Lock()
	if dup := c.byIDLocked(cmd.Identifier) != nil; dup || c.byStreamLocked(stream) != nil {
		c.mu.Unlock()
		c.fe.release(ch.ident)
		if !dup {
			reject() // the same stream under another identifier
		}
		return
	}
	c.addLocked(ch)
	c.mu.Unlock()
	c.SubscribeSince(m, ch.wrapper, since)
}

// history answers a history command. A channel restored with its session
// subscribes now, recovering from the position the client gives (or since
// its time): the missed publications, then confirm_history, then live ones,
// with no confirm_subscription (the client never stopped being
// subscribed). Any other channel was served on its subscribe.
func (c *conn) history(cmd *wire.Command) {
	c.mu.Lock()
	ch := c.byIDLocked(cmd.Identifier)
	restored := ch != nil && ch.restored && cmd.History != nil
	if restored {
		ch.restored, ch.silent, ch.history = false, true, true
	}
	c.mu.Unlock()
	if !restored {
		c.Conn().Send(wire.AppendReply(nil, c.d, wire.RejectHistory, cmd.Identifier))
		return
	}
	m := &protocol.Subscribe{ID: subscribeID, S: ch.stream, Presence: c.Node().Auth().StreamOptions(ch.stream).Presence}
	var since int64
	if pos, ok := cmd.History.Streams[ch.stream]; ok {
		m.Recover = &protocol.Position{Epoch: pos.Epoch, Offset: pos.Offset}
	} else if cmd.History.Since > 0 {
		since = cmd.History.Since * 1000
	}
	c.SubscribeSince(m, ch.wrapper, since)
}

func (c *conn) unsubscribe(cmd *wire.Command) {
	c.mu.Lock()
	ch := c.byIDLocked(cmd.Identifier)
	if ch != nil && ch.rpc != nil {
		ch.rpc.leaving = true
		c.mu.Unlock()
		if !c.enqueue(func() { c.rpcCommand(ch, "unsubscribe", "") }) {
			// Too many wait (or the connection is closing): the client
			// leaves the channel without the application's answer.
			c.apply(ch, "unsubscribe", &rpc.CommandResponse{Status: rpc.Success})
		}
		return
	}
	var rest *core.Wrapper // what the application's channels following the stream too still get
	if ch != nil {
		c.removeLocked(ch)
		rest = c.wrapperLocked(ch.stream)
	}
	c.mu.Unlock()
	switch {
	case ch == nil:
	case rest != nil:
		c.Rewrap(ch.stream, rest)
	default:
		c.Unsubscribe(&protocol.Unsubscribe{S: ch.stream})
	}
}

// whisper relays the command's data to the stream's other subscribers. The
// event name, for huddle.v1 receivers, is the data's "event" field when it
// has one.
func (c *conn) whisper(cmd *wire.Command) {
	ch := c.channel(cmd.Identifier)
	if ch == nil || len(cmd.Data) == 0 {
		return
	}
	data, err := protocol.RawFromJSON(cmd.Data)
	if err != nil {
		return
	}
	ev := "whisper"
	var probe struct {
		Event string `json:"event"`
	}
	if json.Unmarshal(cmd.Data, &probe) == nil && probe.Event != "" && len(probe.Event) <= protocol.MaxEventName {
		ev = probe.Event
	}
	c.Whisper(&protocol.SendWhisper{S: ch.stream, Ev: ev, Data: data})
}

// subscribeApp subscribes to a channel of the application, through the
// backend; without one, it is rejected.
func (c *conn) subscribeApp(cmd *wire.Command, reject func()) {
	if c.rpc == nil {
		reject()
		return
	}
	ch := &channel{ident: c.fe.ident(c.d, c.ev, cmd.Identifier), rpc: &rpcChannel{}}
	if cmd.History != nil && c.d.Ext() {
		// Its streams are the application's answer: their missed
		// publications are replayed once it names them.
		ch.history, ch.rpc.history = true, cmd.History
	}
	c.mu.Lock()
	if c.byIDLocked(cmd.Identifier) != nil {
		c.mu.Unlock()
		c.fe.release(ch.ident)
		return // subscribed already
	}
	c.addLocked(ch)
	c.mu.Unlock()
	if !c.enqueue(func() { c.rpcCommand(ch, "subscribe", "") }) {
		c.forget(ch)
		reject()
	}
}

// perform runs a channel action (message) in the application; $pubsub and
// Turbo streams have none.
func (c *conn) perform(cmd *wire.Command) {
	ch := c.channel(cmd.Identifier)
	if ch == nil || ch.rpc == nil {
		return
	}
	data, ok := cmd.DataString()
	if !ok {
		data = string(cmd.Data)
	}
	c.enqueue(func() { c.rpcCommand(ch, "message", data) })
}
