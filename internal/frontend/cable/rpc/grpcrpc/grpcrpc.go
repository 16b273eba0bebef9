// Package grpcrpc reaches the application over gRPC: it is the rpc.Backend
// for grpc://host:port URLs, a client of AnyCable's anycable.RPC service
// such as an anycable-rails gRPC server.
//
// It behaves as the HTTP client in package rpc does: the calls in flight are
// bounded, each call has a timeout, and every failure to get an answer
// wraps rpc.ErrUnavailable, while an answer with status ERROR is an answer.
//
// Like anycable-go, it sends the "protov" metadata that anycable-rails
// checks before it handles a call. Also like anycable-go, it sends no
// secret over gRPC: AnyCable's gRPC servers do not authenticate callers, so
// Config.Secret is ignored here; keep the RPC port private.
package grpcrpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	pb "github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/anycablepb"
)

// ProtoVersion is the version of AnyCable's RPC schema that anycable.proto
// describes. It goes out with every call as the "protov" metadata, which
// anycable-rails refuses calls without.
const ProtoVersion = "v1"

// The defaults of rpc.Config, the same as the HTTP client's.
const (
	defaultConcurrency = 28
	defaultTimeout     = 5 * time.Second
)

var _ rpc.Backend = (*Client)(nil)

// Client calls the application's anycable.RPC service. It holds one gRPC
// channel, which connects lazily and reconnects on its own; Close ends it.
type Client struct {
	cfg  rpc.Config
	conn *grpc.ClientConn
	rpc  pb.RPCClient
	sem  chan struct{}
}

// New returns a client for cfg. cfg.URL is grpc://host:port, spoken in
// plaintext HTTP/2 as anycable-rails serves it by default, or
// grpcs://host:port, spoken over TLS checked against the system's roots.
// cfg.Secret is not sent (see the package comment). Nothing is dialed yet:
// an unreachable server shows as rpc.ErrUnavailable from the calls.
func New(cfg rpc.Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "grpc" && u.Scheme != "grpcs") || u.Hostname() == "" || u.Port() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("grpcrpc: %q is not a grpc://host:port or grpcs://host:port URL", cfg.URL)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	creds := insecure.NewCredentials()
	if u.Scheme == "grpcs" {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	conn, err := grpc.NewClient(u.Host,
		grpc.WithTransportCredentials(creds),
		// Spread the calls over every address the name resolves to (the
		// pods behind a headless service, say), as anycable-go does.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig": [{"round_robin":{}}]}`),
		// While the server is down, calls fail fast as Unavailable and the
		// channel retries the connection; cap its backoff (gRPC's default
		// is two minutes) so a restarted application is found quickly.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second,
		}}),
		// No keepalive pings: servers with default settings (grpc-go's, the
		// C core's under Ruby) take pings between calls for abuse and drop
		// the connection.
	)
	if err != nil {
		return nil, fmt.Errorf("grpcrpc: %s: %w", cfg.URL, err)
	}
	return &Client{cfg: cfg, conn: conn, rpc: pb.NewRPCClient(conn), sem: make(chan struct{}, cfg.Concurrency)}, nil
}

// Close ends the gRPC channel. Calls in flight fail with
// rpc.ErrUnavailable, and so do later ones.
func (c *Client) Close() error {
	return c.conn.Close()
}

// Connect calls RPC/Connect.
func (c *Client) Connect(ctx context.Context, req *rpc.ConnectRequest) (*rpc.ConnectResponse, error) {
	parent := ctx
	ctx, done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := c.rpc.Connect(ctx, &pb.ConnectionRequest{Env: envToPB(&req.Env)})
	if err != nil {
		return nil, unavailable(parent, "Connect", err)
	}
	return &rpc.ConnectResponse{
		Status:        rpc.Status(r.GetStatus()),
		Identifiers:   r.GetIdentifiers(),
		Transmissions: r.GetTransmissions(),
		ErrorMsg:      r.GetErrorMsg(),
		Env:           envFromPB(r.GetEnv()),
	}, nil
}

