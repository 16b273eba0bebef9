// Package cable is the Action Cable family's front-end at /cable: Rails'
// actioncable-v1-json and AnyCable's extended protocol (ext-json), each
// also in msgpack. It serves the channels AnyCable serves without an
// application backend ($pubsub streams, plain or signed, and Turbo
// Streams), identifies clients by JWT (?jid=), a Huddle token or, with
// --public, not at all, and maps commands onto core operations and core
// events onto Action Cable messages. Its wire encoding is package wire.
// The same channels are served as server-sent events at /events (sse.go).
//
// It must not reach into another front-end. Its per-connection state is
// the identifiers of the connection's subscriptions.
package cable

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
)

// Path is the endpoint the Action Cable family is served at.
const Path = "/cable"

// DefaultPingInterval is how often /cable pings: Rails' client counts a
// connection stale after 6 seconds without one.
const DefaultPingInterval = 3 * time.Second

// maxWrappers bounds the shared per-identifier wrappers the front-end keeps;
// past it, subscriptions get a wrapper of their own (correct, less shared).
const maxWrappers = 100_000

// Config tunes the front-end.
type Config struct {
	// PingInterval is how often connections are pinged. Default
	// DefaultPingInterval.
	PingInterval time.Duration
	// JWTSecret verifies ?jid= tokens (HS256, identifiers in "ext"). Nil:
	// jid tokens are refused.
	JWTSecret []byte
	// StreamsSecret verifies signed stream names ($pubsub
	// signed_stream_name, Turbo::StreamsChannel). Nil: signed streams are
	// rejected.
	StreamsSecret []byte
	// Sessions keeps closed connections' sessions for restore (?sid=, ext
	// dialects). Nil: sessions are not restored.
	Sessions SessionStore
	// SessionTTL is how long a session can be restored. Default
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// RPC is the application backend (AnyCable RPC): connects without a
	// jid token and the application's channels go to it. Nil: none.
	RPC rpc.Backend
	// RPCHeaders are the request headers sent with a connect. Default:
	// Cookie.
	RPCHeaders []string
	// DisconnectRate bounds the backend's disconnect calls a second (0:
	// none); DisconnectQueue bounds those waiting (default 10,000; past it
	// they are dropped and counted).
	DisconnectRate  float64
	DisconnectQueue int
	// Gate refuses an upgrade before the subprotocol is looked at (a
	// draining node, a foreign origin). Nil admits all.
	Gate func(r *transport.Request) error
	// Refused counts refused upgrades. Nil: not counted.
	Refused func()
}

// Frontend serves the Action Cable family.
type Frontend struct {
	cfg     Config
	node    *core.Node
	formats [wire.NumDialects]int

	mu       sync.Mutex // guards wrappers
	wrappers map[wrapperKey]*ident

	backend     backendStats
	disconnects *disconnecter  // nil without a backend
	backends    sync.WaitGroup // the connections' backend goroutines
}

// ident is what every subscription with one identifier in one dialect
// shares: the identifier, its frame prefix and its core.Wrapper.
type ident struct {
	key        wrapperKey
	identifier string
	prefix     wire.Prefix
	wrapper    *core.Wrapper
	refs       int // channels holding it; guarded by Frontend.mu
}

type wrapperKey struct {
	d          wire.Dialect
	ev         eventMode // server-sent events: broadcasts are wrapped as events
	identifier string
}

// New registers the four dialects' formats with node and returns the
// front-end.
func New(node *core.Node, cfg Config) *Frontend {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if len(cfg.RPCHeaders) == 0 {
		cfg.RPCHeaders = []string{"Cookie"}
	}
	for i, h := range cfg.RPCHeaders {
		cfg.RPCHeaders[i] = http.CanonicalHeaderKey(h) // as the handshake reads them
	}
	if cfg.DisconnectQueue <= 0 {
		cfg.DisconnectQueue = 10_000
	}
	f := &Frontend{cfg: cfg, node: node, wrappers: make(map[wrapperKey]*ident)}
	if cfg.RPC != nil {
		f.disconnects = &disconnecter{client: cfg.RPC, queue: make(chan disconnectCall, cfg.DisconnectQueue), rate: cfg.DisconnectRate, stats: &f.backend, log: node.Logger(), done: make(chan struct{})}
		f.disconnects.stop, f.disconnects.abandon = context.WithCancel(context.Background())
		go f.disconnects.run()
	}
	for d := wire.Dialect(0); d < wire.NumDialects; d++ {
		f.formats[d] = node.AddFormat(&core.Format{
			Name:    d.Subprotocol(),
			Textual: !d.Msgpack(),
			Encode:  func(m protocol.Message) ([]byte, error) { return encodeShared(d, m) },
		})
	}
	return f
}

