package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Codec is a wire format. Its value indexes per-codec arrays such as the
// pre-encoded frames of a publication.
type Codec uint8

// The codecs of protocol v1.
const (
	Msgpack   Codec = iota // huddle.v1.msgpack: binary frames of concatenated maps
	JSON                   // huddle.v1.json: text frames of objects separated by '\n'
	NumCodecs = 2
)

// Subprotocol names as offered in Sec-WebSocket-Protocol.
const (
	SubprotocolMsgpack = "huddle.v1.msgpack"
	SubprotocolJSON    = "huddle.v1.json"
)

// Subprotocol returns the WebSocket subprotocol name of c.
func (c Codec) Subprotocol() string {
	if c == JSON {
		return SubprotocolJSON
	}
	return SubprotocolMsgpack
}

// Binary reports whether c's frames are binary (else text).
func (c Codec) Binary() bool { return c == Msgpack }

func (c Codec) String() string { return c.Subprotocol() }

// CodecFor returns the codec of a subprotocol name.
func CodecFor(subprotocol string) (Codec, bool) {
	switch subprotocol {
	case SubprotocolMsgpack:
		return Msgpack, true
	case SubprotocolJSON:
		return JSON, true
	}
	return 0, false
}

// Limits on fields, from the protocol.
const (
	MaxStreamName = 256 // bytes of a stream name
	MaxEventName  = 64  // bytes of a whisper's ev
	maxDepth      = 64  // nesting of a payload value
)

// ErrMalformed is wrapped by decoding errors that make a whole frame
// unusable; the connection closes with 4004.
var ErrMalformed = errors.New("malformed frame")

// MessageError is a decoding error confined to one message of a frame: the
// frame's syntax was fine but the message's fields were not. The server
// answers it with an error reply and keeps the connection.
type MessageError struct {
	T      string
	ID     uint64
	Reason string
}

func (e *MessageError) Error() string { return "bad " + e.T + " message: " + e.Reason }

// Decoded is one decoded message of a frame: either Msg, or Err when only
// that message was bad.
type Decoded struct {
	Msg Message
	Err *MessageError
}

// DecodeClient decodes every message of a frame sent by a client, appending
// to dst. Unknown types decode as *Unknown. An error wrapping ErrMalformed
// means the frame could not be split into messages at all.
func DecodeClient(c Codec, frame []byte, dst []Decoded) ([]Decoded, error) {
	return decodeFrame(c, frame, dst, ClientMessages)
}

// DecodeServer decodes every message of a frame sent by the server.
func DecodeServer(c Codec, frame []byte, dst []Decoded) ([]Decoded, error) {
	return decodeFrame(c, frame, dst, ServerMessages)
}

func decodeFrame(c Codec, frame []byte, dst []Decoded, table map[string]func() Message) ([]Decoded, error) {
	if c == JSON {
		return decodeJSONFrame(frame, dst, table)
	}
	return decodeMsgpackFrame(frame, dst, table)
}

