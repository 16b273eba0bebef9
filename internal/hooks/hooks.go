// Package hooks is the HTTP client by which Huddle asks the application
// about its /ws clients: whether a connection is accepted and as whom
// (connect), whether a subscription is allowed (subscribe), and whether a
// client's publication is stored, and with what data (publish). It defines
// the JSON bodies of those calls and maps their outcomes to protocol codes.
//
// Each call is a POST of a JSON body to the hook's URL, with the secret, if
// any, as a bearer token. An answer is an HTTP 2xx whose JSON body has a
// boolean "allow". A refusal ("allow": false) is the application's answer
// and comes back as a *Denied error; anything that is not an answer (the
// application is down, slower than the timeout, answers another status or
// a body without "allow") wraps ErrUnavailable, which clients should retry.
//
// It bounds the calls in flight (callers beyond the bound wait for a slot
// within their timeout) and gives each call a timeout. It knows nothing of
// connections, their queues or the stream rules that route calls here.
package hooks

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
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/internal/tracing"
	"github.com/huddle-rt/huddle/protocol"
)

// ErrUnavailable wraps every failure to get an answer: the application is
// down, slower than the timeout, answered a status other than 2xx, or a
// body that is not an answer.
var ErrUnavailable = errors.New("hook unavailable")

// ErrNoHook is returned for a call to a hook whose URL is not set.
var ErrNoHook = errors.New("hook not configured")

// Denied is the error of a call the application refused.
type Denied struct {
	// Reason is the application's reason, cut to MaxReason bytes; it may be
	// empty.
	Reason string
}

func (d *Denied) Error() string {
	if d.Reason == "" {
		return "denied by the application"
	}
	return "denied by the application: " + d.Reason
}

// MaxReason bounds a refusal's reason: a close frame holds 123 bytes.
const MaxReason = 123

// Code maps a call's error to the code a client is answered with: 4003
// for a refusal, 4500 (retry) for anything else. A refused connect closes
// with 4001 instead; the caller decides that.
func Code(err error) protocol.Code {
	var d *Denied
	if errors.As(err, &d) {
		return protocol.CodeForbidden
	}
	return protocol.CodeInternal
}

// Default values of Config.
const (
	DefaultTimeout     = 3 * time.Second
	DefaultConcurrency = 28
)

// DefaultHeaders are the upgrade request headers a connect call carries
// unless Config.Headers says otherwise: the cookie and authorization that
// identify a user, where the page came from, and any X- header (the
// forwarding headers of a proxy, request ids).
var DefaultHeaders = []string{"Cookie", "Authorization", "Origin", "User-Agent", "X-*"}

// Config configures a Client. At least one URL must be set.
type Config struct {
	// ConnectURL, SubscribeURL and PublishURL are the hooks' http(s) URLs
	// (--connect-hook, --subscribe-hook, --publish-hook). Empty: no such
	// hook.
	ConnectURL   string
	SubscribeURL string
	PublishURL   string
	// Secret is sent with every call as Authorization: Bearer, so the
	// application can tell Huddle's calls from others (--hook-secret).
	// Empty: no Authorization header.
	Secret string
	// ConnectTimeout, SubscribeTimeout and PublishTimeout bound one call
	// of each hook, the wait for a slot included. Default DefaultTimeout.
	ConnectTimeout   time.Duration
	SubscribeTimeout time.Duration
	PublishTimeout   time.Duration
	// Concurrency bounds the calls in flight, all hooks together
	// (--hook-concurrency). Default DefaultConcurrency.
	Concurrency int
	// Headers lists the upgrade request headers a connect call carries:
	// names, any case, or a prefix ending in '*' ("X-*"). Default
	// DefaultHeaders; an empty non-nil list sends none.
	Headers []string
}

// maxResponse bounds an answer's body: a publish answer carries data.
const maxResponse = 4 << 20

// Client calls the application's hooks. It is safe for concurrent use.
type Client struct {
	cfg     Config
	urls    [numHooks]string
	timeout [numHooks]time.Duration
	headers []string // canonical names and prefixes ("X-*")
	http    *http.Client
	sem     chan struct{}
	stats   [numHooks]Stats
}

// Hook names one of the hooks.
type Hook uint8

// The hooks.
const (
	Connect Hook = iota
	Subscribe
	Publish
	numHooks
)

func (h Hook) String() string {
	switch h {
	case Connect:
		return "connect"
	case Subscribe:
		return "subscribe"
	case Publish:
		return "publish"
	}
	return "Hook(" + fmt.Sprint(uint8(h)) + ")"
}