// encodeShared encodes what every subscriber of a stream receives alike as
// a body list (see wire.AppendBodyList): a subscription's Wrapper puts its
// identifier before each body.
func encodeShared(d wire.Dialect, m protocol.Message) ([]byte, error) {
	switch m := m.(type) {
	case *protocol.Pub:
		return wire.AppendBodyList(nil, pubBody(d, m)), nil
	case *protocol.Whisper:
		data, err := m.Data.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return wire.AppendBodyList(nil, wire.NewWhisperBody(d, data)), nil
	case *protocol.Presence:
		// Each connection turns it into its own messages (PresenceDiff).
		return protocol.AppendMessage(protocol.Msgpack, nil, m)
	}
	return nil, nil
}

func pubBody(d wire.Dialect, m *protocol.Pub) wire.Body {
	data, err := m.Data.MarshalJSON()
	if err != nil {
		data = []byte("null")
	}
	return wire.NewBroadcastBody(d, wire.Publication{Data: data, Stream: m.S, Epoch: m.Epoch, Offset: m.Offset})
}

// memberID is the presence id Action Cable clients see: the identity's
// user, the id an anonymous client claimed (without its marker), or the
// connection of an anonymous client that claimed none.
func memberID(user, client string) string {
	if user != "" {
		return strings.TrimPrefix(user, core.ClaimedPrefix)
	}
	return client
}

// ident returns the shared state of identifier in dialect d (as events
// of mode ev on an SSE response; evNone on a WebSocket), for a channel that
// gives it back with release.
func (f *Frontend) ident(d wire.Dialect, ev eventMode, identifier string) *ident {
	k := wrapperKey{d, ev, identifier}
	f.mu.Lock()
	defer f.mu.Unlock()
	if id := f.wrappers[k]; id != nil {
		id.refs++
		return id
	}
	id := &ident{key: k, identifier: identifier, prefix: wire.NewPrefix(d, identifier), refs: 1}
	id.wrapper = core.NewWrapper(func(list []byte) [][]byte {
		var out [][]byte
		_ = wire.EachBody(d, list, func(b *wire.Body) {
			frame := wire.AppendFrame(nil, &id.prefix, b)
			if ev != evNone {
				// Once per publication for every response of this
				// identifier and mode, not once per response.
				frame = appendEvent(nil, ev, frame)
			}
			out = append(out, frame)
		})
		return out
	})
	if len(f.wrappers) < maxWrappers {
		f.wrappers[k] = id
	}
	return id
}

// release gives back what ident returned; the last channel of an
// identifier forgets it.
func (f *Frontend) release(id *ident) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id.refs--; id.refs <= 0 && f.wrappers[id.key] == id {
		delete(f.wrappers, id.key)
	}
}

// Upgrade answers the upgrade request in head and starts a session on tc.
// The identity is settled here; the welcome (or the refusal, as a
// disconnect) goes out in Started.
func (f *Frontend) Upgrade(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	var d wire.Dialect
	keep := append([]string{"Authorization", "X-Jid", "X-Anycable-Restore-Sid"}, f.cfg.RPCHeaders...)
	r, _, err := transport.Upgrade(head, w, keep, func(r *transport.Request) (string, error) {
		if f.cfg.Gate != nil {
			if err := f.cfg.Gate(r); err != nil {
				return "", err
			}
		}
		var sp string
		d, sp = wire.Negotiate(r.Offered)
		return sp, nil
	})
	if err != nil {
		if f.cfg.Refused != nil {
			f.cfg.Refused()
		}
		return nil, err
	}
	c := &conn{fe: f, d: d, start: new(startState)}
	c.Init(tc, f.node, c, f.formats[d])
	var creds savedSession
	c.start.who, c.start.err = f.identify(r, &creds)
	if creds.JID != "" || creds.Token != "" {
		c.creds = &creds
	}
	if f.cfg.RPC != nil {
		u := "http://" + r.Host + r.Path
		if len(r.Query) > 0 {
			u += "?" + r.Query.Encode()
		}
		c.rpc = &rpcConn{env: f.requestEnv(&requestInfo{url: u, header: r.Header, remoteIP: tc.RemoteIP()}), sid: uuid.NewString(), jid: creds.JID != ""}
	}
	if sid := cmpOr(r.Header.Get("X-Anycable-Restore-Sid"), r.Query.Get("sid")); sid != "" && d.Ext() && f.cfg.Sessions != nil {
		c.restoreFrom(sid)
	}
	if d.Msgpack() {
		tc.SetFraming(transport.Binary)
	} else {
		tc.SetFraming(transport.Text)
	}
	return c, nil
}

