package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// CommandKind is what a client command asks for.
type CommandKind uint8

// The commands. CmdUnknown is a well-formed command with a name this package
// does not know; the caller decides how to answer it (Rails logs it and
// carries on).
const (
	CmdUnknown     CommandKind = iota
	CmdSubscribe               // identifier; ext: optional history and presence
	CmdUnsubscribe             // identifier
	CmdMessage                 // identifier, data (a string holding JSON in Rails' protocol)
	CmdHistory                 // ext: identifier, history
	CmdWhisper                 // identifier, data (any JSON value)
	CmdJoin                    // ext: identifier, presence with an id
	CmdLeave                   // ext: identifier, optional presence
	CmdPresence                // ext: identifier, optional data ({"return_records":bool})
	CmdPong                    // ext: nothing; an answer to ping
	numCommandKinds
)

var commandNames = [numCommandKinds]string{
	CmdSubscribe:   "subscribe",
	CmdUnsubscribe: "unsubscribe",
	CmdMessage:     "message",
	CmdHistory:     "history",
	CmdWhisper:     "whisper",
	CmdJoin:        "join",
	CmdLeave:       "leave",
	CmdPresence:    "presence",
	CmdPong:        "pong",
}

func (k CommandKind) String() string {
	if k == CmdUnknown || k >= numCommandKinds {
		return "unknown"
	}
	return commandNames[k]
}

// Limits on client input. Frames themselves are bounded by the caller's read
// limit; these keep one command from allocating out of proportion to it.
const (
	MaxIdentifierLen  = 8 << 10 // bytes of an identifier
	MaxHistoryStreams = 128     // streams in one history request
	MaxStreamNameLen  = 1 << 10 // bytes of a stream name in a history request
	MaxEpochLen       = 128     // bytes of an epoch
	MaxPresenceIDLen  = 256     // bytes of a presence id
	maxCommandNameLen = 64      // bytes of an unknown command's name kept in Command.Name
)

// Command is one decoded client command. Raw JSON fields are copies the
// caller may keep.
type Command struct {
	Kind CommandKind
	// Name is the command as sent (for CmdUnknown cut to 64 bytes).
	Name string
	// Identifier is the identifier exactly as sent: a JSON text the server
	// must echo unchanged, never re-encode. ParseIdentifier reads it.
	Identifier string
	// Data is the raw JSON of "data" (converted from msgpack in msgpack
	// dialects, else the bytes as sent), nil when absent or null. For
	// CmdMessage it is a JSON string literal holding JSON (see DataString);
	// for CmdWhisper any value, relayed as the message.
	Data json.RawMessage
	// History is the "history" object, nil when absent.
	History *HistoryRequest
	// Presence is the "presence" object, nil when absent.
	Presence *PresenceRequest
}

// DataString returns Data's string value when Data is a JSON string, as
// Rails' protocol has it for the message command; ok is false otherwise.
func (c *Command) DataString() (s string, ok bool) {
	if len(c.Data) == 0 || c.Data[0] != '"' {
		return "", false
	}
	if json.Unmarshal(c.Data, &s) != nil {
		return "", false
	}
	return s, true
}

// HistoryRequest asks for the messages a client missed: those after a known
// position on a stream, and on the subscription's other streams those
// published since a time.
type HistoryRequest struct {
	// Since is a unix time in seconds; 0 when absent.
	Since int64
	// Streams maps a stream name to the last position the client has seen.
	Streams map[string]StreamPosition
}

// StreamPosition is a position in a stream: its epoch and an offset in it.
type StreamPosition struct {
	Epoch  string
	Offset uint64
}

// PresenceRequest is the "presence" object of join and leave: the client's
// presence id and its public info.
type PresenceRequest struct {
	ID   string
	Info json.RawMessage // raw JSON, nil when absent or null
}

// ErrMalformed is wrapped by every error DecodeCommand returns.
var ErrMalformed = errors.New("malformed command")

// DecodeError is a command DecodeCommand could not use. Kind, Name and
// Identifier hold what was read before the problem (CmdUnknown and "" when
// the frame could not be read at all), so the caller can answer the
// subscription when there is one.
type DecodeError struct {
	Kind       CommandKind
	Name       string
	Identifier string
	Reason     string
}

func (e *DecodeError) Error() string {
	if e.Name == "" {
		return "malformed command: " + e.Reason
	}
	return fmt.Sprintf("malformed %q command: %s", e.Name, e.Reason)
}

