package protocol

import "strconv"

// Code is a close code (in a disconnect message and the WebSocket close
// frame) or an error code (in an error message).
type Code uint16

// Codes of protocol v1.
const (
	CodeNormal            Code = 4000 // normal close; do not reconnect
	CodeUnauthorized      Code = 4001 // bad or missing token, no connect in time
	CodeTokenExpired      Code = 4002 // token expired; reconnect after refresh
	CodeForbidden         Code = 4003 // op denied on a stream; connection stays
	CodeBadRequest        Code = 4004 // malformed frame or message
	CodeTooLarge          Code = 4005 // message over a size limit
	CodeRateLimited       Code = 4006 // too many messages; back off
	CodeSlowConsumer      Code = 4008 // outbound queue over its bound
	CodeShutdown          Code = 4009 // server draining; reconnect elsewhere at once
	CodeInsufficientState Code = 4010 // order could not be guaranteed; resubscribe with recover
	CodeNoPong            Code = 4011 // no pong within two ping intervals
	CodeInternal          Code = 4500 // internal error; back off
)

var codeText = map[Code]string{
	CodeNormal:            "normal",
	CodeUnauthorized:      "unauthorized",
	CodeTokenExpired:      "token expired",
	CodeForbidden:         "forbidden",
	CodeBadRequest:        "bad request",
	CodeTooLarge:          "message too large",
	CodeRateLimited:       "rate limited",
	CodeSlowConsumer:      "slow consumer",
	CodeShutdown:          "server shutting down",
	CodeInsufficientState: "insufficient state",
	CodeNoPong:            "no pong",
	CodeInternal:          "internal error",
}

// String returns the code's short text, e.g. "slow consumer".
func (c Code) String() string {
	if s, ok := codeText[c]; ok {
		return s
	}
	return "code " + strconv.Itoa(int(c))
}

// Reconnect reports whether a client disconnected with c should reconnect.
func (c Code) Reconnect() bool {
	switch c {
	case CodeTokenExpired, CodeRateLimited, CodeSlowConsumer, CodeShutdown,
		CodeInsufficientState, CodeNoPong, CodeInternal:
		return true
	}
	return false
}

// Error is a wire error: the code and human text of an error or disconnect
// message.
type Error struct {
	Code   Code
	Reason string
}

// NewError returns an *Error with code and reason.
func NewError(code Code, reason string) *Error { return &Error{Code: code, Reason: reason} }

func (e *Error) Error() string {
	return strconv.Itoa(int(e.Code)) + " " + e.Code.String() + ": " + e.Reason
}
