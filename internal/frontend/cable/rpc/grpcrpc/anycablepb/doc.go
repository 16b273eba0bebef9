// Package anycablepb is the Go code protoc generates from ../anycable.proto:
// the anycable.RPC service's messages, client and server. Do not edit it by
// hand; run go generate in the parent directory.
package anycablepb