// identify settles who the client is: a JWT in ?jid= or X-JID (its
// identifiers become the user), a Huddle token in ?token= or an
// Authorization bearer header, or nobody (allowed with --public or
// --allow-anonymous).
func (f *Frontend) identify(r *transport.Request, creds *savedSession) (*auth.Identity, error) {
	creds.JID = cmpOr(r.Header.Get("X-Jid"), r.Query.Get(wire.JIDParam))
	if creds.JID == "" {
		creds.Token = r.Query.Get("token")
		if creds.Token == "" {
			creds.Token, _ = auth.BearerToken(r.Header.Get("Authorization"))
		}
	}
	return f.verify(creds)
}

// verify checks credentials: a jid token, else a Huddle token (or none).
func (f *Frontend) verify(creds *savedSession) (*auth.Identity, error) {
	if creds.JID != "" {
		ids, exp, err := wire.VerifyJID(f.cfg.JWTSecret, creds.JID, time.Now())
		if err != nil {
			return nil, err
		}
		return &auth.Identity{User: ids, Expires: exp}, nil
	}
	return f.node.Auth().Verify(creds.Token)
}

// restoreFrom takes the session sid from the store and, when its
// credentials still verify, makes it this connection's: its identity, and
// its channels, which subscribe again when the client asks for their
// history (see restoredHistory).
func (c *conn) restoreFrom(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := c.fe.cfg.Sessions.Take(ctx, sid)
	if err != nil {
		return
	}
	var s savedSession
	if json.Unmarshal(b, &s) != nil {
		return
	}
	id, err := c.fe.verify(&s)
	if err != nil {
		return
	}
	c.start.who, c.start.err = id, nil
	c.creds = nil
	if s.JID != "" || s.Token != "" {
		c.creds = &savedSession{JID: s.JID, Token: s.Token}
	}
	c.start.restored = s.Channels
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// conn is an Action Cable connection.
type conn struct {
	core.Session
	fe    *Frontend
	d     wire.Dialect
	start *startState   // from the upgrade to Started
	creds *savedSession // the credentials of the identity, for a restore; nil for none
	rpc   *rpcConn      // the backend's side; nil without one
	ev    eventMode     // a response of server-sent events (/events); evNone on a WebSocket
	sse   *sseState     // an SSE response's state; nil on a WebSocket

	mu    sync.Mutex // guards chans: replies are encoded on the reader and the writer
	chans []*channel // few per connection: a slice beats maps
}

// startState is what the upgrade settled, for Started.
type startState struct {
	who      *auth.Identity // nil when refused
	err      error
	restored []savedChannel // a restored session's channels
}

// channel is one subscription as the client knows it.
type channel struct {
	*ident
	stream    string
	signed    bool
	history   bool // the subscribe asked for history (ext): confirm_history or reject_history follows
	confirmed bool
	restored  bool        // restored with its session: subscribes when the client asks for its history
	silent    bool        // subscribed again after a restore: the client hears no confirm_subscription
	rpc       *rpcChannel // an application channel's state; nil for $pubsub and Turbo
	// members counts the stream's presence members by id (connections
	// per id), from the subscribe's snapshot and the diffs since: a join
	// is told when an id arrives, a leave when its last connection goes.
	members map[string]int
}

var (
	_ transport.Session   = (*conn)(nil)
	_ transport.Starter   = (*conn)(nil)
	_ core.Liveness       = (*conn)(nil)
	_ core.Granter        = (*conn)(nil)
	_ core.PresenceFilter = (*conn)(nil)
)

// Started implements transport.Starter: the welcome, or the disconnect of
// a refused identity.
func (c *conn) Started() {
	st := c.start
	c.start = nil
	if c.rpc != nil && !c.rpc.jid && st.restored == nil {
		c.enqueue(c.rpcConnect) // the application decides
		return
	}
	if st.who == nil {
		reason, reconnect := wire.ReasonUnauthorized, false
		if errors.Is(st.err, wire.ErrTokenExpired) || errors.Is(st.err, auth.ErrExpired) {
			reason = wire.ReasonTokenExpired
		}
		c.Conn().Close(uint16(protocol.CodeUnauthorized), reason, wire.AppendDisconnect(nil, c.d, reason, reconnect), reconnect)
		return
	}
	if c.rpc != nil {
		// A jid names the connection's identifiers itself: the
		// application's connect is skipped, its channels are not.
		c.rpc.mu.Lock()
		if c.rpc.jid {
			c.rpc.identifiers = st.who.User
		}
		c.rpc.mu.Unlock()
		c.ConnectAs(st.who, c.rpc.sid)
	} else {
		c.Connect(st.who)
	}
	w := wire.Welcome{SID: c.ClientID()}
	if st.restored != nil {
		w.Restored = true
		c.mu.Lock()
		for _, sc := range st.restored {
			if c.byIDLocked(sc.Identifier) != nil || c.byStreamLocked(sc.Stream) != nil {
				continue
			}
			ch := &channel{ident: c.fe.ident(c.d, c.ev, sc.Identifier), stream: sc.Stream, signed: sc.Signed, restored: true}
			c.addLocked(ch)
			w.RestoredIDs = append(w.RestoredIDs, sc.Identifier)
		}
		c.mu.Unlock()
	}
	c.Conn().Send(wire.AppendWelcome(nil, c.d, w))
	c.sseSubscribe()
}

// addLocked records a channel. c.mu must be held.
func (c *conn) addLocked(ch *channel) { c.chans = append(c.chans, ch) }

// removeLocked forgets a channel. c.mu must be held.
func (c *conn) removeLocked(ch *channel) {
	for i, x := range c.chans {
		if x == ch {
			c.chans = append(c.chans[:i], c.chans[i+1:]...)
			c.fe.release(ch.ident)
			return
		}
	}
}

// byIDLocked returns the channel of identifier (not one that is leaving).
// c.mu must be held.
func (c *conn) byIDLocked(identifier string) *channel {
	for _, ch := range c.chans {
		if ch.identifier == identifier && (ch.rpc == nil || !ch.rpc.leaving) {
			return ch
		}
	}
	return nil
}

// byStreamLocked returns the channel of stream. c.mu must be held.
func (c *conn) byStreamLocked(stream string) *channel {
	for _, ch := range c.chans {
		if ch.stream == stream && stream != "" || ch.rpc != nil && slices.Contains(ch.rpc.streams, stream) {
			return ch
		}
	}
	return nil
}

// wrapperLocked returns the Wrapper that delivers stream's publications to
// every channel of the connection following it: the channel's own when
// one does, one naming each in turn when several do. c.mu must be held.
func (c *conn) wrapperLocked(stream string) *core.Wrapper {
	var ws []*core.Wrapper
	for _, ch := range c.chans {
		if ch.stream == stream && stream != "" || ch.rpc != nil && slices.Contains(ch.rpc.streams, stream) {
			ws = append(ws, ch.wrapper)
		}
	}
	switch len(ws) {
	case 0:
		return nil
	case 1:
		return ws[0]
	}
	return core.NewWrapper(func(frame []byte) [][]byte {
		var out [][]byte
		for _, w := range ws {
			out = append(out, w.Apply(frame)...)
		}
		return out
	})
}

// Closed implements transport.Session: the core lets go of the
// connection, and an ext session is kept for a restore, unless the client
// closed it (it will not come back for it) or it has no channels (nothing
// to restore, which also keeps connection churn out of the store).
func (c *conn) Closed(clean bool) {
	c.Session.Closed(clean)
	if c.rpc != nil {
		c.rpcClosed()
	}
	store := c.fe.cfg.Sessions
	if store == nil || clean || !c.d.Ext() || c.Ident() == nil || c.rpc != nil && !c.rpc.jid || c.ev != evNone {
		// The channels are released all the same. A connection the
		// application accepted is not kept: its identifiers and state are
		// the application's, so a reconnect asks it again.
		store = nil
	}
	var s savedSession
	if c.creds != nil {
		s = *c.creds
	}
	c.mu.Lock()
	for _, ch := range c.chans {
		if ch.rpc == nil { // an application channel would need the application again
			s.Channels = append(s.Channels, savedChannel{Identifier: ch.identifier, Stream: ch.stream, Signed: ch.signed})
		}
		c.fe.release(ch.ident)
	}
	c.chans = nil
	c.mu.Unlock()
	if store == nil || len(s.Channels) == 0 {
		return
	}
	b := s.marshal()
	if len(b) > maxSessionBytes {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = store.Save(ctx, c.ClientID(), b, c.fe.cfg.SessionTTL)
}

// Check implements transport.Session: token expiry and pings. Rails'
// clients never answer pings, so silence ends nothing here; a dead peer is
// found by the writes failing.
func (c *conn) Check(now time.Time) {
	id := c.Ident()
	if id == nil {
		return
	}
	if !id.Expires.IsZero() && now.After(id.Expires) {
		c.CloseWith(protocol.CodeTokenExpired, "token expired", false)
		return
	}
	if c.PingDue(now, c.fe.cfg.PingInterval) {
		c.Conn().Send(wire.AppendPing(nil, c.d, now.Unix()))
	}
}

// Grants implements core.Granter: a verified signed stream name grants
// subscribing, whispers, presence and history on its stream.
func (c *conn) Grants(op auth.Op, stream string) bool {
	switch op {
	case auth.OpSub, auth.OpWhisper, auth.OpPresence, auth.OpHistory:
	default:
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.byStreamLocked(stream)
	return ch != nil && (ch.signed || ch.rpc != nil && (op == auth.OpSub || op == auth.OpHistory))
}

// PresenceDiff implements core.PresenceFilter: the diff's joins and leaves
// as Action Cable presence messages, one join per id however many
// connections join with it, one leave when the last of them goes.
func (c *conn) PresenceDiff(stream string, frame []byte) [][]byte {
	var arr [1]protocol.Decoded
	msgs, err := protocol.DecodeServer(protocol.Msgpack, frame, arr[:0])
	if err != nil || len(msgs) != 1 || msgs[0].Err != nil {
		return nil
	}
	diff, ok := msgs[0].Msg.(*protocol.Presence)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.byStreamLocked(stream)
	if ch == nil {
		return nil
	}
	if ch.members == nil {
		ch.members = make(map[string]int)
	}
	var out [][]byte
	emit := func(ev wire.PresenceEvent) {
		if b := wire.NewPresenceBody(c.d, ev); !b.IsZero() {
			out = append(out, wire.AppendFrame(nil, &ch.prefix, &b))
		}
	}
	for _, j := range diff.Joins {
		id := memberID(j.User, j.Client)
		if ch.members[id]++; ch.members[id] > 1 {
			continue
		}
		var info []byte
		if !j.State.IsNil() {
			info, _ = j.State.MarshalJSON()
		}
		emit(wire.PresenceEvent{Type: wire.PresenceJoin, ID: id, Info: info})
	}
	for _, l := range diff.Leaves {
		id := memberID(l.User, l.Client)
		if n, known := ch.members[id]; known && n > 1 {
			ch.members[id] = n - 1
			continue
		}
		delete(ch.members, id)
		emit(wire.PresenceEvent{Type: wire.PresenceLeave, ID: id})
	}
	return out
}

// Live implements core.Liveness: a subscribe that asked for history hears
// whether it was served once its missed publications are out.
func (c *conn) Live(stream string, recovered *bool) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.byStreamLocked(stream)
	if ch == nil || !ch.history {
		return nil
	}
	lost := recovered != nil && !*recovered
	if r := ch.rpc; r != nil {
		// An application channel answers once, for all its streams.
		if r.replaying == 0 {
			return nil
		}
		r.lost = r.lost || lost
		if r.replaying--; r.replaying > 0 {
			return nil
		}
		lost = r.lost
	}
	t := wire.ConfirmHistory
	if lost {
		t = wire.RejectHistory
	}
	return wire.AppendReply(nil, c.d, t, ch.identifier)
}

// Encode implements core.Output: the core's replies as Action Cable
// messages. What Action Cable has no message for is not sent.
func (c *conn) Encode(m protocol.Message) ([]byte, error) {
	switch m := m.(type) {
	case *protocol.Subscribed:
		ch := c.channelOf(m.S)
		if ch == nil {
			return nil, nil
		}
		c.mu.Lock()
		ch.confirmed = true
		silent := ch.silent || ch.rpc != nil // the application confirmed it
		if len(m.Members) > 0 {
			ch.members = make(map[string]int, len(m.Members))
			for _, mb := range m.Members {
				ch.members[memberID(mb.User, mb.Client)]++
			}
		}
		c.mu.Unlock()
		if silent {
			return nil, nil
		}
		return wire.AppendReply(nil, c.d, wire.ConfirmSubscription, ch.identifier), nil
	case *protocol.Pub:
		ch := c.channelOf(m.S)
		if ch == nil {
			return nil, nil
		}
		b := pubBody(c.d, m)
		return wire.AppendFrame(nil, &ch.prefix, &b), nil
	case *protocol.ErrorReply:
		return c.encodeError(m), nil
	case *protocol.Who:
		ch := c.channelOf(m.S)
		if ch == nil {
			return nil, nil
		}
		records := make([]wire.PresenceRecord, 0, len(m.Members))
		seen := make(map[string]bool, len(m.Members))
		for _, mb := range m.Members {
			id := memberID(mb.User, mb.Client)
			if seen[id] {
				continue // one record per id, however many connections
			}
			seen[id] = true
			var info []byte
			if !mb.State.IsNil() {
				info, _ = mb.State.MarshalJSON()
			}
			records = append(records, wire.PresenceRecord{ID: id, Info: info})
		}
		return wire.AppendPresenceInfo(nil, c.d, ch.identifier, len(records), records), nil
	case *protocol.Disconnect:
		return wire.AppendDisconnect(nil, c.d, reasonOf(m.Code), m.Reconnect && m.Code != protocol.CodeTokenExpired), nil
	}
	return nil, nil
}

// encodeError maps an error reply: a failed subscribe is rejected (and
// forgotten), a failed presence request answered with a presence error;
// Action Cable has no message for the rest.
func (c *conn) encodeError(m *protocol.ErrorReply) []byte {
	if m.S == "" {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.byStreamLocked(m.S)
	if ch == nil {
		return nil
	}
	if r := ch.rpc; r != nil {
		// An application channel's stream that could not be followed: the
		// channel stays (the application confirmed it), but a history it
		// asked for is not served for that stream.
		if m.ID != subscribeID || r.replaying == 0 {
			return nil
		}
		r.lost = true
		if r.replaying--; r.replaying > 0 {
			return nil
		}
		return wire.AppendReply(nil, c.d, wire.RejectHistory, ch.identifier)
	}
	if !ch.confirmed && m.ID == subscribeID {
		c.removeLocked(ch)
		return wire.AppendReply(nil, c.d, wire.RejectSubscription, ch.identifier)
	}
	if m.ID == presenceID {
		return wire.AppendPresenceError(nil, c.d, ch.identifier)
	}
	return nil
}

func (c *conn) channelOf(stream string) *channel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byStreamLocked(stream)
}

// reasonOf names a disconnect code as Action Cable clients know it.
func reasonOf(code protocol.Code) string {
	switch code {
	case protocol.CodeUnauthorized, protocol.CodeForbidden:
		return wire.ReasonUnauthorized
	case protocol.CodeTokenExpired:
		return wire.ReasonTokenExpired
	case protocol.CodeNormal:
		return wire.ReasonRemote
	case protocol.CodeNoPong:
		return wire.ReasonNoPong
	}
	return wire.ReasonServerRestart
}

// Request ids the front-end gives core requests, so that an error reply
// says which command failed.
const (
	subscribeID = 1
	presenceID  = 2
)