func decodeMsgpackFrame(frame []byte, dst []Decoded, table map[string]func() Message) ([]Decoded, error) {
	if len(frame) == 0 {
		return dst, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	for pos := 0; pos < len(frame); {
		end, err := skipMsgpack(frame, pos, 0)
		if err != nil {
			return dst, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		msg := frame[pos:end]
		pos = end
		t, id, err := peekMsgpackHeader(msg)
		if err != nil {
			return dst, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		newMsg, ok := table[t]
		if !ok {
			dst = append(dst, Decoded{Msg: &Unknown{T: t, ID: id}})
			continue
		}
		m := newMsg()
		if _, empty := m.(interface{ empty() }); !empty {
			if err := msgpack.Unmarshal(msg, m); err != nil {
				dst = append(dst, Decoded{Err: &MessageError{T: t, ID: id, Reason: cleanReason(err)}})
				continue
			}
		}
		dst = append(dst, Decoded{Msg: m})
	}
	return dst, nil
}

func (*Ping) empty() {}
func (*Pong) empty() {}

// peekMsgpackHeader reads "t" and "id" from one validated msgpack value.
func peekMsgpackHeader(b []byte) (t string, id uint64, err error) {
	n, pos, err := mapHeader(b, 0)
	if err != nil {
		return "", 0, errors.New("message is not a map")
	}
	for i := 0; i < n; i++ {
		key, next, isStr := readStr(b, pos)
		if !isStr {
			if next, err = skipMsgpack(b, pos, 1); err != nil {
				return "", 0, err
			}
			pos = next
		} else {
			pos = next
		}
		switch {
		case isStr && key == "t":
			s, next, ok := readStr(b, pos)
			if !ok {
				return "", 0, errors.New(`"t" is not a string`)
			}
			t = s
			pos = next
			continue
		case isStr && key == "id":
			if v, next, ok := readUint(b, pos); ok {
				id = v
				pos = next
				continue
			}
		}
		if pos, err = skipMsgpack(b, pos, 1); err != nil {
			return "", 0, err
		}
	}
	if t == "" {
		return "", 0, errors.New(`message has no "t"`)
	}
	return t, id, nil
}

func decodeJSONFrame(frame []byte, dst []Decoded, table map[string]func() Message) ([]Decoded, error) {
	dec := json.NewDecoder(bytes.NewReader(frame))
	count := 0
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if err == io.EOF {
				if count == 0 {
					return dst, fmt.Errorf("%w: empty frame", ErrMalformed)
				}
				return dst, nil
			}
			return dst, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		count++
		if len(raw) == 0 || raw[0] != '{' {
			return dst, fmt.Errorf("%w: message is not an object", ErrMalformed)
		}
		var head struct {
			T  json.RawMessage `json:"t"`
			ID json.RawMessage `json:"id"`
		}
		if err := json.Unmarshal(raw, &head); err != nil {
			return dst, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		var t string
		if err := json.Unmarshal(head.T, &t); err != nil || t == "" {
			return dst, fmt.Errorf("%w: message has no string \"t\"", ErrMalformed)
		}
		var id uint64
		_ = json.Unmarshal(head.ID, &id)
		newMsg, ok := table[t]
		if !ok {
			dst = append(dst, Decoded{Msg: &Unknown{T: t, ID: id}})
			continue
		}
		m := newMsg()
		if err := json.Unmarshal(raw, m); err != nil {
			dst = append(dst, Decoded{Err: &MessageError{T: t, ID: id, Reason: cleanReason(err)}})
			continue
		}
		dst = append(dst, Decoded{Msg: m})
	}
}

func cleanReason(err error) string {
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// AppendMessage appends m encoded with c to dst (one message, no separator).
func AppendMessage(c Codec, dst []byte, m Message) ([]byte, error) {
	if c == JSON {
		return appendJSON(dst, m)
	}
	return appendMsgpack(dst, m)
}

// Separator returns what goes between two messages of one frame in c.
func (c Codec) Separator() []byte {
	if c == JSON {
		return newline
	}
	return nil
}

var newline = []byte{'\n'}

// EncodeFrame encodes msgs as one frame payload.
func EncodeFrame(c Codec, msgs ...Message) ([]byte, error) {
	var b []byte
	var err error
	for i, m := range msgs {
		if i > 0 {
			b = append(b, c.Separator()...)
		}
		if b, err = AppendMessage(c, b, m); err != nil {
			return nil, err
		}
	}
	return b, nil
}

type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *appendWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }

type msgpackEncoder struct {
	w   appendWriter
	enc *msgpack.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &msgpackEncoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	e.enc.UseCompactInts(true)
	e.enc.UseCompactFloats(true)
	return e
}}

func appendMsgpack(dst []byte, m Message) ([]byte, error) {
	if w, ok := m.(*Whisper); ok {
		return appendWhisperMsgpack(dst, w), nil // the hottest message: no reflection
	}
	t := m.Type()
	start := len(dst)
	e := encoders.Get().(*msgpackEncoder)
	e.w.b = dst
	err := e.enc.Encode(m)
	dst = e.w.b
	e.w.b = nil
	encoders.Put(e)
	if err != nil {
		return dst[:start], err
	}
	return insertMsgpackType(dst, start, t)
}

// insertMsgpackType adds the "t" entry to the map encoded at dst[start:],
// shifting the map's entries right in place.
func insertMsgpackType(dst []byte, start int, t string) ([]byte, error) {
	n, hdr, err := mapHeader(dst, start)
	if err != nil || len(t) > 31 {
		return dst[:start], errors.New("protocol: cannot add type to encoded message")
	}
	var newHdr [5]byte
	var hl int
	switch n1 := n + 1; {
	case n1 <= 15:
		newHdr[0], hl = 0x80|byte(n1), 1
	case n1 <= 0xffff:
		newHdr[0], newHdr[1], newHdr[2], hl = 0xde, byte(n1>>8), byte(n1), 3
	default:
		newHdr[0], newHdr[1], newHdr[2], newHdr[3], newHdr[4], hl = 0xdf, byte(n1>>24), byte(n1>>16), byte(n1>>8), byte(n1), 5
	}
	entry := 3 + len(t) // fixstr "t", fixstr type name
	grow := hl + entry - hdr
	body := start + hdr
	oldLen := len(dst)
	dst = append(dst, make([]byte, grow)...) // does not allocate when capacity allows
	copy(dst[body+grow:], dst[body:oldLen])
	i := start + copy(dst[start:], newHdr[:hl])
	dst[i], dst[i+1], dst[i+2] = 0xa1, 't', 0xa0|byte(len(t))
	copy(dst[i+3:], t)
	return dst, nil
}

func appendJSON(dst []byte, m Message) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"t":`...)
	dst = appendJSONString(dst, m.Type())
	if len(b) > 2 {
		dst = append(dst, ',')
	}
	return append(dst, b[1:]...), nil
}

// appendWhisperMsgpack encodes w as the reflective encoder would, type
// first: {t, s, ev, data, from: {user, client}}.
func appendWhisperMsgpack(dst []byte, w *Whisper) []byte {
	dst = append(dst, 0x85)
	dst = appendMsgpackStr(dst, "t")
	dst = appendMsgpackStr(dst, TypeWhisper)
	dst = appendMsgpackStr(dst, "s")
	dst = appendMsgpackStr(dst, w.S)
	dst = appendMsgpackStr(dst, "ev")
	dst = appendMsgpackStr(dst, w.Ev)
	dst = appendMsgpackStr(dst, "data")
	if len(w.Data) == 0 {
		dst = append(dst, 0xc0)
	} else {
		dst = append(dst, w.Data...)
	}
	dst = appendMsgpackStr(dst, "from")
	dst = append(dst, 0x82)
	dst = appendMsgpackStr(dst, "user")
	dst = appendMsgpackStr(dst, w.From.User)
	dst = appendMsgpackStr(dst, "client")
	return appendMsgpackStr(dst, w.From.Client)
}
