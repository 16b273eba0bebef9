// Package clientsdk generates the protocol part of the TypeScript SDK
// (clientsdk/ts/src/gen) from the Go types of package protocol, which stay
// the single source of truth: message interfaces with their "t" literals,
// discriminated unions per direction, runtime validators and type guards,
// the close and error codes, and the codecs of batched frames.
//
// The hand-written runtime lives beside it in clientsdk/ts/src. Run
// `go generate ./clientsdk` after changing package protocol; the tests fail
// while the committed output is stale.
package clientsdk

//go:generate go run ./gen -protocol ../protocol -out ts/src/gen
