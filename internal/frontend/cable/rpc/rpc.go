// Package rpc is the client side of AnyCable's RPC, by which /cable hands
// connects and channel commands to the application. Over HTTP, each call
// is a POST of the JSON form of AnyCable's rpc.proto message to
// base/connect, base/command or base/disconnect, with the secret as a
// bearer token; over gRPC (package rpc/grpcrpc) it is the anycable.RPC
// service. Both are a Backend.
//
// It bounds the calls in flight (callers beyond the bound wait for a slot
// or their context) and gives each call a timeout. It knows nothing of
// connections or streams.
package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/huddle-rt/huddle/internal/tracing"
)

// Status is a call's outcome.
type Status int

// The statuses of rpc.proto.
const (
	Error   Status = 0 // the call failed unexpectedly
	Success Status = 1 // done
	Failure Status = 2 // refused by the application (a rejected connect or subscription)
)

// UnmarshalJSON takes the status as a number, as AnyCable's servers send
// it, or by its name.
func (s *Status) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		*s = Status(n)
		return nil
	}
	var name string
	if err := json.Unmarshal(b, &name); err != nil {
		return fmt.Errorf("rpc: status %s is neither a number nor a name", b)
	}
	switch strings.ToUpper(name) {
	case "ERROR":
		*s = Error
	case "SUCCESS":
		*s = Success
	case "FAILURE":
		*s = Failure
	default:
		return fmt.Errorf("rpc: unknown status %q", name)
	}
	return nil
}

// Env is the connection as the application sees it.
type Env struct {
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	// CState is connection state the application keeps between calls.
	CState map[string]string `json:"cstate,omitempty"`
	// IState is the state of the subscription a command is about.
	IState map[string]string `json:"istate,omitempty"`
}

// EnvResponse is the state changes a call asks for.
type EnvResponse struct {
	CState map[string]string `json:"cstate,omitempty"`
	IState map[string]string `json:"istate,omitempty"`
}

// ConnectRequest asks the application to accept a connection.
type ConnectRequest struct {
	Env Env `json:"env"`
}

// ConnectResponse is its answer: identifiers (a string the application
// reads back in every later call) and messages for the client.
type ConnectResponse struct {
	Status        Status       `json:"status"`
	Identifiers   string       `json:"identifiers"`
	Transmissions []string     `json:"transmissions"`
	ErrorMsg      string       `json:"error_msg"`
	Env           *EnvResponse `json:"env"`
}

// CommandRequest is a channel command: subscribe, unsubscribe or message.
type CommandRequest struct {
	Command               string `json:"command"`
	Identifier            string `json:"identifier"`
	ConnectionIdentifiers string `json:"connection_identifiers"`
	Data                  string `json:"data"`
	Env                   Env    `json:"env"`
}

// CommandResponse is its answer.
type CommandResponse struct {
	Status         Status       `json:"status"`
	Disconnect     bool         `json:"disconnect"`
	StopStreams    bool         `json:"stop_streams"`
	Streams        []string     `json:"streams"`
	StoppedStreams []string     `json:"stopped_streams"`
	Transmissions  []string     `json:"transmissions"`
	ErrorMsg       string       `json:"error_msg"`
	Env            *EnvResponse `json:"env"`
}

// DisconnectRequest tells the application a connection closed.
type DisconnectRequest struct {
	Identifiers   string   `json:"identifiers"`
	Subscriptions []string `json:"subscriptions"`
	Env           Env      `json:"env"`
}

// DisconnectResponse is its answer.
type DisconnectResponse struct {
	Status   Status `json:"status"`
	ErrorMsg string `json:"error_msg"`
}

// Backend is the application, however it is reached. Every method is safe
// for concurrent use; an error wraps ErrUnavailable when no answer came.
type Backend interface {
	Connect(ctx context.Context, req *ConnectRequest) (*ConnectResponse, error)
	Command(ctx context.Context, req *CommandRequest) (*CommandResponse, error)
	Disconnect(ctx context.Context, req *DisconnectRequest) (*DisconnectResponse, error)
}

var _ Backend = (*Client)(nil)

