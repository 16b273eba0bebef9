package grpctest_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc"
	pb "github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/anycablepb"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/grpctest"
)

// TestRoundTrip: every field survives grpcrpc's client and this server in
// both directions.
func TestRoundTrip(t *testing.T) {
	url := grpctest.Start(t, grpctest.App{
		Connect: func(_ context.Context, req *rpc.ConnectRequest) (*rpc.ConnectResponse, error) {
			return &rpc.ConnectResponse{
				Status:        rpc.Success,
				Identifiers:   req.Env.Headers["cookie"],
				Transmissions: []string{req.Env.URL},
				Env:           &rpc.EnvResponse{CState: req.Env.CState},
			}, nil
		},
		Command: func(_ context.Context, req *rpc.CommandRequest) (*rpc.CommandResponse, error) {
			return &rpc.CommandResponse{
				Status:         rpc.Failure,
				Disconnect:     true,
				StopStreams:    true,
				Streams:        []string{req.Command, req.Identifier},
				StoppedStreams: []string{req.ConnectionIdentifiers, req.Data},
				Transmissions:  []string{req.Env.URL},
				ErrorMsg:       "denied",
				Env:            &rpc.EnvResponse{IState: req.Env.IState},
			}, nil
		},
		Disconnect: func(_ context.Context, req *rpc.DisconnectRequest) (*rpc.DisconnectResponse, error) {
			return &rpc.DisconnectResponse{Status: rpc.Error, ErrorMsg: req.Identifiers + " " + strings.Join(req.Subscriptions, ",")}, nil
		},
	})
	if !strings.HasPrefix(url, "grpc://127.0.0.1:") {
		t.Fatalf("Start returned %q", url)
	}
	c, err := grpcrpc.New(rpc.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()

	cr, err := c.Connect(ctx, &rpc.ConnectRequest{Env: rpc.Env{URL: "ws://x/cable", Headers: map[string]string{"cookie": "id"}, CState: map[string]string{"a": "b"}}})
	if err != nil || cr.Status != rpc.Success || cr.Identifiers != "id" || cr.Transmissions[0] != "ws://x/cable" || cr.Env.CState["a"] != "b" {
		t.Fatalf("connect: %+v %v", cr, err)
	}
	mr, err := c.Command(ctx, &rpc.CommandRequest{Command: "subscribe", Identifier: "I", ConnectionIdentifiers: "C", Data: "D",
		Env: rpc.Env{URL: "ws://y/cable", IState: map[string]string{"n": "1"}}})
	if err != nil || mr.Status != rpc.Failure || !mr.Disconnect || !mr.StopStreams || strings.Join(mr.Streams, ",") != "subscribe,I" ||
		strings.Join(mr.StoppedStreams, ",") != "C,D" || mr.Transmissions[0] != "ws://y/cable" || mr.ErrorMsg != "denied" || mr.Env.IState["n"] != "1" {
		t.Fatalf("command: %+v %v", mr, err)
	}
	dr, err := c.Disconnect(ctx, &rpc.DisconnectRequest{Identifiers: "C", Subscriptions: []string{"I", "J"}})
	if err != nil || dr.Status != rpc.Error || dr.ErrorMsg != "C I,J" {
		t.Fatalf("disconnect: %+v %v", dr, err)
	}
}

// TestDefaults: nil funcs and nil responses answer Success.
func TestDefaults(t *testing.T) {
	url := grpctest.Start(t, grpctest.App{
		Command: func(context.Context, *rpc.CommandRequest) (*rpc.CommandResponse, error) { return nil, nil },
	})
	c, err := grpcrpc.New(rpc.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Connect(t.Context(), &rpc.ConnectRequest{}); err != nil || r.Status != rpc.Success {
		t.Fatalf("connect: %+v %v", r, err)
	}
	if r, err := c.Command(t.Context(), &rpc.CommandRequest{}); err != nil || r.Status != rpc.Success {
		t.Fatalf("command: %+v %v", r, err)
	}
}

// TestProtoVersion: a call without protov v1 is refused, as anycable-rails
// refuses it.
func TestProtoVersion(t *testing.T) {
	url := grpctest.Start(t, grpctest.App{})
	conn, err := grpc.NewClient(strings.TrimPrefix(url, "grpc://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewRPCClient(conn).Connect(t.Context(), &pb.ConnectionRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("got %v, want FailedPrecondition", err)
	}
}