// Command calls RPC/Command.
func (c *Client) Command(ctx context.Context, req *rpc.CommandRequest) (*rpc.CommandResponse, error) {
	parent := ctx
	ctx, done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := c.rpc.Command(ctx, &pb.CommandMessage{
		Command:               req.Command,
		Identifier:            req.Identifier,
		ConnectionIdentifiers: req.ConnectionIdentifiers,
		Data:                  req.Data,
		Env:                   envToPB(&req.Env),
	})
	if err != nil {
		return nil, unavailable(parent, "Command", err)
	}
	return &rpc.CommandResponse{
		Status:         rpc.Status(r.GetStatus()),
		Disconnect:     r.GetDisconnect(),
		StopStreams:    r.GetStopStreams(),
		Streams:        r.GetStreams(),
		StoppedStreams: r.GetStoppedStreams(),
		Transmissions:  r.GetTransmissions(),
		ErrorMsg:       r.GetErrorMsg(),
		Env:            envFromPB(r.GetEnv()),
	}, nil
}

// Disconnect calls RPC/Disconnect.
func (c *Client) Disconnect(ctx context.Context, req *rpc.DisconnectRequest) (*rpc.DisconnectResponse, error) {
	parent := ctx
	ctx, done, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := c.rpc.Disconnect(ctx, &pb.DisconnectRequest{
		Identifiers:   req.Identifiers,
		Subscriptions: req.Subscriptions,
		Env:           envToPB(&req.Env),
	})
	if err != nil {
		return nil, unavailable(parent, "Disconnect", err)
	}
	return &rpc.DisconnectResponse{Status: rpc.Status(r.GetStatus()), ErrorMsg: r.GetErrorMsg()}, nil
}

// begin waits for a call slot and returns the context for one call: the
// timeout and the protov metadata. done gives the slot back.
func (c *Client) begin(ctx context.Context) (_ context.Context, done func(), _ error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("%w: %w: %w", rpc.ErrUnavailable, rpc.ErrAbandoned, ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	ctx = metadata.AppendToOutgoingContext(ctx, "protov", ProtoVersion)
	if sid := rpc.Session(ctx); sid != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "sid", sid)
	}
	// The trace context (traceparent) goes to the application as metadata.
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(ctx, carrier)
	for k, v := range carrier {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	return ctx, func() { cancel(); <-c.sem }, nil
}

// unavailable wraps a failed call. Every gRPC error means no answer came
// (the server is unreachable, too slow, refused the call or crashed in it),
// so each is rpc.ErrUnavailable, as every non-answer is for the HTTP client.
// UNAVAILABLE and RESOURCE_EXHAUSTED say the call did not run: those are
// marked rpc.Unreachable, for a retry (anycable-go retries the same two);
// a call its caller's context ended is rpc.ErrAbandoned.
func unavailable(parent context.Context, method string, err error) error {
	switch c := status.Code(err); {
	case parent.Err() != nil: // the caller gave up, not the call's own timeout
		err = fmt.Errorf("%w: %w", rpc.ErrAbandoned, err)
	case c == codes.Unavailable || c == codes.ResourceExhausted:
		err = rpc.Unreachable(err)
	}
	return fmt.Errorf("%w: %s: %w", rpc.ErrUnavailable, method, err)
}

// envToPB converts a request's env. The maps are shared, not copied: the
// message is only read, and only during the call.
func envToPB(e *rpc.Env) *pb.Env {
	return &pb.Env{Url: e.URL, Headers: e.Headers, Cstate: e.CState, Istate: e.IState}
}

// envFromPB converts an answer's env; an absent one stays nil, as a missing
// "env" does in the HTTP client's JSON.
func envFromPB(e *pb.EnvResponse) *rpc.EnvResponse {
	if e == nil {
		return nil
	}
	return &rpc.EnvResponse{CState: e.GetCstate(), IState: e.GetIstate()}
}