// Stats count a hook's calls.
type Stats struct {
	Calls       atomic.Int64 // calls made, whatever their outcome
	Allowed     atomic.Int64 // answered yes
	Denied      atomic.Int64 // answered with a refusal
	Unavailable atomic.Int64 // no answer (ErrUnavailable)
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg}
	c.urls = [numHooks]string{cfg.ConnectURL, cfg.SubscribeURL, cfg.PublishURL}
	c.timeout = [numHooks]time.Duration{cfg.ConnectTimeout, cfg.SubscribeTimeout, cfg.PublishTimeout}
	some := false
	for h, raw := range c.urls {
		if raw == "" {
			continue
		}
		some = true
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("hooks: %s hook %q is not an http(s) URL", Hook(h), raw)
		}
		if c.timeout[h] <= 0 {
			c.timeout[h] = DefaultTimeout
		}
	}
	if !some {
		return nil, errors.New("hooks: no hook URL set")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	headers := cfg.Headers
	if headers == nil {
		headers = DefaultHeaders
	}
	for _, h := range headers {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if h == "*" || strings.ContainsAny(h, " \t:") || strings.Contains(strings.TrimSuffix(h, "*"), "*") {
			return nil, fmt.Errorf("hooks: header %q: want a name or a prefix ending in '*' such as X-*", h)
		}
		c.headers = append(c.headers, http.CanonicalHeaderKey(h))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Concurrency
	c.http = &http.Client{Transport: tracing.Transport(tr)}
	c.sem = make(chan struct{}, cfg.Concurrency)
	c.cfg = cfg
	return c, nil
}

// Has reports whether hook h has a URL.
func (c *Client) Has(h Hook) bool { return c != nil && h < numHooks && c.urls[h] != "" }

// Timeout returns hook h's timeout.
func (c *Client) Timeout(h Hook) time.Duration { return c.timeout[h] }

// Stats returns hook h's counters.
func (c *Client) Stats(h Hook) *Stats { return &c.stats[h] }

// Headers returns the header names and prefixes ("X-*") a connect call
// carries, in canonical form.
func (c *Client) Headers() []string { return c.headers }

// CollectHeaders returns the headers of h that a connect call carries,
// keyed by lower-case name; several values of one header are joined with
// ", " (with "; " for Cookie).
func (c *Client) CollectHeaders(h http.Header) map[string]string {
	var out map[string]string
	for name, vals := range h {
		if len(vals) == 0 || !c.carries(name) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(h))
		}
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		out[strings.ToLower(name)] = strings.Join(vals, sep)
	}
	return out
}

// carries reports whether a canonical header name is on the list.
func (c *Client) carries(name string) bool {
	for _, h := range c.headers {
		if p, ok := strings.CutSuffix(h, "*"); ok {
			if strings.HasPrefix(name, p) {
				return true
			}
		} else if name == h {
			return true
		}
	}
	return false
}

// ConnectRequest asks whether a connection is accepted.
type ConnectRequest struct {
	// Token is the client's token (connect.token, else ?token= or the
	// upgrade's bearer token); empty when it sent none.
	Token string `json:"token,omitempty"`
	// URL is the upgrade request's path and query.
	URL string `json:"url"`
	// Headers are the upgrade request's headers on the allowlist, keyed by
	// lower-case name.
	Headers map[string]string `json:"headers,omitempty"`
	// Addr is the client's address as the server sees it (host:port); a
	// proxy's, behind one (see its X-Forwarded-For in Headers).
	Addr string `json:"addr,omitempty"`
}

// ConnectResponse is the application's answer to a connect.
type ConnectResponse struct {
	// Allow accepts the connection; false refuses it. Required.
	Allow *bool `json:"allow"`
	// Reason says why a connection is refused.
	Reason string `json:"reason,omitempty"`
	// User is the connection's user id; empty: anonymous.
	User string `json:"user,omitempty"`
	// Info is public user info shown in presence: a JSON object or absent.
	Info json.RawMessage `json:"info,omitempty"`
	// Streams grants ops on streams, as a token's streams claim does:
	// {"doc:42": ["sub","pub"], "user:7:*": ["sub"]}.
	Streams map[string][]string `json:"streams,omitempty"`
	// Exp is when the connection's grant ends (unix seconds; 0: never);
	// past it the connection is closed with 4002 and reconnects.
	Exp float64 `json:"exp,omitempty"`
}

// Expires returns Exp as a time, zero for none.
func (r *ConnectResponse) Expires() time.Time {
	if r.Exp <= 0 {
		return time.Time{}
	}
	sec := int64(r.Exp)
	return time.Unix(sec, int64((r.Exp-float64(sec))*1e9))
}

// SubscribeRequest asks whether a connection may subscribe to a stream.
type SubscribeRequest struct {
	Client string `json:"client"`         // the connection's id (connected.client)
	User   string `json:"user,omitempty"` // its user; empty: anonymous
	Stream string `json:"stream"`
	// Presence says the subscribe asks for presence diffs; Join that it
	// joins the stream's presence.
	Presence bool `json:"presence,omitempty"`
	Join     bool `json:"join,omitempty"`
}

