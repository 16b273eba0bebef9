package protocol

// Message is any protocol message. Type returns its "t" value; the codecs
// write and read "t" themselves, so the structs below hold only the other
// fields.
type Message interface {
	Type() string
}

// Position is a point in a stream's history: the last offset seen within an
// epoch.
type Position struct {
	Epoch  string `msgpack:"epoch" json:"epoch"`
	Offset uint64 `msgpack:"offset" json:"offset"`
}

// ClientInfo identifies a connection: the token's user and the server-assigned
// connection id.
type ClientInfo struct {
	User   string `msgpack:"user" json:"user"`
	Client string `msgpack:"client" json:"client"`
}

// Member is one connection present in a stream.
type Member struct {
	User   string `msgpack:"user" json:"user"`
	Client string `msgpack:"client" json:"client"`
	Info   Raw    `msgpack:"info,omitempty" json:"info,omitempty"`
	State  Raw    `msgpack:"state,omitempty" json:"state,omitempty"`
}

// MemberUpdate is a member's state patch inside a presence diff: changed keys
// only, a nil value deletes the key.
type MemberUpdate struct {
	User   string `msgpack:"user" json:"user"`
	Client string `msgpack:"client" json:"client"`
	State  Raw    `msgpack:"state" json:"state"`
}

// ---- client -> server ----

// Connect is the first message of every connection.
type Connect struct {
	ID    uint64 `msgpack:"id" json:"id"`
	Token string `msgpack:"token,omitempty" json:"token,omitempty"`
	UA    string `msgpack:"ua,omitempty" json:"ua,omitempty"`
	// Ping asks for a ping interval, in seconds, for this connection (a
	// tracker saving battery asks for a long one); the server grants it
	// within [MinPing, MaxPing] and says so in connected.ping. 0: the
	// server's.
	Ping uint32 `msgpack:"ping,omitempty" json:"ping,omitempty"`
}

// The bounds of a ping interval a client may ask for in connect.ping, in
// seconds.
const (
	MinPing = 5
	MaxPing = 300
)

// Subscribe asks for a stream's publications, optionally recovering missed
// ones, receiving presence, and joining presence at once.
type Subscribe struct {
	ID       uint64    `msgpack:"id" json:"id"`
	S        string    `msgpack:"s" json:"s"`
	Recover  *Position `msgpack:"recover,omitempty" json:"recover,omitempty"`
	Presence bool      `msgpack:"presence,omitempty" json:"presence,omitempty"`
	Join     Raw       `msgpack:"join,omitempty" json:"join,omitempty"`
}

// Unsubscribe leaves a stream; the reply comes only when ID is set.
type Unsubscribe struct {
	ID uint64 `msgpack:"id,omitempty" json:"id,omitempty"`
	S  string `msgpack:"s" json:"s"`
}

// Publish appends data to a stream's history and delivers it to subscribers.
type Publish struct {
	ID   uint64 `msgpack:"id" json:"id"`
	S    string `msgpack:"s" json:"s"`
	Data Raw    `msgpack:"data" json:"data"`
}

// Compact stores Data as the snapshot of a document stream: the state of
// the document through Offset in Epoch, which replaces the publications up
// to it for every later reader. It needs the pub op.
type Compact struct {
	ID     uint64 `msgpack:"id" json:"id"`
	S      string `msgpack:"s" json:"s"`
	Epoch  string `msgpack:"epoch" json:"epoch"`
	Offset uint64 `msgpack:"offset" json:"offset"`
	Data   Raw    `msgpack:"data" json:"data"`
}

// SendWhisper relays an ephemeral event to the stream's other subscribers.
type SendWhisper struct {
	S    string `msgpack:"s" json:"s"`
	Ev   string `msgpack:"ev" json:"ev"`
	Data Raw    `msgpack:"data" json:"data"`
}

