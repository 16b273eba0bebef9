package grpcrpc

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	pb "github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/anycablepb"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/grpctest"
)

// fakeApp serves anycable.RPC with the generated types, so the tests see
// exactly which protobuf fields the client fills and reads. A nil func
// answers Unimplemented.
type fakeApp struct {
	pb.UnimplementedRPCServer
	connect    func(context.Context, *pb.ConnectionRequest) (*pb.ConnectionResponse, error)
	command    func(context.Context, *pb.CommandMessage) (*pb.CommandResponse, error)
	disconnect func(context.Context, *pb.DisconnectRequest) (*pb.DisconnectResponse, error)
}

func (a *fakeApp) Connect(ctx context.Context, in *pb.ConnectionRequest) (*pb.ConnectionResponse, error) {
	if a.connect == nil {
		return a.UnimplementedRPCServer.Connect(ctx, in)
	}
	return a.connect(ctx, in)
}

func (a *fakeApp) Command(ctx context.Context, in *pb.CommandMessage) (*pb.CommandResponse, error) {
	if a.command == nil {
		return a.UnimplementedRPCServer.Command(ctx, in)
	}
	return a.command(ctx, in)
}

func (a *fakeApp) Disconnect(ctx context.Context, in *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
	if a.disconnect == nil {
		return a.UnimplementedRPCServer.Disconnect(ctx, in)
	}
	return a.disconnect(ctx, in)
}

// serve runs app on 127.0.0.1 until the test ends and returns its URL.
func serve(t *testing.T, app *fakeApp) string {
	t.Helper()
	return serveAt(t, "127.0.0.1:0", app)
}

// serveAt is serve on a chosen address.
func serveAt(t *testing.T, addr string, app *fakeApp) string {
	t.Helper()
	return grpctest.Serve(t, addr, app)
}

