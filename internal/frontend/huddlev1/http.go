package huddlev1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/huddle-rt/huddle/internal/transport"
	"github.com/huddle-rt/huddle/protocol"
)

// huddle.v1 over HTTP, for clients whose WebSocket cannot open (a proxy
// that refuses upgrades) or whose responses are buffered. A session is a
// huddle.v1 connection in the JSON codec whose server-to-client side is a
// response of server-sent events (EventsPath) or a series of long polls
// (PollPath), and whose client-to-server side is POSTs (SendPath), each
// body what a WebSocket text frame would carry. docs/protocol.md
// ("huddle.v1 over HTTP") is the contract.
const (
	EventsPath = Path + "/events" // GET: a session whose messages come as server-sent events
	PollPath   = Path + "/poll"   // GET: open a polled session, or take its messages
	SendPath   = Path + "/send"   // POST: messages to a session
)

// PollWait is how long a poll waits for a message before it answers empty.
const PollWait = 25 * time.Second

// MaxPolled bounds a node's polled sessions; past it a new one gets 503.
const MaxPolled = 50_000

// httpConn is a huddle.v1 session over HTTP.
type httpConn struct {
	conn
	fe   *Frontend
	id   string
	poll bool // messages are taken by polls; else written as events

	mu     sync.Mutex // one POST at a time; guards sent
	sent   uint64     // the last POST's seq
	pollMu sync.Mutex // one poll at a time
	polls  uint64     // answers given to polls
}

var _ transport.Framer = (*httpConn)(nil)

// Append implements transport.Framer: an event per message, or a line per
// message in a poll's answer.
func (c *httpConn) Append(dst, msg []byte) ([]byte, bool) {
	if c.poll {
		dst = append(dst, msg...)
		return append(dst, '\n'), false
	}
	dst = append(dst, "data: "...)
	dst = append(dst, msg...)
	return append(dst, '\n', '\n'), false
}

// End implements transport.Framer: the response (or the poll) just ends.
func (c *httpConn) End(dst []byte) []byte { return dst }

// Closed implements transport.Session: the session is forgotten.
func (c *httpConn) Closed(clean bool) {
	c.fe.sessions.Delete(c.id)
	if c.poll {
		c.fe.polled.Add(-1)
	}
	c.conn.Closed(clean)
}

// UseTransport gives the front-end the transport that holds its polled
// sessions (without one PollPath answers 503), and starts taking the POSTs
// other nodes relay to this node's sessions.
func (f *Frontend) UseTransport(t *transport.Transport) {
	f.tr = t
	f.relayed = make(chan []byte, relayQueue)
	go f.serveRelayed()
	go func() {
		for delay := 100 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := f.node.ListenDirect(ctx, relayName(f.tag), func(p []byte) {
				select {
				case f.relayed <- p:
				default:
					f.node.Logger().Warn("a POST relayed from another node was dropped: too many waiting", "waiting", relayQueue)
				}
			})
			cancel()
			if err == nil {
				return
			}
			f.node.Logger().Warn("cannot take POSTs relayed to this node's HTTP sessions; retrying", "err", err)
			time.Sleep(delay)
		}
	}()
}

// relayQueue bounds the relayed POSTs waiting to be handled.
const relayQueue = 1024

// relayName is the node-to-node channel of the node whose tag is tag.
func relayName(tag string) string { return "huddle.v1/http/" + tag }

// tagLen is the length of a node's tag, the start of its session ids.
const tagLen = 8

