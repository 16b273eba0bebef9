package cable

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
	"github.com/huddle-rt/huddle/internal/transport"
)

// EventsPath is where Action Cable channels are served as server-sent
// events, as anycable-go serves them.
const EventsPath = "/events"

// eventMode is how an SSE response writes Action Cable messages.
type eventMode uint8

const (
	evNone   eventMode = iota // a WebSocket: no events
	evUnwrap                  // GET: a broadcast's data is its "message" alone
	evFull                    // POST: a broadcast's data is the whole message
	evRaw                     // GET with raw=1: broadcasts only, no typed events
)

// noReconnect is the retry (ms) sent with a disconnect that must not be
// retried: EventSource reconnects by itself, so it is told to wait a year.
const noReconnect = "31536000000"

// maxHeld bounds what an SSE response holds before its status is known.
const maxHeld = 1 << 20

// ServeEvents answers a request to EventsPath (head is its request line and
// headers, the body is tc.RequestBody()) and returns the session of the
// response. The response's status waits until the connection is accepted
// and its subscriptions confirmed (200), or refused (401) or rejected
// (400). Errors, preflights and bad requests are written to w.
func (f *Frontend) ServeEvents(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, writeStatus(w, http.StatusBadRequest, "", "malformed request")
	}
	origin := req.Header.Get("Origin")
	r := &transport.Request{Path: req.URL.Path, Query: req.URL.Query(), Host: req.Host, Header: http.Header{}}
	if v := req.Header.Values("Origin"); len(v) > 0 {
		r.Origins = v
	}
	for _, k := range append([]string{"Authorization", "X-Jid"}, f.cfg.RPCHeaders...) {
		for _, v := range req.Header.Values(k) {
			r.Header.Add(k, v)
		}
	}
	if f.cfg.Gate != nil {
		if err := f.cfg.Gate(r); err != nil {
			if f.cfg.Refused != nil {
				f.cfg.Refused()
			}
			status := http.StatusBadRequest
			var rf *transport.Refusal
			if errors.As(err, &rf) {
				status = rf.Status
			}
			return nil, writeStatus(w, status, "", err.Error())
		}
	}
	// The gate let the origin in: the browser may read the response.
	switch req.Method {
	case http.MethodOptions:
		_, _ = io.WriteString(w, "HTTP/1.1 204 No Content\r\n"+corsHeaders(origin)+
			"Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"+
			"Access-Control-Allow-Headers: Authorization, Content-Type, Last-Event-ID, X-JID\r\n"+
			"Access-Control-Max-Age: 600\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		return nil, errors.New("preflight answered")
	case http.MethodGet, http.MethodPost:
	default:
		return nil, writeStatus(w, http.StatusMethodNotAllowed, "Allow: GET, POST, OPTIONS\r\n"+corsHeaders(origin), "use GET or POST")
	}
	mode := evFull
	var cmds [][]byte
	if req.Method == http.MethodGet {
		mode = evUnwrap
		if flag(r.Query.Get("raw")) {
			mode = evRaw
		}
		cmd, err := getSubscribe(r.Query, req.Header.Get("Last-Event-ID"))
		if err != nil {
			return nil, writeStatus(w, http.StatusBadRequest, corsHeaders(origin), err.Error())
		}
		cmds = [][]byte{cmd}
	} else {
		cmds, err = postCommands(tc.RequestBody())
		if err != nil {
			return nil, writeStatus(w, http.StatusBadRequest, corsHeaders(origin), err.Error())
		}
	}
	c := &conn{fe: f, d: wire.ExtJSON, start: new(startState), ev: mode, sse: &sseState{cmds: cmds, out: eventFramer{mode: mode, expect: len(cmds), cors: corsHeaders(origin)}}}
	c.Init(tc, f.node, c, f.formats[c.d])
	var creds savedSession
	c.start.who, c.start.err = f.identify(r, &creds)
	if f.cfg.RPC != nil {
		u := "http://" + r.Host + r.Path
		if len(r.Query) > 0 {
			u += "?" + r.Query.Encode()
		}
		c.rpc = &rpcConn{env: f.requestEnv(&requestInfo{url: u, header: r.Header, remoteIP: tc.RemoteIP()}), sid: uuid.NewString(), jid: creds.JID != ""}
	}
	tc.SetFraming(transport.Framed)
	return c, nil
}

// sseState is what an SSE response adds to a connection.
type sseState struct {
	cmds [][]byte    // the subscribe commands, until they run
	out  eventFramer // owned by the connection's writer
}

// sseSubscribe runs an SSE response's subscribe commands, once its
// connection is accepted.
func (c *conn) sseSubscribe() {
	if c.sse == nil {
		return
	}
	cmds := c.sse.cmds
	c.sse.cmds = nil
	for _, cmd := range cmds {
		c.OnMessage(cmd)
	}
}