// Join enters the stream's presence with State, or replaces the own state.
type Join struct {
	ID    uint64 `msgpack:"id" json:"id"`
	S     string `msgpack:"s" json:"s"`
	State Raw    `msgpack:"state,omitempty" json:"state,omitempty"`
}

// Update patches the own presence state: a shallow merge where nil deletes.
type Update struct {
	S     string `msgpack:"s" json:"s"`
	State Raw    `msgpack:"state" json:"state"`
}

// Leave removes the own presence from the stream.
type Leave struct {
	ID uint64 `msgpack:"id,omitempty" json:"id,omitempty"`
	S  string `msgpack:"s" json:"s"`
}

// HistoryRequest reads stored publications of a stream.
type HistoryRequest struct {
	ID      uint64    `msgpack:"id" json:"id"`
	S       string    `msgpack:"s" json:"s"`
	Since   *Position `msgpack:"since,omitempty" json:"since,omitempty"`
	Limit   int       `msgpack:"limit,omitempty" json:"limit,omitempty"`
	Reverse bool      `msgpack:"reverse,omitempty" json:"reverse,omitempty"`
}

// WhoRequest asks for a stream's presence snapshot.
type WhoRequest struct {
	ID uint64 `msgpack:"id" json:"id"`
	S  string `msgpack:"s" json:"s"`
}

// Refresh replaces the connection's token before it expires.
type Refresh struct {
	ID    uint64 `msgpack:"id" json:"id"`
	Token string `msgpack:"token" json:"token"`
}

// Ping asks the peer for a Pong; both sides send it.
type Ping struct{}

// Pong answers a Ping.
type Pong struct{}

// ---- server -> client ----

// Connected accepts a Connect.
type Connected struct {
	ID     uint64 `msgpack:"id" json:"id"`
	Client string `msgpack:"client" json:"client"`
	User   string `msgpack:"user" json:"user"`
	Ping   int    `msgpack:"ping" json:"ping"`
	Exp    int64  `msgpack:"exp,omitempty" json:"exp,omitempty"`
	Node   string `msgpack:"node,omitempty" json:"node,omitempty"`
}

// Subscribed accepts a Subscribe. Recovered is set whenever the Subscribe
// carried Recover. Doc says the stream is a document: unless Recovered is
// true, the whole document follows (in Pubs, then as pub messages) up to
// Offset, starting with its snapshot if it has one.
type Subscribed struct {
	ID        uint64    `msgpack:"id" json:"id"`
	S         string    `msgpack:"s" json:"s"`
	Epoch     string    `msgpack:"epoch" json:"epoch"`
	Offset    uint64    `msgpack:"offset" json:"offset"`
	Recovered *bool     `msgpack:"recovered,omitempty" json:"recovered,omitempty"`
	Doc       bool      `msgpack:"doc,omitempty" json:"doc,omitempty"`
	Pubs      []Pub     `msgpack:"pubs,omitempty" json:"pubs,omitempty"`
	Members   []Member  `msgpack:"members,omitempty" json:"members,omitempty"`
	LV        []Whisper `msgpack:"lv,omitempty" json:"lv,omitempty"`
}

// Unsubscribed confirms an Unsubscribe that carried an ID, or tells the
// client that the server ended a subscription or presence join (ID 0, with
// Code and Reason), e.g. after a refresh whose token no longer grants it.
type Unsubscribed struct {
	ID     uint64 `msgpack:"id,omitempty" json:"id,omitempty"`
	S      string `msgpack:"s" json:"s"`
	Code   Code   `msgpack:"code,omitempty" json:"code,omitempty"`
	Reason string `msgpack:"reason,omitempty" json:"reason,omitempty"`
}