// newNodeTag returns a node's tag: its session ids start with it, so that
// a POST that reaches another node can be relayed to it.
func newNodeTag() string {
	var b [tagLen / 2]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newSessionID returns an unguessable session id (the node's tag and 96
// random bits): whoever holds it may send as the session's client.
func (f *Frontend) newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return f.tag + hex.EncodeToString(b[:])
}

// serveRelayed handles the POSTs other nodes relayed here, in order.
func (f *Frontend) serveRelayed() {
	for p := range f.relayed {
		id, rest, _ := bytes.Cut(p, []byte("\n"))
		seqB, body, _ := bytes.Cut(rest, []byte("\n"))
		v, ok := f.sessions.Load(string(id))
		if !ok {
			continue // it ended meanwhile; the client learns at its next request
		}
		seq, _ := strconv.ParseUint(string(seqB), 10, 64)
		if status, why := v.(*httpConn).receive(seq, body); status >= 300 {
			f.node.Logger().Debug("a relayed POST was refused", "status", status, "reason", why)
		}
	}
}

// request is what an HTTP request of a session says, for the gate and the
// connect.
func request(r *http.Request) *transport.Request {
	tr := &transport.Request{Path: r.URL.Path, Query: r.URL.Query(), Host: r.Host, Header: http.Header{}}
	tr.Origins = r.Header.Values("Origin")
	if v := r.Header.Get("Authorization"); v != "" {
		tr.Header.Set("Authorization", v)
	}
	return tr
}

// init sets up c as a session of tc for the request r, as Upgrade does for
// a WebSocket.
func (f *Frontend) initHTTP(c *httpConn, tc *transport.Conn, r *transport.Request) {
	f.initConn(&c.conn, tc, r, protocol.JSON)
	c.fe, c.id = f, f.newSessionID()
	f.sessions.Store(c.id, c)
}

// ServeEvents answers GET EventsPath (head is its request line and
// headers): a session whose messages are written to tc as server-sent
// events. The first event, "session", names it for SendPath.
func (f *Frontend) ServeEvents(tc *transport.Conn, head []byte, w io.Writer) (transport.Session, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, writeRefusal(w, http.StatusBadRequest, "", "malformed request")
	}
	r := request(req)
	cors := corsHeaders(req.Header.Get("Origin"))
	if err := f.gate(r); err != nil {
		return nil, writeRefusal(w, refusalStatus(err), "", err.Error())
	}
	if req.Method != http.MethodGet {
		return nil, writeRefusal(w, http.StatusMethodNotAllowed, "Allow: GET\r\n"+cors, "use GET")
	}
	c := &httpConn{}
	f.initHTTP(c, tc, r)
	tc.SetFraming(transport.Framed)
	_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\n"+cors+
		"Content-Type: text/event-stream; charset=utf-8\r\n"+
		"Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0\r\n"+
		"X-Accel-Buffering: no\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"+
		"event: session\ndata: {\"session\":\""+c.id+"\"}\n\n")
	return c, nil
}

// gate runs the front-end's gate, counting refusals.
func (f *Frontend) gate(r *transport.Request) error {
	if f.cfg.Gate == nil {
		return nil
	}
	err := f.cfg.Gate(r)
	if err != nil && f.cfg.Refused != nil {
		f.cfg.Refused()
	}
	return err
}

func refusalStatus(err error) int {
	var rf *transport.Refusal
	if errors.As(err, &rf) {
		return rf.Status
	}
	return http.StatusBadRequest
}

// corsHeaders lets a page of origin (one the gate admitted) read the
// response.
func corsHeaders(origin string) string {
	if origin == "" {
		return ""
	}
	return "Access-Control-Allow-Origin: " + origin + "\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
}