// Append implements transport.Framer for an SSE response.
func (c *conn) Append(dst, msg []byte) ([]byte, bool) { return c.sse.out.Append(dst, msg) }

// End implements transport.Framer for an SSE response.
func (c *conn) End(dst []byte) []byte { return c.sse.out.End(dst) }

// getSubscribe builds the subscribe command of a GET request: the channel
// is named by identifier, channel, stream, signed_stream or
// turbo_signed_stream_name (the first present wins), history_since asks
// for the history since a unix time, and Last-Event-ID
// ("offset/epoch/stream") resumes a stream after the last event received.
func getSubscribe(q url.Values, lastID string) ([]byte, error) {
	identifier := q.Get("identifier")
	var id map[string]string
	switch {
	case identifier != "":
	case q.Get("channel") != "":
		id = map[string]string{"channel": q.Get("channel")}
	case q.Get("stream") != "":
		id = map[string]string{"channel": wire.PubSubChannel, "stream_name": q.Get("stream")}
	case q.Get("signed_stream") != "":
		id = map[string]string{"channel": wire.PubSubChannel, "signed_stream_name": q.Get("signed_stream")}
	case q.Get("turbo_signed_stream_name") != "":
		id = map[string]string{"channel": wire.TurboChannel, "signed_stream_name": q.Get("turbo_signed_stream_name")}
	default:
		return nil, errors.New("name a channel: identifier, channel, stream, signed_stream or turbo_signed_stream_name")
	}
	if id != nil {
		b, _ := json.Marshal(id)
		identifier = string(b)
	}
	type position struct {
		Offset uint64 `json:"offset"`
		Epoch  string `json:"epoch"`
	}
	type history struct {
		Since   int64               `json:"since,omitempty"`
		Streams map[string]position `json:"streams,omitempty"`
	}
	cmd := struct {
		Command    string   `json:"command"`
		Identifier string   `json:"identifier"`
		History    *history `json:"history,omitempty"`
	}{Command: "subscribe", Identifier: identifier}
	if parts := strings.SplitN(lastID, "/", 3); len(parts) == 3 {
		off, err := strconv.ParseUint(parts[0], 10, 64)
		if err != nil || parts[1] == "" || parts[2] == "" {
			return nil, errors.New("Last-Event-ID is not offset/epoch/stream")
		}
		cmd.History = &history{Streams: map[string]position{parts[2]: {Offset: off, Epoch: parts[1]}}}
	}
	if s := q.Get("history_since"); s != "" {
		since, err := strconv.ParseInt(s, 10, 64)
		if err != nil || since < 0 {
			return nil, errors.New("history_since is not a unix time in seconds")
		}
		if cmd.History == nil {
			cmd.History = &history{}
		}
		cmd.History.Since = since
	}
	return json.Marshal(cmd)
}

// maxPostCommands bounds the subscribe commands of one POST request.
const maxPostCommands = 64

// postCommands reads a POST request's body: subscribe commands, one JSON
// object a line.
func postCommands(body []byte) ([][]byte, error) {
	var cmds [][]byte
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		cmd, err := wire.DecodeCommand(wire.ExtJSON, line)
		if err != nil {
			return nil, errors.New("line " + strconv.Itoa(len(cmds)+1) + " is not a command: " + err.Error())
		}
		if cmd.Kind != wire.CmdSubscribe {
			return nil, errors.New("line " + strconv.Itoa(len(cmds)+1) + " is not a subscribe command")
		}
		if len(cmds) == maxPostCommands {
			return nil, errors.New("more than " + strconv.Itoa(maxPostCommands) + " commands")
		}
		cmds = append(cmds, append([]byte(nil), line...))
	}
	if len(cmds) == 0 {
		return nil, errors.New("no subscribe command in the body (JSON lines)")
	}
	return cmds, nil
}

func flag(v string) bool {
	switch strings.ToLower(v) {
	case "1", "t", "true", "y", "yes":
		return true
	}
	return false
}

// corsHeaders lets a page of origin (one the gate admitted) read the
// response, cookies included.
func corsHeaders(origin string) string {
	if origin == "" {
		return ""
	}
	return "Access-Control-Allow-Origin: " + origin + "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
}

