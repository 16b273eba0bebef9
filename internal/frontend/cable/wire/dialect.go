package wire

import "strings"

// Dialect is one of the four subprotocols of the Action Cable family. Its
// value indexes per-dialect arrays, such as the bodies of a publication.
type Dialect uint8

// The dialects. The ext bit adds AnyCable's extensions (session ids and
// restore, stream positions and history, presence); the msgpack bit moves
// every message from a JSON text frame to a msgpack map in a binary frame.
const (
	JSON        Dialect = 0                   // actioncable-v1-json, Rails' own protocol
	ExtJSON     Dialect = extBit              // actioncable-v1-ext-json
	Msgpack     Dialect = msgpackBit          // actioncable-v1-msgpack
	ExtMsgpack  Dialect = extBit | msgpackBit // actioncable-v1-ext-msgpack
	NumDialects         = 4
)

const (
	extBit     = 1
	msgpackBit = 2
)

// Subprotocol names as offered in Sec-WebSocket-Protocol.
const (
	SubprotocolJSON       = "actioncable-v1-json"
	SubprotocolExtJSON    = "actioncable-v1-ext-json"
	SubprotocolMsgpack    = "actioncable-v1-msgpack"
	SubprotocolExtMsgpack = "actioncable-v1-ext-msgpack"
)

var subprotocols = [NumDialects]string{
	JSON:       SubprotocolJSON,
	ExtJSON:    SubprotocolExtJSON,
	Msgpack:    SubprotocolMsgpack,
	ExtMsgpack: SubprotocolExtMsgpack,
}

// Ext reports whether d carries AnyCable's protocol extensions.
func (d Dialect) Ext() bool { return d&extBit != 0 }

// Msgpack reports whether d's messages are msgpack maps in binary frames
// (else JSON objects in text frames).
func (d Dialect) Msgpack() bool { return d&msgpackBit != 0 }

// Subprotocol returns d's Sec-WebSocket-Protocol name.
func (d Dialect) Subprotocol() string { return subprotocols[d&3] }

func (d Dialect) String() string { return d.Subprotocol() }

// ParseSubprotocol returns the dialect of a subprotocol name; names are
// matched exactly, as WebSocket subprotocol tokens are case-sensitive.
func ParseSubprotocol(name string) (Dialect, bool) {
	for d, s := range subprotocols {
		if s == name {
			return Dialect(d), true
		}
	}
	return 0, false
}

// maxOffered bounds how many offered subprotocol tokens Negotiate looks at.
const maxOffered = 32

// Negotiate picks the dialect for a client that offered the given
// Sec-WebSocket-Protocol header values (each may hold a comma-separated
// list). The first token, in the client's order of preference, that names a
// dialect wins, and subprotocol is that token, to be echoed in the handshake
// response. Rails' client offers "actioncable-v1-json" and
// "actioncable-unsupported", so it gets JSON.
//
// When no token names a dialect, Negotiate returns JSON and subprotocol "":
// complete the handshake without a Sec-WebSocket-Protocol header and speak
// plain actioncable-v1-json. That is what anycable-go (gorilla's Upgrader)
// and Rails do. A client that offered nothing, such as a bare WebSocket,
// then works; a browser that offered only unknown names fails the handshake
// on its side, as the WebSocket standard requires, which is the right outcome.
func Negotiate(offered []string) (d Dialect, subprotocol string) {
	seen := 0
	for _, v := range offered {
		for tok := range strings.SplitSeq(v, ",") {
			if seen++; seen > maxOffered {
				return JSON, ""
			}
			tok = strings.TrimSpace(tok)
			if d, ok := ParseSubprotocol(tok); ok {
				return d, tok
			}
		}
	}
	return JSON, ""
}
