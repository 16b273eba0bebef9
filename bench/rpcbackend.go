package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// RPCBackend is a tiny AnyCable application served over HTTP RPC (POST
// <prefix>/connect, /command and /disconnect with the JSON form of
// AnyCable's rpc.proto), for benchmarking a server's RPC path rather
// than an application:
//
//   - connect accepts a connection that names its user (cookie or query
//     parameter BenchUserParam, as the cable adapter sends it with
//     AdapterConfig.Identity) with identifiers {"current_user":USER},
//     and refuses one that does not (status FAILURE);
//   - subscribe to its channel ({"channel":Channel,"stream":S}) from an
//     identified connection answers SUCCESS, stream S and a
//     confirm_subscription transmission; any other channel, or a
//     connection without identifiers, is rejected;
//   - unsubscribe stops the streams, other commands succeed doing
//     nothing, and disconnect succeeds.
//
// It scans the requests by hand and writes the answers from bytes, so
// that its cost per call stays small beside the server's. It counts what
// it answered; GET <prefix>/stats returns the counts as JSON.
type RPCBackend struct {
	prefix, channel, auth string

	counts [rpcCountN]atomic.Int64
	conns  atomic.Int64
	bufs   sync.Pool

	mu     sync.Mutex // guards active, maxIn
	active map[net.Conn]bool
	maxIn  int64
}

// BenchUserParam is the cookie, or URL query parameter, that carries a
// bench client's user name to the RPC backend.
const BenchUserParam = "bench_user"

// DefaultBenchChannel is the application channel RPCBackend serves.
const DefaultBenchChannel = "BenchChannel"

// RPCBackendConfig configures an RPCBackend.
type RPCBackendConfig struct {
	// Prefix is the path the calls go under; default /_anycable.
	Prefix string
	// Secret, when set, must come with every call as "Authorization:
	// Bearer <secret>" (Huddle's --rpc-secret, anycable-go's
	// --http_rpc_secret); calls without it get 401.
	Secret string
	// Channel is the channel it accepts subscriptions to; default
	// DefaultBenchChannel.
	Channel string
}

// RPCCounts is what an RPCBackend answered, by kind.
type RPCCounts struct {
	Connect           int64 `json:"connect"`            // connects accepted
	ConnectRefused    int64 `json:"connect_refused"`    // connects without a user: FAILURE
	Subscribe         int64 `json:"subscribe"`          // subscribes accepted
	SubscribeRejected int64 `json:"subscribe_rejected"` // subscribes refused: another channel, or no identifiers
	OtherCommands     int64 `json:"other_commands"`     // unsubscribe and messages
	Disconnect        int64 `json:"disconnect"`
	Bad               int64 `json:"bad"` // answered 4xx: malformed, unknown path, wrong secret
	// MaxInFlight is the most calls it had at once since it started: its
	// connections between a request's first bytes and the end of its
	// answer (a server's RPC concurrency bound shows here).
	MaxInFlight int64 `json:"max_in_flight"`
	// TCPConns is the connections the servers opened to it since it
	// started (few with keep-alive; about one a call without).
	TCPConns int64 `json:"tcp_conns"`
}

// Calls is every call it answered.
func (c RPCCounts) Calls() int64 {
	return c.Connect + c.ConnectRefused + c.Subscribe + c.SubscribeRejected + c.OtherCommands + c.Disconnect + c.Bad
}

// Sub is c - o for the call counts; the maximum and the connections are
// c's.
func (c RPCCounts) Sub(o RPCCounts) RPCCounts {
	return RPCCounts{
		Connect: c.Connect - o.Connect, ConnectRefused: c.ConnectRefused - o.ConnectRefused,
		Subscribe: c.Subscribe - o.Subscribe, SubscribeRejected: c.SubscribeRejected - o.SubscribeRejected,
		OtherCommands: c.OtherCommands - o.OtherCommands, Disconnect: c.Disconnect - o.Disconnect, Bad: c.Bad - o.Bad,
		MaxInFlight: c.MaxInFlight, TCPConns: c.TCPConns,
	}
}

const (
	rpcConnect = iota
	rpcConnectRefused
	rpcSubscribe
	rpcSubscribeRejected
	rpcOther
	rpcDisconnect
	rpcBad
	rpcCountN
)

// NewRPCBackend returns a backend for cfg.
func NewRPCBackend(cfg RPCBackendConfig) *RPCBackend {
	b := &RPCBackend{prefix: strings.TrimRight(cfg.Prefix, "/"), channel: cfg.Channel}
	if cfg.Prefix == "" {
		b.prefix = "/_anycable"
	}
	if b.channel == "" {
		b.channel = DefaultBenchChannel
	}
	if cfg.Secret != "" {
		b.auth = "Bearer " + cfg.Secret
	}
	b.bufs.New = func() any { return new(rpcBufs) }
	b.active = make(map[net.Conn]bool)
	return b
}