// statusHead is a complete response with a status and a one-line reason as
// its body.
func statusHead(status int, headers, reason string) string {
	body := reason + "\n"
	return "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" + headers +
		"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// writeStatus writes statusHead to w and returns the refusal as an error.
func writeStatus(w io.Writer, status int, headers, reason string) error {
	_, _ = io.WriteString(w, statusHead(status, headers, reason))
	return transport.Refuse(status, reason)
}

// streamHead opens a 200 response of events. Its body ends when the
// connection closes.
func streamHead(cors string) string {
	return "HTTP/1.1 200 OK\r\n" + cors +
		"Content-Type: text/event-stream; charset=utf-8\r\n" +
		"Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0\r\n" +
		"X-Accel-Buffering: no\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
}

// eventFramer writes an SSE response (transport.Framer): the status line
// once it is known, then each Action Cable message as an event. Broadcasts
// arrive as events already (see Frontend.ident); the rest as JSON.
type eventFramer struct {
	mode      eventMode
	cors      string
	expect    int // subscriptions to confirm before the 200
	confirmed int
	open      bool   // the 200 is out
	held      []byte // events before the 200
}

// Append implements transport.Framer.
func (e *eventFramer) Append(dst, msg []byte) ([]byte, bool) {
	if len(msg) == 0 {
		return dst, false
	}
	var probe struct {
		Type      string `json:"type"`
		Reason    string `json:"reason"`
		Reconnect bool   `json:"reconnect"`
	}
	if msg[0] == '{' {
		_ = json.Unmarshal(msg, &probe)
	}
	if e.open {
		return appendEvent(dst, e.mode, msg), probe.Type == "disconnect"
	}
	switch probe.Type {
	case "ping":
		return dst, false // nothing to keep alive yet
	case string(wire.RejectSubscription):
		return append(dst, statusHead(http.StatusBadRequest, e.cors, "subscription rejected")...), true
	case "disconnect":
		status, why := http.StatusServiceUnavailable, "unavailable: "+probe.Reason
		if probe.Reason == wire.ReasonUnauthorized || probe.Reason == wire.ReasonTokenExpired {
			status, why = http.StatusUnauthorized, probe.Reason
		}
		return append(dst, statusHead(status, e.cors, why)...), true
	case string(wire.ConfirmSubscription):
		e.confirmed++
	}
	e.held = appendEvent(e.held, e.mode, msg)
	if len(e.held) > maxHeld {
		return append(dst, statusHead(http.StatusServiceUnavailable, e.cors, "too much before the subscription was confirmed")...), true
	}
	if e.confirmed < e.expect {
		return dst, false
	}
	e.open = true
	dst = append(dst, streamHead(e.cors)...)
	dst = append(dst, e.held...)
	e.held = nil
	return dst, false
}

// End implements transport.Framer: a response closed before its status
// was known says why.
func (e *eventFramer) End(dst []byte) []byte {
	if e.open {
		return dst
	}
	return append(dst, statusHead(http.StatusServiceUnavailable, e.cors, "closed before the subscription was confirmed")...)
}

// appendEvent appends the Action Cable message msg as a server-sent event:
// a typed message as "event: <type>" with the message as its data (none in
// raw mode, where a ping becomes a comment, to keep the response alive), a
// broadcast as its data (its "message" alone when unwrapping; a string
// message as the string itself), with "id: offset/epoch/stream" when it
// has a stream position. Bytes that are not a JSON object are an event
// already and appended as they are.
func appendEvent(dst []byte, mode eventMode, msg []byte) []byte {
	if len(msg) == 0 || msg[0] != '{' {
		return append(dst, msg...)
	}
	var m struct {
		Type      string          `json:"type"`
		Reconnect bool            `json:"reconnect"`
		Message   json.RawMessage `json:"message"`
		StreamID  string          `json:"stream_id"`
		Epoch     string          `json:"epoch"`
		Offset    uint64          `json:"offset"`
	}
	if json.Unmarshal(msg, &m) != nil {
		return dst
	}
	if m.Type != "" {
		if mode == evRaw {
			if m.Type == "ping" {
				return append(dst, ": ping\n\n"...)
			}
			return dst
		}
		dst = append(dst, "event: "...)
		dst = append(dst, m.Type...)
		dst = append(dst, '\n')
		dst = appendData(dst, msg)
		if m.Type == "disconnect" && !m.Reconnect {
			dst = append(dst, "retry: "+noReconnect+"\n"...)
		}
		return append(dst, '\n')
	}
	data := msg
	if mode != evFull && m.Message != nil {
		data = m.Message
		var s string
		if data[0] == '"' && json.Unmarshal(data, &s) == nil {
			data = []byte(s)
		}
	}
	dst = appendData(dst, data)
	if m.Offset > 0 && m.Epoch != "" && m.StreamID != "" {
		dst = append(dst, "id: "...)
		dst = strconv.AppendUint(dst, m.Offset, 10)
		dst = append(dst, '/')
		dst = append(dst, m.Epoch...)
		dst = append(dst, '/')
		dst = append(dst, m.StreamID...)
		dst = append(dst, '\n')
	}
	return append(dst, '\n')
}

// appendData appends data as "data:" lines, one per line of data (LF, CR
// and CRLF all end a line in an event stream).
func appendData(dst, data []byte) []byte {
	for {
		dst = append(dst, "data: "...)
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			dst = append(dst, data...)
			return append(dst, '\n')
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}