// writeRefusal writes a complete refusal with a one-line reason and
// returns it as an error.
func writeRefusal(w io.Writer, status int, headers, reason string) error {
	body := reason + "\n"
	_, _ = io.WriteString(w, "HTTP/1.1 "+strconv.Itoa(status)+" "+http.StatusText(status)+"\r\n"+headers+
		"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	return transport.Refuse(status, reason)
}

// ServeHTTP serves PollPath and SendPath.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr := request(r)
	if err := f.gate(tr); err != nil {
		http.Error(w, err.Error(), refusalStatus(err))
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Add("Vary", "Origin")
	}
	w.Header().Set("Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0")
	switch {
	case r.Method == http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
		w.Header().Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == SendPath && r.Method == http.MethodPost:
		f.serveSend(w, r)
	case r.URL.Path == PollPath && r.Method == http.MethodGet:
		f.servePoll(w, r, tr)
	case r.URL.Path == PollPath && r.Method == http.MethodDelete:
		// The client leaves a polled session (for another transport): it
		// ends as a dropped connection would, so presence keeps the
		// client through its grace.
		if c := f.session(w, r); c != nil {
			c.Conn().Destroy()
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		http.Error(w, "use POST "+SendPath+", or GET or DELETE "+PollPath, http.StatusMethodNotAllowed)
	}
}

// session returns the session the request names, or answers 404.
func (f *Frontend) session(w http.ResponseWriter, r *http.Request) *httpConn {
	id := r.URL.Query().Get("session")
	if v, ok := f.sessions.Load(id); ok && id != "" {
		return v.(*httpConn)
	}
	http.Error(w, "unknown session "+transport.Quote(id)+" (it ended): open a new one", http.StatusNotFound)
	return nil
}

// serveSend hands a POST's body to its session as one frame. seq, when
// given, numbers the POSTs from 1: one that comes again (a retry after a
// lost answer) is answered without being handled again, and one that
// skips a number is refused with 409. A POST for a session of another
// node is relayed to it through the broker (202).
func (f *Frontend) serveSend(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("session")
	v, local := f.sessions.Load(id)
	limit := int64(f.node.MaxMessage())
	if local {
		limit = int64(v.(*httpConn).MaxMessage())
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			if local {
				v.(*httpConn).CloseWith(protocol.CodeTooLarge, "message over the limit of "+strconv.FormatInt(limit, 10)+" bytes", false)
			}
			http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var seq uint64
	if s := r.URL.Query().Get("seq"); s != "" {
		if seq, err = strconv.ParseUint(s, 10, 64); err != nil || seq == 0 {
			http.Error(w, "seq is not a positive integer", http.StatusBadRequest)
			return
		}
	}
	if !local {
		if len(id) == tagLen+24 && id[:tagLen] != f.tag {
			p := make([]byte, 0, len(id)+len(body)+24)
			p = append(append(p, id...), '\n')
			p = append(strconv.AppendUint(p, seq, 10), '\n')
			if f.node.SendDirect(relayName(id[:tagLen]), append(p, body...)) {
				w.WriteHeader(http.StatusAccepted) // relayed; the answers come on the session
				return
			}
		}
		http.Error(w, "unknown session "+transport.Quote(id)+" (it ended): open a new one", http.StatusNotFound)
		return
	}
	status, why := v.(*httpConn).receive(seq, body)
	if status >= 300 {
		http.Error(w, why, status)
		return
	}
	w.WriteHeader(status)
}

// receive handles a POST's body (see serveSend) and returns the status to
// answer with.
func (c *httpConn) receive(seq uint64, body []byte) (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case seq != 0 && seq <= c.sent:
		return http.StatusNoContent, "" // handled already
	case seq != 0 && seq != c.sent+1:
		return http.StatusConflict, "seq " + strconv.FormatUint(seq, 10) + " after " + strconv.FormatUint(c.sent, 10) + ": a POST is missing"
	}
	if !c.Conn().Accepting() {
		return http.StatusGone, "the session is closing"
	}
	c.sent = max(c.sent, seq)
	c.Conn().Touch()
	if len(bytes.TrimSpace(body)) > 0 {
		c.OnMessage(body)
	}
	return http.StatusNoContent, ""
}

// servePoll opens a polled session (no session parameter: the answer
// names it) or answers with what its session has queued, waiting up to
// PollWait for something. The answer is huddle.v1 JSON messages, one a
// line; "Huddle-Poll" numbers the answers that carried messages, and the
// next poll must carry that number as ack=: an answer lost on the way cannot be told from a
// message lost, so a poll that does not acknowledge the last answer ends
// the session (the client opens another and recovers its streams).
func (f *Frontend) servePoll(w http.ResponseWriter, r *http.Request, tr *transport.Request) {
	if r.URL.Query().Get("session") == "" {
		if f.tr == nil {
			http.Error(w, "long polling is not available", http.StatusServiceUnavailable)
			return
		}
		// A polled session holds no socket, so nothing else bounds how
		// many a client can open.
		if f.polled.Add(1) > MaxPolled {
			f.polled.Add(-1)
			w.Header().Set("Retry-After", "5")
			http.Error(w, "too many polled sessions on this node", http.StatusServiceUnavailable)
			return
		}
		c := &httpConn{poll: true}
		f.tr.Socketless(func(tc *transport.Conn) transport.Session {
			f.initHTTP(c, tc, tr)
			return c
		})
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"session":"`+c.id+`"}`+"\n")
		return
	}
	c := f.session(w, r)
	if c == nil {
		return
	}
	if !c.poll {
		http.Error(w, "this session's messages come as events, not polls", http.StatusBadRequest)
		return
	}
	if !c.pollMu.TryLock() {
		http.Error(w, "another poll of this session is waiting", http.StatusConflict)
		return
	}
	defer c.pollMu.Unlock()
	tc := c.Conn()
	tc.Touch()
	if ack, _ := strconv.ParseUint(r.URL.Query().Get("ack"), 10, 64); ack != c.polls {
		c.CloseWith(protocol.CodeInsufficientState, "a poll's answer was lost (ack "+strconv.FormatUint(ack, 10)+", sent "+strconv.FormatUint(c.polls, 10)+")", true)
		_, _ = tc.Take(nil)
		http.Error(w, "the last answer was not acknowledged: the session ended, open a new one and recover", http.StatusGone)
		return
	}
	timer := time.NewTimer(PollWait)
	defer timer.Stop()
	var out []byte
	ended := false
	for len(out) == 0 && !ended {
		out, ended = tc.Take(out[:0])
		if len(out) > 0 || ended {
			break
		}
		select {
		case <-tc.Ready():
		case <-timer.C:
			// Nothing to say: an empty answer, which is not counted (losing
			// it loses nothing).
			w.Header().Set("Huddle-Poll", strconv.FormatUint(c.polls, 10))
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
	c.polls++
	w.Header().Set("Huddle-Poll", strconv.FormatUint(c.polls, 10))
	if ended {
		w.Header().Set("Huddle-End", "true")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	_, _ = w.Write(out)
}

// IsHTTPPath reports whether path is one of ServeHTTP's.
func IsHTTPPath(path string) bool {
	path = strings.TrimSuffix(path, "/")
	return path == PollPath || path == SendPath
}