func (e *DecodeError) Unwrap() error { return ErrMalformed }

// DecodeCommand decodes the payload of one WebSocket message sent by a client
// speaking dialect d: a JSON object in a text frame, or a msgpack map in a
// binary frame for msgpack dialects (converted to JSON first, so both decode
// alike). Unknown command names decode to CmdUnknown without error. Every
// error is a *DecodeError.
func DecodeCommand(d Dialect, frame []byte) (Command, error) {
	if d.Msgpack() {
		if len(frame) == 0 || !isMsgpackMap(frame[0]) {
			return Command{}, &DecodeError{Reason: "not a msgpack map"}
		}
		js, used, err := appendJSONFromMsgpack(make([]byte, 0, len(frame)+len(frame)/2), frame, 0)
		if err != nil {
			return Command{}, &DecodeError{Reason: err.Error()}
		}
		if used != len(frame) {
			return Command{}, &DecodeError{Reason: "bytes after the msgpack map"}
		}
		frame = js
	}
	return decodeJSONCommand(frame)
}

func isMsgpackMap(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

func decodeJSONCommand(frame []byte) (Command, error) {
	var cmd Command
	var data, history, presence json.RawMessage
	fail := func(reason string) (Command, error) {
		return Command{}, &DecodeError{Kind: cmd.Kind, Name: cmd.Name, Identifier: cmd.Identifier, Reason: reason}
	}
	var name, identifier *string
	err := eachMember(frame, func(key string, dec *json.Decoder) error {
		switch key {
		case "command":
			name = new(string)
			return decodeString(dec, name, "command")
		case "identifier":
			identifier = new(string)
			return decodeString(dec, identifier, "identifier")
		case "data":
			return decodeRaw(dec, &data)
		case "history":
			return decodeRaw(dec, &history)
		case "presence":
			return decodeRaw(dec, &presence)
		}
		return skipValue(dec)
	})
	if name != nil {
		cmd.Kind, cmd.Name = commandKind(*name)
	}
	if identifier != nil {
		cmd.Identifier = *identifier
	}
	if err != nil {
		return fail(err.Error())
	}
	switch {
	case name == nil:
		return fail("no command")
	case len(cmd.Identifier) > MaxIdentifierLen:
		cmd.Identifier = ""
		return fail("identifier too long")
	case cmd.Kind == CmdUnknown:
		return cmd, nil
	case cmd.Identifier == "" && cmd.Kind != CmdPong:
		return fail("no identifier")
	}
	if !isNull(data) {
		cmd.Data = data
	}
	if (cmd.Kind == CmdMessage || cmd.Kind == CmdWhisper) && cmd.Data == nil {
		return fail("no data")
	}
	if !isNull(history) {
		h, err := decodeHistory(history)
		if err != nil {
			return fail(err.Error())
		}
		cmd.History = h
	} else if cmd.Kind == CmdHistory {
		return fail("no history")
	}
	if !isNull(presence) {
		p, err := decodePresence(presence)
		if err != nil {
			return fail(err.Error())
		}
		cmd.Presence = p
	}
	if cmd.Kind == CmdJoin && (cmd.Presence == nil || cmd.Presence.ID == "") {
		return fail("no presence id")
	}
	return cmd, nil
}

func commandKind(name string) (CommandKind, string) {
	for k, n := range commandNames {
		if n == name && n != "" {
			return CommandKind(k), n
		}
	}
	if len(name) > maxCommandNameLen {
		name = name[:maxCommandNameLen]
	}
	return CmdUnknown, name
}

func isNull(raw json.RawMessage) bool { return len(raw) == 0 || string(raw) == "null" }

// eachMember calls fn for each member of the JSON object src, with dec
// positioned at the member's value; fn must consume exactly that value. Keys
// match exactly (encoding/json's struct decoding would match them
// case-insensitively), and nothing may follow the object.
func eachMember(src []byte, fn func(key string, dec *json.Decoder) error) error {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("invalid JSON")
		}
		key, _ := tok.(string)
		if err := fn(key, dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return errors.New("invalid JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

func skipValue(dec *json.Decoder) error {
	var skip json.RawMessage
	return decodeRaw(dec, &skip)
}

func decodeRaw(dec *json.Decoder, dst *json.RawMessage) error {
	if err := dec.Decode(dst); err != nil {
		return errors.New("invalid JSON")
	}
	return nil
}

func decodeString(dec *json.Decoder, dst *string, field string) error {
	if err := dec.Decode(dst); err != nil {
		return fmt.Errorf("%s is not a string", field)
	}
	return nil
}

func decodeHistory(raw json.RawMessage) (*HistoryRequest, error) {
	h := &HistoryRequest{}
	err := eachMember(raw, func(key string, dec *json.Decoder) error {
		switch key {
		case "since":
			var n json.Number
			if dec.Decode(&n) != nil {
				return errors.New("history since is not a number")
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil || f < 0 || f >= 1<<62 {
				return errors.New("history since is out of range")
			}
			h.Since = int64(f) // JavaScript clients may send a fraction
			return nil
		case "streams":
			var streams json.RawMessage
			if err := decodeRaw(dec, &streams); err != nil {
				return err
			}
			if isNull(streams) {
				return nil
			}
			var err error
			h.Streams, err = decodeStreamPositions(streams)
			return err
		}
		return skipValue(dec)
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

func decodeStreamPositions(raw json.RawMessage) (map[string]StreamPosition, error) {
	streams := make(map[string]StreamPosition)
	err := eachMember(raw, func(stream string, dec *json.Decoder) error {
		if len(streams) >= MaxHistoryStreams {
			return fmt.Errorf("more than %d history streams", MaxHistoryStreams)
		}
		if stream == "" || len(stream) > MaxStreamNameLen {
			return errors.New("bad history stream name")
		}
		var pos struct {
			Epoch  *string `json:"epoch"`
			Offset *uint64 `json:"offset"`
		}
		if dec.Decode(&pos) != nil || pos.Epoch == nil || pos.Offset == nil {
			return errors.New("history position needs a string epoch and an integer offset")
		}
		if len(*pos.Epoch) > MaxEpochLen {
			return errors.New("history epoch too long")
		}
		streams[stream] = StreamPosition{Epoch: *pos.Epoch, Offset: *pos.Offset}
		return nil
	})
	return streams, err
}

func decodePresence(raw json.RawMessage) (*PresenceRequest, error) {
	p := &PresenceRequest{}
	err := eachMember(raw, func(key string, dec *json.Decoder) error {
		switch key {
		case "id":
			if err := decodeString(dec, &p.ID, "presence id"); err != nil {
				return err
			}
			if len(p.ID) > MaxPresenceIDLen {
				return errors.New("presence id too long")
			}
			return nil
		case "info":
			var info json.RawMessage
			if err := decodeRaw(dec, &info); err != nil {
				return err
			}
			if !isNull(info) {
				p.Info = info
			}
			return nil
		}
		return skipValue(dec)
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Channels the server serves itself, without the application backend.
const (
	PubSubChannel = "$pubsub"               // stream_name or signed_stream_name
	TurboChannel  = "Turbo::StreamsChannel" // signed_stream_name
)

// Identifier holds the fields of an identifier the server routes on. Other
// parameters belong to the application and stay in the original string.
type Identifier struct {
	Channel          string
	StreamName       string // "stream_name", when a string
	SignedStreamName string // "signed_stream_name", when a string
}

// ParseIdentifier reads an identifier: a JSON object with a string "channel".
// stream_name and signed_stream_name are read when they are strings and left
// empty otherwise (for backend channels they are the application's business).
func ParseIdentifier(s string) (Identifier, error) {
	var id Identifier
	if len(s) > MaxIdentifierLen {
		return id, errors.New("identifier too long")
	}
	var hasChannel bool
	err := eachMember([]byte(s), func(key string, dec *json.Decoder) error {
		var dst *string
		switch key {
		case "channel":
			hasChannel = true
			return decodeString(dec, &id.Channel, "channel")
		case "stream_name":
			dst = &id.StreamName
		case "signed_stream_name":
			dst = &id.SignedStreamName
		default:
			return skipValue(dec)
		}
		var v any
		if dec.Decode(&v) != nil {
			return errors.New("invalid JSON")
		}
		*dst, _ = v.(string)
		return nil
	})
	if err != nil {
		return Identifier{}, fmt.Errorf("bad identifier: %w", err)
	}
	if !hasChannel || id.Channel == "" {
		return Identifier{}, errors.New("bad identifier: no channel")
	}
	return id, nil
}