// Pub is one publication of a stream. From is nil for server-side publishes.
// Snap, when set (always to true), marks a document's snapshot: Data is the
// state of the document through Offset, replacing every publication up to
// it. A pointer, so that encoding the ordinary pub does not allocate to
// find the flag empty.
type Pub struct {
	S      string      `msgpack:"s" json:"s"`
	Offset uint64      `msgpack:"offset" json:"offset"`
	Epoch  string      `msgpack:"epoch" json:"epoch"`
	Data   Raw         `msgpack:"data" json:"data"`
	From   *ClientInfo `msgpack:"from,omitempty" json:"from,omitempty"`
	TS     int64       `msgpack:"ts" json:"ts"`
	Snap   *bool       `msgpack:"snap,omitempty" json:"snap,omitempty"`
}

// Whisper is an ephemeral event from another subscriber.
type Whisper struct {
	S    string     `msgpack:"s" json:"s"`
	Ev   string     `msgpack:"ev" json:"ev"`
	Data Raw        `msgpack:"data" json:"data"`
	From ClientInfo `msgpack:"from" json:"from"`
}

// Presence is a diff of a stream's members within one tick.
type Presence struct {
	S       string         `msgpack:"s" json:"s"`
	Joins   []Member       `msgpack:"joins,omitempty" json:"joins,omitempty"`
	Leaves  []ClientInfo   `msgpack:"leaves,omitempty" json:"leaves,omitempty"`
	Updates []MemberUpdate `msgpack:"updates,omitempty" json:"updates,omitempty"`
}

// History answers a HistoryRequest.
type History struct {
	ID     uint64 `msgpack:"id" json:"id"`
	S      string `msgpack:"s" json:"s"`
	Epoch  string `msgpack:"epoch" json:"epoch"`
	Offset uint64 `msgpack:"offset" json:"offset"`
	Pubs   []Pub  `msgpack:"pubs" json:"pubs"`
	More   bool   `msgpack:"more,omitempty" json:"more,omitempty"`
}

// Who answers a WhoRequest.
type Who struct {
	ID      uint64   `msgpack:"id" json:"id"`
	S       string   `msgpack:"s" json:"s"`
	Members []Member `msgpack:"members" json:"members"`
}

// Ack confirms a Publish (with S, Offset, Epoch), a Compact (Offset is the
// document's snapshot offset afterwards), a Join or a Leave (ID only).
// Compact on a Publish's ack asks the publisher for a snapshot of the
// document (see Compact).
type Ack struct {
	ID      uint64 `msgpack:"id" json:"id"`
	S       string `msgpack:"s,omitempty" json:"s,omitempty"`
	Offset  uint64 `msgpack:"offset,omitempty" json:"offset,omitempty"`
	Epoch   string `msgpack:"epoch,omitempty" json:"epoch,omitempty"`
	Compact bool   `msgpack:"compact,omitempty" json:"compact,omitempty"`
}

// Refreshed confirms a Refresh with the new expiry (unix seconds).
type Refreshed struct {
	ID  uint64 `msgpack:"id" json:"id"`
	Exp int64  `msgpack:"exp,omitempty" json:"exp,omitempty"`
}

// ErrorReply reports a failed request; the connection stays open.
type ErrorReply struct {
	ID     uint64 `msgpack:"id,omitempty" json:"id,omitempty"`
	S      string `msgpack:"s,omitempty" json:"s,omitempty"`
	Code   Code   `msgpack:"code" json:"code"`
	Reason string `msgpack:"reason" json:"reason"`
	Retry  bool   `msgpack:"retry,omitempty" json:"retry,omitempty"`
}

// Disconnect precedes a close frame carrying the same code.
type Disconnect struct {
	Code      Code   `msgpack:"code" json:"code"`
	Reason    string `msgpack:"reason" json:"reason"`
	Reconnect bool   `msgpack:"reconnect" json:"reconnect"`
}

// Unknown stands for a decoded message whose "t" this side does not know.
// It is never encoded.
type Unknown struct {
	T  string
	ID uint64
}

