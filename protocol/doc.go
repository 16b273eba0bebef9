// Package protocol is the single source of truth for Huddle's wire protocol
// v1: every message type, the close and error codes, and the two codecs
// (huddle.v1.msgpack and huddle.v1.json) with multi-message frames.
//
// It imports nothing of Huddle's and does no I/O: callers hand it whole
// WebSocket message payloads and get messages back, or hand it messages and
// get bytes appended to their buffer. The TypeScript SDK's types are
// generated from the structs in this package, so field tags here are the
// contract.
//
// Payloads (pub data, presence state, user info) travel as Raw: a msgpack
// encoding that is converted to JSON only for JSON clients, so a publication
// is stored once and encoded once per codec.
package protocol