// sessionKey is the context key of the session id a call is made for.
type sessionKey struct{}

// WithSession returns ctx carrying the id of the session a call is made
// for; it goes to the application as AnyCable's "sid" metadata (the
// X-Anycable-Meta-Sid header over HTTP), for its logs.
func WithSession(ctx context.Context, sid string) context.Context {
	return context.WithValue(ctx, sessionKey{}, sid)
}

// Session returns the session id WithSession put in ctx, or "".
func Session(ctx context.Context) string {
	sid, _ := ctx.Value(sessionKey{}).(string)
	return sid
}

// ProtoVersion is the version of AnyCable's RPC contract spoken, sent as
// the "protov" metadata (X-Anycable-Meta-Protov over HTTP).
const ProtoVersion = "v1"

// ErrAbandoned wraps (with ErrUnavailable) a call its caller gave up on
// before the backend had its own time to answer: while it waited for one of
// the Concurrency slots, or during the call. It says nothing of the
// backend's health.
var ErrAbandoned = errors.New("the caller gave up on the call")

// ErrUnavailable wraps every failure to get an answer: the backend is
// down, slow past the timeout, or answered something that is not one.
var ErrUnavailable = errors.New("rpc backend unavailable")

// Config configures a Client.
type Config struct {
	// URL is the base URL: http(s)://host/path.
	URL string
	// Secret is sent as Authorization: Bearer. Empty: none.
	Secret string
	// Concurrency bounds the calls in flight. Default 28.
	Concurrency int
	// Timeout bounds one call. Default 5s.
	Timeout time.Duration
}

// maxResponse bounds an answer's body.
const maxResponse = 4 << 20

// Client calls the application over HTTP.
type Client struct {
	cfg  Config
	base *url.URL
	http *http.Client
	sem  chan struct{}
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("rpc: %q is not an http(s) URL", cfg.URL)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 28
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	return &Client{cfg: cfg, base: u, http: &http.Client{Transport: tracing.Transport(tr)}, sem: make(chan struct{}, cfg.Concurrency)}, nil
}

// Connect calls base/connect.
func (c *Client) Connect(ctx context.Context, req *ConnectRequest) (*ConnectResponse, error) {
	var resp ConnectResponse
	return &resp, c.call(ctx, "connect", req, &resp)
}

// Command calls base/command.
func (c *Client) Command(ctx context.Context, req *CommandRequest) (*CommandResponse, error) {
	var resp CommandResponse
	return &resp, c.call(ctx, "command", req, &resp)
}

// Disconnect calls base/disconnect.
func (c *Client) Disconnect(ctx context.Context, req *DisconnectRequest) (*DisconnectResponse, error) {
	var resp DisconnectResponse
	return &resp, c.call(ctx, "disconnect", req, &resp)
}

// call POSTs req to base/path and decodes the answer into resp, waiting
// for a slot first.
func (c *Client) call(ctx context.Context, path string, req, resp any) error {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %w: %w", ErrUnavailable, ErrAbandoned, ctx.Err())
	}
	defer func() { <-c.sem }()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base.JoinPath(path).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("X-Anycable-Meta-Protov", ProtoVersion)
	if sid := Session(ctx); sid != "" {
		hr.Header.Set("X-Anycable-Meta-Sid", sid)
	}
	if c.cfg.Secret != "" {
		hr.Header.Set("Authorization", "Bearer "+c.cfg.Secret)
	}
	res, err := c.http.Do(hr)
	if err != nil {
		switch {
		case parent.Err() != nil:
			err = fmt.Errorf("%w: %w", ErrAbandoned, err)
		case ctx.Err() == nil:
			err = Unreachable(err) // refused, reset, no route: worth another try
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	if res.StatusCode != http.StatusOK && res.StatusCode != http.StatusCreated {
		err := fmt.Errorf("%s answered %s", path, res.Status)
		if res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusTooManyRequests {
			err = Unreachable(err) // busy or restarting: worth another try
		}
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := json.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("%w: %s answered something that is not its JSON: %w", ErrUnavailable, path, err)
	}
	return nil
}
