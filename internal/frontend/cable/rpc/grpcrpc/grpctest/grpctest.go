// Package grpctest serves the anycable.RPC gRPC service on 127.0.0.1 for
// tests, with the application written as Go funcs over package rpc's
// request and response structs. It stands in for an anycable-rails gRPC
// server, which cannot run where Huddle's tests run.
package grpctest

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	pb "github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/anycablepb"
)

// App is the application behind the test server. The funcs are called
// concurrently, one call per gRPC call. A nil func, or a nil response with
// a nil error, answers Success and nothing else, so a nil Connect accepts
// every connection with empty identifiers. An error a func returns reaches
// the client as a gRPC error (a status.Error keeps its code; anything else
// is Unknown).
type App struct {
	Connect    func(ctx context.Context, req *rpc.ConnectRequest) (*rpc.ConnectResponse, error)
	Command    func(ctx context.Context, req *rpc.CommandRequest) (*rpc.CommandResponse, error)
	Disconnect func(ctx context.Context, req *rpc.DisconnectRequest) (*rpc.DisconnectResponse, error)
}

// Start serves app until the test ends and returns the URL to give
// rpc.Config: "grpc://127.0.0.1:port".
//
// Like anycable-rails, the server refuses (FailedPrecondition) any call
// whose "protov" metadata does not list version v1, so a test through it
// also checks that the client announces the version.
func Start(t testing.TB, app App) string {
	t.Helper()
	return Serve(t, "127.0.0.1:0", &server{app: app}, grpc.UnaryInterceptor(checkVersion))
}

// Serve serves impl, the generated anycable.RPC interface, on addr until
// the test ends, and returns its grpc:// URL.
func Serve(t testing.TB, addr string, impl pb.RPCServer, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("grpctest: %v", err)
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterRPCServer(srv, impl)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return "grpc://" + ln.Addr().String()
}

// checkVersion refuses calls without protov v1, as anycable-rails does.
func checkVersion(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("protov") {
		if slices.Contains(strings.Split(v, ","), "v1") {
			return h(ctx, req)
		}
	}
	return nil, status.Errorf(codes.FailedPrecondition, "protov %q does not list v1", md.Get("protov"))
}

// server adapts App to the generated service interface.
type server struct {
	pb.UnimplementedRPCServer
	app App
}

func (s *server) Connect(ctx context.Context, in *pb.ConnectionRequest) (*pb.ConnectionResponse, error) {
	if s.app.Connect == nil {
		return &pb.ConnectionResponse{Status: pb.Status_SUCCESS}, nil
	}
	r, err := s.app.Connect(ctx, &rpc.ConnectRequest{Env: envFromPB(in.GetEnv())})
	if err != nil {
		return nil, err
	}
	if r == nil {
		return &pb.ConnectionResponse{Status: pb.Status_SUCCESS}, nil
	}
	return &pb.ConnectionResponse{
		Status:        pb.Status(r.Status),
		Identifiers:   r.Identifiers,
		Transmissions: r.Transmissions,
		ErrorMsg:      r.ErrorMsg,
		Env:           envToPB(r.Env),
	}, nil
}

func (s *server) Command(ctx context.Context, in *pb.CommandMessage) (*pb.CommandResponse, error) {
	if s.app.Command == nil {
		return &pb.CommandResponse{Status: pb.Status_SUCCESS}, nil
	}
	r, err := s.app.Command(ctx, &rpc.CommandRequest{
		Command:               in.GetCommand(),
		Identifier:            in.GetIdentifier(),
		ConnectionIdentifiers: in.GetConnectionIdentifiers(),
		Data:                  in.GetData(),
		Env:                   envFromPB(in.GetEnv()),
	})
	if err != nil {
		return nil, err
	}
	if r == nil {
		return &pb.CommandResponse{Status: pb.Status_SUCCESS}, nil
	}
	return &pb.CommandResponse{
		Status:         pb.Status(r.Status),
		Disconnect:     r.Disconnect,
		StopStreams:    r.StopStreams,
		Streams:        r.Streams,
		StoppedStreams: r.StoppedStreams,
		Transmissions:  r.Transmissions,
		ErrorMsg:       r.ErrorMsg,
		Env:            envToPB(r.Env),
	}, nil
}

func (s *server) Disconnect(ctx context.Context, in *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
	if s.app.Disconnect == nil {
		return &pb.DisconnectResponse{Status: pb.Status_SUCCESS}, nil
	}
	r, err := s.app.Disconnect(ctx, &rpc.DisconnectRequest{
		Identifiers:   in.GetIdentifiers(),
		Subscriptions: in.GetSubscriptions(),
		Env:           envFromPB(in.GetEnv()),
	})
	if err != nil {
		return nil, err
	}
	if r == nil {
		return &pb.DisconnectResponse{Status: pb.Status_SUCCESS}, nil
	}
	return &pb.DisconnectResponse{Status: pb.Status(r.Status), ErrorMsg: r.ErrorMsg}, nil
}

func envFromPB(e *pb.Env) rpc.Env {
	return rpc.Env{URL: e.GetUrl(), Headers: e.GetHeaders(), CState: e.GetCstate(), IState: e.GetIstate()}
}

func envToPB(e *rpc.EnvResponse) *pb.EnvResponse {
	if e == nil {
		return nil
	}
	return &pb.EnvResponse{Cstate: e.CState, Istate: e.IState}
}