// Message type names ("t" values).
const (
	TypeConnect      = "connect"
	TypeSub          = "sub"
	TypeUnsub        = "unsub"
	TypePub          = "pub"
	TypeWhisper      = "whisper"
	TypeJoin         = "join"
	TypeUpdate       = "update"
	TypeLeave        = "leave"
	TypeHistory      = "history"
	TypeWho          = "who"
	TypeRefresh      = "refresh"
	TypeCompact      = "compact"
	TypePing         = "ping"
	TypePong         = "pong"
	TypeConnected    = "connected"
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypePresence     = "presence"
	TypeAck          = "ack"
	TypeRefreshed    = "refreshed"
	TypeError        = "error"
	TypeDisconnect   = "disconnect"
)

func (Connect) Type() string        { return TypeConnect }
func (Subscribe) Type() string      { return TypeSub }
func (Unsubscribe) Type() string    { return TypeUnsub }
func (Publish) Type() string        { return TypePub }
func (SendWhisper) Type() string    { return TypeWhisper }
func (Join) Type() string           { return TypeJoin }
func (Update) Type() string         { return TypeUpdate }
func (Leave) Type() string          { return TypeLeave }
func (HistoryRequest) Type() string { return TypeHistory }
func (WhoRequest) Type() string     { return TypeWho }
func (Refresh) Type() string        { return TypeRefresh }
func (Compact) Type() string        { return TypeCompact }
func (Ping) Type() string           { return TypePing }
func (Pong) Type() string           { return TypePong }
func (Connected) Type() string      { return TypeConnected }
func (Subscribed) Type() string     { return TypeSubscribed }
func (Unsubscribed) Type() string   { return TypeUnsubscribed }
func (Pub) Type() string            { return TypePub }
func (Whisper) Type() string        { return TypeWhisper }
func (Presence) Type() string       { return TypePresence }
func (History) Type() string        { return TypeHistory }
func (Who) Type() string            { return TypeWho }
func (Ack) Type() string            { return TypeAck }
func (Refreshed) Type() string      { return TypeRefreshed }
func (ErrorReply) Type() string     { return TypeError }
func (Disconnect) Type() string     { return TypeDisconnect }
func (u Unknown) Type() string      { return u.T }

// ClientMessages lists, by "t", a constructor for every message a client
// sends. The server decodes with it; the SDK generator reads it.
var ClientMessages = map[string]func() Message{
	TypeConnect: func() Message { return new(Connect) },
	TypeSub:     func() Message { return new(Subscribe) },
	TypeUnsub:   func() Message { return new(Unsubscribe) },
	TypePub:     func() Message { return new(Publish) },
	TypeWhisper: func() Message { return new(SendWhisper) },
	TypeJoin:    func() Message { return new(Join) },
	TypeUpdate:  func() Message { return new(Update) },
	TypeLeave:   func() Message { return new(Leave) },
	TypeHistory: func() Message { return new(HistoryRequest) },
	TypeWho:     func() Message { return new(WhoRequest) },
	TypeRefresh: func() Message { return new(Refresh) },
	TypeCompact: func() Message { return new(Compact) },
	TypePing:    func() Message { return new(Ping) },
	TypePong:    func() Message { return new(Pong) },
}

// ServerMessages lists, by "t", a constructor for every message the server
// sends. Clients (tests, the bench tool) decode with it.
var ServerMessages = map[string]func() Message{
	TypeConnected:    func() Message { return new(Connected) },
	TypeSubscribed:   func() Message { return new(Subscribed) },
	TypeUnsubscribed: func() Message { return new(Unsubscribed) },
	TypePub:          func() Message { return new(Pub) },
	TypeWhisper:      func() Message { return new(Whisper) },
	TypePresence:     func() Message { return new(Presence) },
	TypeHistory:      func() Message { return new(History) },
	TypeWho:          func() Message { return new(Who) },
	TypeAck:          func() Message { return new(Ack) },
	TypeRefreshed:    func() Message { return new(Refreshed) },
	TypeError:        func() Message { return new(ErrorReply) },
	TypeDisconnect:   func() Message { return new(Disconnect) },
	TypePing:         func() Message { return new(Ping) },
	TypePong:         func() Message { return new(Pong) },
}