// newClient returns a client for cfg that the test closes.
func newClient(t *testing.T, cfg rpc.Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// seen keeps the last request a server handler saw, for the test to read
// after the call: the network between them is no synchronization the race
// detector knows of.
type seen[T any] struct {
	mu sync.Mutex
	v  T
}

func (s *seen[T]) set(v T) { s.mu.Lock(); s.v = v; s.mu.Unlock() }
func (s *seen[T]) get() T  { s.mu.Lock(); defer s.mu.Unlock(); return s.v }

// protov returns the "protov" metadata a call came with.
func protov(ctx context.Context) []string {
	md, _ := metadata.FromIncomingContext(ctx)
	return md.Get("protov")
}

// TestConnect: the env goes out field by field with protov v1, and both a
// success and a refusal come back with their identifiers, transmissions
// and state.
func TestConnect(t *testing.T) {
	var got seen[*pb.ConnectionRequest]
	var gotV seen[[]string]
	url := serve(t, &fakeApp{connect: func(ctx context.Context, in *pb.ConnectionRequest) (*pb.ConnectionResponse, error) {
		got.set(in)
		gotV.set(protov(ctx))
		if in.GetEnv().GetHeaders()["cookie"] != "user=7" {
			return &pb.ConnectionResponse{Status: pb.Status_FAILURE, Transmissions: []string{`{"type":"disconnect","reason":"unauthorized"}`}, ErrorMsg: "no user"}, nil
		}
		return &pb.ConnectionResponse{
			Status:        pb.Status_SUCCESS,
			Identifiers:   `{"current_user":"7"}`,
			Transmissions: []string{`{"type":"welcome"}`},
			Env:           &pb.EnvResponse{Cstate: map[string]string{"locale": "fr"}},
		}, nil
	}})
	c := newClient(t, rpc.Config{URL: url})

	r, err := c.Connect(t.Context(), &rpc.ConnectRequest{Env: rpc.Env{
		URL:     "ws://example.com/cable?room=1",
		Headers: map[string]string{"cookie": "user=7", "x-api-token": "t"},
		CState:  map[string]string{"seen": "1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != rpc.Success || r.Identifiers != `{"current_user":"7"}` || len(r.Transmissions) != 1 || r.Transmissions[0] != `{"type":"welcome"}` ||
		r.Env == nil || r.Env.CState["locale"] != "fr" {
		t.Fatalf("success: %+v env %+v", r, r.Env)
	}
	if e := got.get().GetEnv(); e.GetUrl() != "ws://example.com/cable?room=1" || e.GetHeaders()["x-api-token"] != "t" || e.GetCstate()["seen"] != "1" {
		t.Fatalf("request env: %v", e)
	}
	if v := gotV.get(); len(v) != 1 || v[0] != "v1" {
		t.Fatalf("protov metadata %q, want [v1]", v)
	}

	r, err = c.Connect(t.Context(), &rpc.ConnectRequest{Env: rpc.Env{URL: "ws://example.com/cable"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != rpc.Failure || r.ErrorMsg != "no user" || r.Identifiers != "" || len(r.Transmissions) != 1 || r.Env != nil {
		t.Fatalf("failure: %+v", r)
	}
}

// TestCommand: a command goes out with its identifiers, data and istate,
// and the streams to join and leave, the flags and the state come back.
func TestCommand(t *testing.T) {
	var last seen[*pb.CommandMessage]
	url := serve(t, &fakeApp{command: func(ctx context.Context, in *pb.CommandMessage) (*pb.CommandResponse, error) {
		last.set(in)
		return &pb.CommandResponse{
			Status:         pb.Status_SUCCESS,
			Disconnect:     true,
			StopStreams:    true,
			Streams:        []string{"chat_1", "chat_2"},
			StoppedStreams: []string{"chat_0"},
			Transmissions:  []string{`{"type":"confirm_subscription"}`},
			Env:            &pb.EnvResponse{Istate: map[string]string{"count": "2"}, Cstate: map[string]string{"k": "v"}},
			Presence:       &pb.PresenceResponse{Type: "join", Id: "7"},
		}, nil
	}})
	c := newClient(t, rpc.Config{URL: url})
	r, err := c.Command(t.Context(), &rpc.CommandRequest{
		Command:               "message",
		Identifier:            `{"channel":"ChatChannel"}`,
		ConnectionIdentifiers: `{"current_user":"7"}`,
		Data:                  `{"action":"speak"}`,
		Env:                   rpc.Env{URL: "ws://x/cable", IState: map[string]string{"count": "1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := last.get()
	if got.GetCommand() != "message" || got.GetIdentifier() != `{"channel":"ChatChannel"}` || got.GetConnectionIdentifiers() != `{"current_user":"7"}` ||
		got.GetData() != `{"action":"speak"}` || got.GetEnv().GetUrl() != "ws://x/cable" || got.GetEnv().GetIstate()["count"] != "1" {
		t.Fatalf("request: %v", got)
	}
	if r.Status != rpc.Success || !r.Disconnect || !r.StopStreams || len(r.Streams) != 2 || r.Streams[1] != "chat_2" ||
		len(r.StoppedStreams) != 1 || r.StoppedStreams[0] != "chat_0" || r.Transmissions[0] != `{"type":"confirm_subscription"}` ||
		r.Env.IState["count"] != "2" || r.Env.CState["k"] != "v" {
		t.Fatalf("answer: %+v env %+v", r, r.Env)
	}
}

// TestDisconnect: the identifiers, subscriptions and env go out.
func TestDisconnect(t *testing.T) {
	var last seen[*pb.DisconnectRequest]
	url := serve(t, &fakeApp{disconnect: func(ctx context.Context, in *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
		last.set(in)
		return &pb.DisconnectResponse{Status: pb.Status_SUCCESS}, nil
	}})
	c := newClient(t, rpc.Config{URL: url})
	r, err := c.Disconnect(t.Context(), &rpc.DisconnectRequest{
		Identifiers:   `{"current_user":"7"}`,
		Subscriptions: []string{"A", "B"},
		Env:           rpc.Env{URL: "ws://x/cable", CState: map[string]string{"k": "v"}},
	})
	if err != nil || r.Status != rpc.Success {
		t.Fatalf("%+v %v", r, err)
	}
	got := last.get()
	if got.GetIdentifiers() != `{"current_user":"7"}` || len(got.GetSubscriptions()) != 2 || got.GetSubscriptions()[1] != "B" ||
		got.GetEnv().GetCstate()["k"] != "v" {
		t.Fatalf("request: %v", got)
	}
}

// TestErrorStatusIsAnAnswer: status ERROR is the application's answer,
// returned as a response and not as an error, as the HTTP client does.
func TestErrorStatusIsAnAnswer(t *testing.T) {
	url := serve(t, &fakeApp{
		connect: func(context.Context, *pb.ConnectionRequest) (*pb.ConnectionResponse, error) {
			return &pb.ConnectionResponse{Status: pb.Status_ERROR, ErrorMsg: "boom"}, nil
		},
		command: func(context.Context, *pb.CommandMessage) (*pb.CommandResponse, error) {
			return &pb.CommandResponse{Status: pb.Status_ERROR, ErrorMsg: "boom"}, nil
		},
		disconnect: func(context.Context, *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
			return &pb.DisconnectResponse{Status: pb.Status_ERROR, ErrorMsg: "boom"}, nil
		},
	})
	c := newClient(t, rpc.Config{URL: url})
	ctx := t.Context()
	if r, err := c.Connect(ctx, &rpc.ConnectRequest{}); err != nil || r.Status != rpc.Error || r.ErrorMsg != "boom" {
		t.Errorf("connect: %+v %v", r, err)
	}
	if r, err := c.Command(ctx, &rpc.CommandRequest{}); err != nil || r.Status != rpc.Error || r.ErrorMsg != "boom" {
		t.Errorf("command: %+v %v", r, err)
	}
	if r, err := c.Disconnect(ctx, &rpc.DisconnectRequest{}); err != nil || r.Status != rpc.Error || r.ErrorMsg != "boom" {
		t.Errorf("disconnect: %+v %v", r, err)
	}
}

// TestUnavailable: a server that is down, slower than the timeout, or
// failing the call gives rpc.ErrUnavailable, and soon.
func TestUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "grpc://" + ln.Addr().String()
	_ = ln.Close()
	slow := serve(t, &fakeApp{command: func(ctx context.Context, _ *pb.CommandMessage) (*pb.CommandResponse, error) {
		select {
		case <-time.After(5 * time.Second):
			return &pb.CommandResponse{Status: pb.Status_SUCCESS}, nil
		case <-ctx.Done(): // the client's deadline, passed on; it has given up
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}})
	failing := serve(t, &fakeApp{command: func(context.Context, *pb.CommandMessage) (*pb.CommandResponse, error) {
		return nil, status.Error(codes.Internal, "the handler raised")
	}})
	unimplemented := serve(t, &fakeApp{})
	for name, url := range map[string]string{"down": down, "slow": slow, "failing": failing, "unimplemented": unimplemented} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, rpc.Config{URL: url, Timeout: 200 * time.Millisecond})
			start := time.Now()
			r, err := c.Command(t.Context(), &rpc.CommandRequest{Command: "subscribe"})
			if !errors.Is(err, rpc.ErrUnavailable) || r != nil {
				t.Fatalf("got %+v %v, want rpc.ErrUnavailable", r, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("took %v with a 200ms timeout", d)
			}
		})
	}
	t.Run("closed", func(t *testing.T) {
		c := newClient(t, rpc.Config{URL: failing})
		_ = c.Close()
		if _, err := c.Disconnect(t.Context(), &rpc.DisconnectRequest{}); !errors.Is(err, rpc.ErrUnavailable) {
			t.Fatalf("after Close: %v", err)
		}
	})
}

// TestRecovers: once a server that was down comes up, calls get through
// within a few seconds, without a new client.
func TestRecovers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newClient(t, rpc.Config{URL: "grpc://" + addr, Timeout: 200 * time.Millisecond})
	if _, err := c.Disconnect(t.Context(), &rpc.DisconnectRequest{}); !errors.Is(err, rpc.ErrUnavailable) {
		t.Fatalf("while down: %v", err)
	}
	serveAt(t, addr, &fakeApp{disconnect: func(context.Context, *pb.DisconnectRequest) (*pb.DisconnectResponse, error) {
		return &pb.DisconnectResponse{Status: pb.Status_SUCCESS}, nil
	}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.Disconnect(t.Context(), &rpc.DisconnectRequest{})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 10s after the server came up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConcurrency: never more than Concurrency calls reach the server at
// once; the callers beyond wait for a slot, or give up with their context.
func TestConcurrency(t *testing.T) {
	const limit, callers = 3, 12
	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	url := serve(t, &fakeApp{command: func(ctx context.Context, _ *pb.CommandMessage) (*pb.CommandResponse, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &pb.CommandResponse{Status: pb.Status_SUCCESS}, nil
	}})
	c := newClient(t, rpc.Config{URL: url, Concurrency: limit, Timeout: 10 * time.Second})

	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			_, err := c.Command(t.Context(), &rpc.CommandRequest{})
			errs <- err
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for inFlight.Load() < limit && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // give an excess call the time to show
	if n := inFlight.Load(); n != limit {
		t.Fatalf("%d calls in flight, want %d", n, limit)
	}

	// A caller who cannot get a slot gives up when its context does.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Command(ctx, &rpc.CommandRequest{}); !errors.Is(err, rpc.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting caller: %v", err)
	}

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if p := peak.Load(); p != limit {
		t.Fatalf("peak %d calls in flight, want %d", p, limit)
	}
}

// TestNew: only grpc:// and grpcs:// URLs with a host and port are taken.
func TestNew(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"grpc://localhost:50051", true},
		{"grpc://127.0.0.1:50051/", true},
		{"grpcs://rpc.example.com:443", true},
		{"grpc://[::1]:50051", true},
		{"localhost:50051", false},
		{"http://localhost:50051", false},
		{"grpc://localhost", false},
		{"grpc://:50051", false},
		{"grpc://localhost:50051/anycable", false},
		{"grpc://localhost:50051?x=1", false},
		{"grpc://u:p@localhost:50051", false},
		{"", false},
	} {
		c, err := New(rpc.Config{URL: tc.url})
		if (err == nil) != tc.ok {
			t.Errorf("New(%q): %v, want ok %v", tc.url, err, tc.ok)
		}
		if c != nil {
			_ = c.Close()
		}
	}
}