// rpcBufs are one call's buffers.
type rpcBufs struct {
	body, out, s1, s2 []byte
}

// Counts returns what it answered so far.
func (b *RPCBackend) Counts() RPCCounts {
	return RPCCounts{
		Connect: b.counts[rpcConnect].Load(), ConnectRefused: b.counts[rpcConnectRefused].Load(),
		Subscribe: b.counts[rpcSubscribe].Load(), SubscribeRejected: b.counts[rpcSubscribeRejected].Load(),
		OtherCommands: b.counts[rpcOther].Load(), Disconnect: b.counts[rpcDisconnect].Load(), Bad: b.counts[rpcBad].Load(),
		MaxInFlight: b.maxInFlight(), TCPConns: b.conns.Load(),
	}
}

func (b *RPCBackend) maxInFlight() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxIn
}

// connState follows which connections have a call in progress.
func (b *RPCBackend) connState(c net.Conn, s http.ConnState) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch s {
	case http.StateNew:
		b.conns.Add(1)
	case http.StateActive:
		b.active[c] = true
		b.maxIn = max(b.maxIn, int64(len(b.active)))
	default:
		delete(b.active, c)
	}
}

// ServeHTTP answers the calls and GET <prefix>/stats.
func (b *RPCBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	call, ok := strings.CutPrefix(r.URL.Path, b.prefix+"/")
	if !ok {
		b.refuse(w, http.StatusNotFound)
		return
	}
	if r.Method == http.MethodGet && call == "stats" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(b.Counts())
		return
	}
	if r.Method != http.MethodPost {
		b.refuse(w, http.StatusMethodNotAllowed)
		return
	}
	if b.auth != "" && r.Header.Get("Authorization") != b.auth {
		b.refuse(w, http.StatusUnauthorized)
		return
	}
	bufs := b.bufs.Get().(*rpcBufs)
	defer b.bufs.Put(bufs)
	body, err := readBody(bufs.body[:0], r.Body, 1<<20)
	bufs.body = body
	if err != nil {
		b.refuse(w, http.StatusBadRequest)
		return
	}
	var out []byte
	var kind int
	switch call {
	case "connect":
		out, kind = b.connect(bufs, body)
	case "command":
		out, kind = b.command(bufs, body)
	case "disconnect":
		out, kind = append(bufs.out[:0], `{"status":1}`...), rpcDisconnect
	default:
		b.refuse(w, http.StatusNotFound)
		return
	}
	if kind == rpcBad {
		b.refuse(w, http.StatusUnprocessableEntity)
		return
	}
	bufs.out = out
	b.counts[kind].Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

func (b *RPCBackend) refuse(w http.ResponseWriter, code int) {
	b.counts[rpcBad].Add(1)
	http.Error(w, http.StatusText(code), code)
}