// SubscribeResponse is the application's answer to a subscribe.
type SubscribeResponse struct {
	// Allow allows the subscription; false refuses it. Required.
	Allow  *bool  `json:"allow"`
	Reason string `json:"reason,omitempty"`
	// Info replaces the connection's presence info in this stream (a JSON
	// object); absent: the connect's info.
	Info json.RawMessage `json:"info,omitempty"`
	// Presence grants op presence on the stream (join, update, leave, who)
	// while the connection is subscribed; false leaves it to the grants
	// and rules.
	Presence bool `json:"presence,omitempty"`
}

// PublishRequest asks whether a client's publication is stored.
type PublishRequest struct {
	Client string `json:"client"`
	User   string `json:"user,omitempty"`
	Stream string `json:"stream"`
	// Data is the publication's data as JSON.
	Data json.RawMessage `json:"data"`
}

// PublishResponse is the application's answer to a publish.
type PublishResponse struct {
	// Allow stores the publication; false refuses it. Required.
	Allow  *bool  `json:"allow"`
	Reason string `json:"reason,omitempty"`
	// Data, when present (null included), replaces the publication's data.
	Data json.RawMessage `json:"data,omitempty"`
}

// answer is what every response has.
type answer interface{ allowed() (*bool, string) }

func (r *ConnectResponse) allowed() (*bool, string)   { return r.Allow, r.Reason }
func (r *SubscribeResponse) allowed() (*bool, string) { return r.Allow, r.Reason }
func (r *PublishResponse) allowed() (*bool, string)   { return r.Allow, r.Reason }

// Connect asks the connect hook. A nil error means the connection is
// accepted; a refusal is a *Denied.
func (c *Client) Connect(ctx context.Context, req *ConnectRequest) (*ConnectResponse, error) {
	var resp ConnectResponse
	if err := c.call(ctx, Connect, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Subscribe asks the subscribe hook. A nil error means the subscription is
// allowed; a refusal is a *Denied.
func (c *Client) Subscribe(ctx context.Context, req *SubscribeRequest) (*SubscribeResponse, error) {
	var resp SubscribeResponse
	if err := c.call(ctx, Subscribe, req, &resp); err != nil {
		return nil, err
	}
	if err := checkObject(resp.Info); err != nil {
		c.stats[Subscribe].Unavailable.Add(1)
		return nil, fmt.Errorf("%w: subscribe hook answered an info that %w", ErrUnavailable, err)
	}
	c.stats[Subscribe].Allowed.Add(1)
	return &resp, nil
}

// Publish asks the publish hook. A nil error means the publication is
// stored, with resp.Data instead of its data when that is set; a refusal
// is a *Denied.
func (c *Client) Publish(ctx context.Context, req *PublishRequest) (*PublishResponse, error) {
	var resp PublishResponse
	if err := c.call(ctx, Publish, req, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// checkObject accepts an absent or null value, or a JSON object.
func checkObject(v json.RawMessage) error {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" || v[0] == '{' {
		return nil
	}
	return errors.New("is not a JSON object")
}

// call POSTs req to hook h and decodes the answer into resp, waiting for a
// slot first; the hook's timeout bounds both.
func (c *Client) call(ctx context.Context, h Hook, req any, resp answer) error {
	if !c.Has(h) {
		return fmt.Errorf("hooks: %s: %w", h, ErrNoHook)
	}
	st := &c.stats[h]
	st.Calls.Add(1)
	err := c.do(ctx, h, req, resp)
	if err != nil {
		st.Unavailable.Add(1)
		return err
	}
	allow, reason := resp.allowed()
	if !*allow {
		st.Denied.Add(1)
		return &Denied{Reason: cut(reason, MaxReason)}
	}
	if h != Subscribe { // Subscribe counts once its info is checked too
		st.Allowed.Add(1)
	}
	return nil
}

func (c *Client) do(ctx context.Context, h Hook, req any, resp answer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout[h])
	defer cancel()
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%w: %s hook: waiting for a call slot: %w", ErrUnavailable, h, ctx.Err())
	}
	defer func() { <-c.sem }()
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%w: %s hook: %w", ErrUnavailable, h, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.urls[h], bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %s hook: %w", ErrUnavailable, h, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.cfg.Secret != "" {
		hr.Header.Set("Authorization", "Bearer "+c.cfg.Secret)
	}
	res, err := c.http.Do(hr)
	if err != nil {
		return fmt.Errorf("%w: %s hook: %w", ErrUnavailable, h, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("%w: %s hook: reading the answer: %w", ErrUnavailable, h, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("%w: %s hook answered %s", ErrUnavailable, h, res.Status)
	}
	if len(b) > maxResponse {
		return fmt.Errorf("%w: %s hook answered over %d bytes", ErrUnavailable, h, maxResponse)
	}
	if err := json.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("%w: %s hook answered something that is not its JSON: %w", ErrUnavailable, h, err)
	}
	if allow, _ := resp.allowed(); allow == nil {
		return fmt.Errorf("%w: %s hook answered without \"allow\"", ErrUnavailable, h)
	}
	return nil
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
