package wire

// A broadcast frame is Prefix + Body: the prefix opens the message and holds
// the subscription's identifier, the body holds the rest. JSON prefixes are
// `{"identifier":"…",` and bodies end with the closing brace. A msgpack
// prefix is a map header and the identifier entry; the header's count
// includes the body's entries, and bodies come in three shapes (1, 2 or 4
// entries), so a msgpack Prefix keeps a variant per shape.

// Body shapes, by the number of map entries after the identifier.
const (
	shape1 = iota // message
	shape2        // type, message (presence)
	shape4        // message, stream_id, epoch, offset (ext broadcasts)
	numShapes
)

var shapeEntries = [numShapes]int{shape1: 1, shape2: 2, shape4: 4}

// Prefix is the per-subscription start of every frame sent to it. Build it
// once, at subscribe; it is immutable and safe for concurrent use.
type Prefix struct {
	d       Dialect
	byShape [numShapes][]byte // JSON dialects share one slice
}

// NewPrefix returns the prefix for frames to the subscription identifier, in
// dialect d.
func NewPrefix(d Dialect, identifier string) Prefix {
	p := Prefix{d: d}
	if !d.Msgpack() {
		b := make([]byte, 0, len(identifier)+len(`{"identifier":"",`)+8)
		b = append(b, '{')
		b = appendJSONKey(b, "identifier")
		b = appendJSONString(b, identifier)
		b = append(b, ',')
		for i := range p.byShape {
			p.byShape[i] = b
		}
		return p
	}
	var entry []byte
	entry = appendMsgpackString(entry, "identifier")
	entry = appendMsgpackString(entry, identifier)
	buf := make([]byte, 0, numShapes*(1+len(entry)))
	for i, n := range shapeEntries {
		start := len(buf)
		buf = appendMsgpackMapHeader(buf, 1+n)
		buf = append(buf, entry...)
		p.byShape[i] = buf[start:len(buf):len(buf)]
	}
	return p
}

// For returns the prefix bytes that go before b. The caller must not modify
// them.
func (p *Prefix) For(b *Body) []byte {
	if p.d != b.d {
		panic("wire: prefix and body of different dialects")
	}
	return p.byShape[b.shape]
}

// Dialect returns the dialect p was built for.
func (p *Prefix) Dialect() Dialect { return p.d }

// AppendFrame appends the whole message p + b to dst. It appends nothing for
// a zero Body.
func AppendFrame(dst []byte, p *Prefix, b *Body) []byte {
	if b.IsZero() {
		return dst
	}
	dst = append(dst, p.For(b)...)
	return append(dst, b.b...)
}

// Body is the per-publication end of a frame, encoded once per dialect and
// shared by every subscriber. It is immutable and safe for concurrent use.
type Body struct {
	d     Dialect
	shape uint8
	b     []byte
}

// Bytes returns the body's bytes. The caller must not modify them.
func (b *Body) Bytes() []byte { return b.b }

// Dialect returns the dialect b was built for.
func (b *Body) Dialect() Dialect { return b.d }

// IsZero reports whether b is empty: a body that must not be sent.
func (b *Body) IsZero() bool { return len(b.b) == 0 }

// Publication is what a broadcast body is made of.
type Publication struct {
	// Data is the payload as JSON; the client receives it as "message".
	// Bytes that are not valid JSON are sent as a string, as anycable-go
	// does.
	Data []byte
	// Stream, Epoch and Offset are the publication's position, sent to ext
	// dialects as stream_id, epoch and offset. An empty Epoch (a stream
	// without history) sends no position.
	Stream string
	Epoch  string
	Offset uint64
}

// NewBroadcastBody encodes a publication for dialect d:
// "message" and, in ext dialects, its position.
func NewBroadcastBody(d Dialect, pub Publication) Body {
	e := bodyEnc(d, len(pub.Data)+len(pub.Stream)+len(pub.Epoch)+64)
	if !d.Ext() || pub.Epoch == "" {
		e.key("message")
		e.json(pub.Data)
		return Body{d: d, shape: shape1, b: e.close()}
	}
	e.key("message")
	e.json(pub.Data)
	e.key("stream_id")
	e.str(pub.Stream)
	e.key("epoch")
	e.str(pub.Epoch)
	e.key("offset")
	e.uint(pub.Offset)
	return Body{d: d, shape: shape4, b: e.close()}
}

// NewWhisperBody encodes a whisper for dialect d: "message" is the whisper's
// data (JSON, as Command.Data holds it), without a stream position, since
// whispers are not kept in history.
func NewWhisperBody(d Dialect, data []byte) Body {
	e := bodyEnc(d, len(data)+16)
	e.key("message")
	e.json(data)
	return Body{d: d, shape: shape1, b: e.close()}
}

// Presence event types.
const (
	PresenceJoin  = "join"
	PresenceLeave = "leave"
)

// PresenceEvent is a change of a presence set, sent to every subscriber.
type PresenceEvent struct {
	Type string // PresenceJoin or PresenceLeave
	ID   string
	Info []byte // JSON, for joins; nil omits it
}

// NewPresenceBody encodes a presence event for dialect d:
// "type":"presence","message":{"type":"join","id":..,"info":..}. Presence
// is an extension: for plain dialects it returns the zero Body, which must
// not be sent (AppendFrame appends nothing for it).
func NewPresenceBody(d Dialect, ev PresenceEvent) Body {
	if !d.Ext() {
		return Body{d: d}
	}
	e := bodyEnc(d, len(ev.ID)+len(ev.Info)+48)
	e.key("type")
	e.str(typePresence)
	e.key("message")
	n := 2
	if ev.Info != nil {
		n++
	}
	e.open(n)
	e.key("type")
	e.str(ev.Type)
	e.key("id")
	e.str(ev.ID)
	if ev.Info != nil {
		e.key("info")
		e.json(ev.Info)
	}
	e.close()
	return Body{d: d, shape: shape2, b: e.close()}
}

// bodyEnc starts a body: the prefix has already opened the map (msgpack) or
// object and written a member (JSON), so keys need no header and the first
// key no comma.
func bodyEnc(d Dialect, size int) enc {
	return enc{d: d, b: make([]byte, 0, size)}
}