// readBody reads r (at most limit bytes) into buf.
func readBody(buf []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if len(buf) > limit {
			return buf, errors.New("body too large")
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// connect answers a connect: SUCCESS with identifiers and a welcome when
// the env names a user, FAILURE and an unauthorized disconnect when not.
func (b *RPCBackend) connect(bufs *rpcBufs, body []byte) ([]byte, int) {
	env, ok := jsonMember(body, "env")
	if !ok {
		return nil, rpcBad
	}
	var user []byte
	if h, ok := jsonMember(env, "headers"); ok {
		if v, ok := jsonMember(h, "cookie"); ok {
			if bufs.s1, ok = jsonText(bufs.s1[:0], v); ok {
				user = cookieValue(bufs.s1, BenchUserParam)
			}
		}
	}
	if user == nil {
		if v, ok := jsonMember(env, "url"); ok {
			if bufs.s2, ok = jsonText(bufs.s2[:0], v); ok {
				user = queryValue(bufs.s2, BenchUserParam)
			}
		}
	}
	out := bufs.out[:0]
	if !validUser(user) {
		out = append(out, `{"status":2,"transmissions":["{\"type\":\"disconnect\",\"reason\":\"unauthorized\",\"reconnect\":false}"]}`...)
		return out, rpcConnectRefused
	}
	// identifiers {"current_user":USER}, itself a JSON string.
	out = append(out, `{"status":1,"identifiers":"{\"current_user\":\"`...)
	out = append(out, user...) // validUser: nothing to escape
	out = append(out, `\"}","transmissions":["{\"type\":\"welcome\"}"]}`...)
	return out, rpcConnect
}

// command answers a channel command.
func (b *RPCBackend) command(bufs *rpcBufs, body []byte) ([]byte, int) {
	o, ok := newJSONObject(body)
	if !ok {
		return nil, rpcBad
	}
	var cmd, ident, ids []byte
	for {
		k, v, ok := o.next()
		if !ok {
			break
		}
		switch string(k) {
		case "command":
			cmd, _, _ = jsonStringValue(v)
		case "identifier":
			ident = v
		case "connection_identifiers":
			ids = v
		}
	}
	if o.bad || ident == nil {
		return nil, rpcBad
	}
	identText, ok := jsonText(bufs.s1[:0], ident)
	bufs.s1 = identText
	if !ok {
		return nil, rpcBad
	}
	out := bufs.out[:0]
	switch string(cmd) {
	case "subscribe":
	case "unsubscribe":
		return append(out, `{"status":1,"stop_streams":true}`...), rpcOther
	default:
		return append(out, `{"status":1}`...), rpcOther
	}
	var user []byte
	if ids != nil {
		var ok bool
		if bufs.s2, ok = jsonText(bufs.s2[:0], ids); ok {
			if v, ok := jsonMember(bufs.s2, "current_user"); ok {
				user, _, _ = jsonStringValue(v)
			}
		}
	}
	var channel, stream []byte
	if id, ok := newJSONObject(identText); ok {
		for {
			k, v, ok := id.next()
			if !ok {
				break
			}
			switch string(k) {
			case "channel":
				channel, _, _ = jsonStringValue(v)
			case "stream":
				stream, _, _ = jsonStringValue(v)
			}
		}
	}
	if !validUser(user) || string(channel) != b.channel || len(stream) == 0 {
		out = append(out, `{"status":2,"transmissions":[`...)
		out = appendReply(out, identText, "reject_subscription")
		return append(out, "]}"...), rpcSubscribeRejected
	}
	out = append(out, `{"status":1,"streams":["`...)
	out = append(out, stream...) // as it came: escaped the same way
	out = append(out, `"],"transmissions":[`...)
	out = appendReply(out, identText, "confirm_subscription")
	return append(out, "]}"...), rpcSubscribe
}

// appendReply appends, as a JSON string, the transmission
// {"identifier":ident,"type":typ}.
func appendReply(out, ident []byte, typ string) []byte {
	t := appendJSONString([]byte(`{"identifier":`), string(ident))
	t = append(t, `,"type":"`...)
	t = append(t, typ...)
	t = append(t, `"}`...)
	return appendJSONString(out, string(t))
}

// jsonMember returns the raw value of obj's member key.
func jsonMember(obj []byte, key string) ([]byte, bool) {
	o, ok := newJSONObject(obj)
	if !ok {
		return nil, false
	}
	for {
		k, v, ok := o.next()
		if !ok {
			return nil, false
		}
		if string(k) == key {
			return v, true
		}
	}
}

// jsonText appends the text of the raw JSON string v to dst.
func jsonText(dst, v []byte) ([]byte, bool) {
	s, esc, ok := jsonStringValue(v)
	if !ok {
		return dst, false
	}
	if !esc {
		return append(dst, s...), true
	}
	return jsonUnescape(dst, s)
}

// cookieValue returns the value of cookie name in a Cookie header.
func cookieValue(h []byte, name string) []byte {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ';'); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		part = bytes.TrimSpace(part)
		if k, v, ok := bytes.Cut(part, []byte{'='}); ok && string(k) == name {
			return v
		}
	}
	return nil
}

// queryValue returns the value of parameter name in a URL's query.
func queryValue(u []byte, name string) []byte {
	i := bytes.IndexByte(u, '?')
	if i < 0 {
		return nil
	}
	q := u[i+1:]
	if j := bytes.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	for len(q) > 0 {
		var part []byte
		if j := bytes.IndexByte(q, '&'); j >= 0 {
			part, q = q[:j], q[j+1:]
		} else {
			part, q = q, nil
		}
		if k, v, ok := bytes.Cut(part, []byte{'='}); ok && string(k) == name {
			return v
		}
	}
	return nil
}

// validUser accepts the user names a bench client sends: 1 to 64 bytes of
// letters, digits and "_.-:" (nothing that would need escaping).
func validUser(u []byte) bool {
	if len(u) == 0 || len(u) > 64 {
		return false
	}
	for _, c := range u {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// Serve answers on ln until ctx is done.
func (b *RPCBackend) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnState:         b.connState,
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// BackendTarget is an RPC backend a server calls during a run.
type BackendTarget struct {
	// StatsURL is its GET <prefix>/stats.
	StatsURL string
	// Pid is its process, for its CPU and RSS; 0: not read.
	Pid int
}

// Counts reads the backend's counts.
func (t *BackendTarget) Counts(ctx context.Context) (RPCCounts, error) {
	var c RPCCounts
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.StatsURL, nil)
	if err != nil {
		return c, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c, fmt.Errorf("bench: GET %s: %s", t.StatsURL, resp.Status)
	}
	return c, json.NewDecoder(resp.Body).Decode(&c)
}

// StatsURLFor is the stats URL of a backend whose RPC base URL is base
// (http://host/prefix).
func StatsURLFor(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	return u.JoinPath("stats").String(), nil
}
