package huddlev1

import (
	"errors"
	"strconv"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/hooks"
	"github.com/huddle-rt/huddle/protocol"
)

// OnMessage implements transport.Session: it decodes one WebSocket
// message and runs every protocol message in it, in order.
func (c *conn) OnMessage(payload []byte) {
	var arr [4]protocol.Decoded
	codec := c.out().codec
	msgs, err := protocol.DecodeClient(codec, payload, arr[:0])
	if err != nil {
		if c.Ident() == nil {
			c.CloseWith(protocol.CodeUnauthorized, "the first message must be connect", false)
			return
		}
		c.CloseWith(protocol.CodeBadRequest, err.Error(), false)
		return
	}
	metrics := c.Node().Metrics()
	now := time.Now().UnixNano()
	for _, d := range msgs {
		if !c.Conn().Accepting() {
			return
		}
		if ok, warn, flood := c.Admit(now); !ok {
			if flood {
				c.CloseWith(protocol.CodeRateLimited, "message flood", true)
				return
			}
			if warn {
				rate, _ := c.Node().MessageRate()
				c.SendError(0, "", protocol.CodeRateLimited, "over "+strconv.Itoa(int(rate))+" messages a second: excess messages are dropped")
			}
			continue
		}
		if d.Err != nil {
			metrics.CountIn("invalid")
			if c.Ident() == nil {
				c.CloseWith(protocol.CodeUnauthorized, "the first message must be a valid connect: "+d.Err.Reason, false)
				return
			}
			c.SendError(d.Err.ID, "", protocol.CodeBadRequest, d.Err.Error())
			continue
		}
		metrics.CountIn(d.Msg.Type())
		c.dispatch(d.Msg)
	}
}

func (c *conn) dispatch(m protocol.Message) {
	if h := c.hooks(); h != nil && h.route(m) {
		return
	}
	c.handle(m)
}

// handle runs one message: on the worker, or on the hook queue's
// goroutine for one that waited there.
func (c *conn) handle(m protocol.Message) {
	if c.Ident() == nil {
		if cm, ok := m.(*protocol.Connect); ok {
			c.onConnect(cm)
			return
		}
		c.CloseWith(protocol.CodeUnauthorized, "the first message must be connect", false)
		return
	}
	switch m := m.(type) {
	case *protocol.Connect:
		c.SendError(m.ID, "", protocol.CodeBadRequest, "already connected")
	case *protocol.Subscribe:
		c.Subscribe(m)
	case *protocol.Unsubscribe:
		c.Unsubscribe(m)
		if h := c.hooks(); h != nil {
			h.forget(m.S)
		}
	case *protocol.Publish:
		c.Publish(m)
	case *protocol.Compact:
		if h := c.hooks(); h != nil && h.routed(auth.OpPub, m.S) {
			// A snapshot would replace what the hook vetted with what
			// it never saw.
			c.SendError(m.ID, m.S, protocol.CodeForbidden, "compact is not available on a stream whose publishes go to the publish hook")
			return
		}
		c.Compact(m)
	case *protocol.HistoryRequest:
		c.History(m)
	case *protocol.Refresh:
		c.Refresh(m)
	case *protocol.Ping:
		c.Send(&protocol.Pong{})
	case *protocol.Pong:
	case *protocol.SendWhisper:
		c.Whisper(m)
	case *protocol.Join:
		c.Join(m)
	case *protocol.Update:
		c.Update(m)
	case *protocol.Leave:
		c.Leave(m)
	case *protocol.WhoRequest:
		c.Who(m)
	case *protocol.Unknown:
		c.SendError(m.ID, "", protocol.CodeBadRequest, "unknown message type "+quote(m.T))
	}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return `"` + s + `"`
}

func (c *conn) onConnect(m *protocol.Connect) {
	if m.Ping > 0 {
		// The client's own ping interval, within bounds (connected.ping
		// says what it got).
		c.SetPingInterval(time.Duration(min(max(m.Ping, protocol.MinPing), protocol.MaxPing)) * time.Second)
	}
	token := m.Token
	if token == "" {
		token = c.UpgradeToken()
	}
	id, err := c.Node().Auth().Verify(token)
	if h := c.hooks(); h != nil && h.client().Has(hooks.Connect) && (token == "" || err != nil && !errors.Is(err, auth.ErrExpired)) {
		// Not a token of ours: the application decides (an expired one
		// of ours still gets 4002 below).
		c.connectHook(h, m, token)
		return
	}
	if err != nil {
		if errors.Is(err, auth.ErrExpired) {
			c.CloseWith(protocol.CodeTokenExpired, "token expired", true)
			return
		}
		c.CloseWith(protocol.CodeUnauthorized, err.Error(), false)
		return
	}
	c.Connect(id)
	c.connected(m.ID, id)
}

// connected answers a connect that succeeded.
func (c *conn) connected(reqID uint64, id *auth.Identity) {
	reply := &protocol.Connected{
		ID:     reqID,
		Client: c.ClientID(),
		User:   id.User,
		Ping:   int(c.PingInterval() / time.Second),
		Node:   c.out().fe.cfg.Node,
	}
	if !id.Expires.IsZero() {
		reply.Exp = id.Expires.Unix()
	}
	c.Send(reply)
}
