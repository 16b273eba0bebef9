package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// sseAdapter listens to one stream per connection as server-sent events
// (GET /events?stream=S, Huddle's and anycable-go's endpoint) and
// publishes through the HTTP broadcast endpoint, as the cable adapter
// does. A connection is opened by Subscribe: an event stream is one
// request for one stream.
type sseAdapter struct {
	url   *url.URL // http://host:port/events
	token string   // sent as ?token= when set
	bc    *broadcaster
}

func newSSEAdapter(cfg AdapterConfig) (Adapter, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: sse adapter: URL %q: want http://host:port/events", cfg.URL)
	}
	if u.Path == "" {
		u.Path = "/events"
	}
	bu := cfg.BroadcastURL
	if bu == "" {
		b := *u
		b.Path, b.RawQuery = "/_broadcast", ""
		bu = b.String()
	}
	bc, err := newBroadcaster(bu, cfg.BroadcastKey)
	if err != nil {
		return nil, fmt.Errorf("bench: sse adapter: %w", err)
	}
	return &sseAdapter{url: u, bc: bc}, nil
}

func (a *sseAdapter) Name() string { return "sse" }

// Dial records who connects; the socket opens with Subscribe.
func (a *sseAdapter) Dial(_ context.Context, o DialOptions, h Handler) (Conn, error) {
	return &sseConn{a: a, o: o, h: h, done: make(chan struct{})}, nil
}

// sseConn is one event stream.
type sseConn struct {
	a    *sseAdapter
	o    DialOptions
	h    Handler
	t    atomic.Pointer[huddleConn] // the reactor's side, once subscribed
	done chan struct{}              // closed by Close before Subscribe; else t's

	stream  []byte
	ev      Event  // reactor only
	b64     []byte // reactor only
	subbed  bool
	closing atomic.Bool
}

var _ Conn = (*sseConn)(nil)

// Subscribe opens the event stream of stream and waits for its 200.
func (c *sseConn) Subscribe(ctx context.Context, stream string, o SubOptions) error {
	if c.subbed {
		return fmt.Errorf("%w: one stream per event stream", ErrUnsupported)
	}
	if o.Presence || o.Join != nil {
		return fmt.Errorf("%w: presence over server-sent events", ErrUnsupported)
	}
	c.subbed = true
	nd := net.Dialer{Control: socketOptions(c.o)}
	if c.o.Local != nil {
		nd.LocalAddr = &net.TCPAddr{IP: c.o.Local}
	}
	nc, err := nd.DialContext(ctx, "tcp", c.a.url.Host)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	q := c.a.url.Query()
	q.Set("stream", stream)
	if c.a.token != "" {
		q.Set("token", c.a.token)
	}
	req := "GET " + c.a.url.Path + "?" + q.Encode() + " HTTP/1.1\r\nHost: " + c.a.url.Host + "\r\nAccept: text/event-stream\r\n"
	if o.Recover != nil {
		req += "Last-Event-ID: " + strconv.FormatUint(o.Recover.Offset, 10) + "/" + o.Recover.Epoch + "/" + stream + "\r\n"
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write([]byte(req + "\r\n")); err != nil {
		nc.Close()
		return fmt.Errorf("request: %w", err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return fmt.Errorf("response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		nc.Close()
		return fmt.Errorf("response: %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	c.stream = []byte(stream)
	r, err := clientReactor()
	if err != nil {
		nc.Close()
		return err
	}
	fd, err := detach(nc)
	if err != nil {
		return err
	}
	t := &huddleConn{fd: fd, r: r, h: c.h, done: make(chan struct{}), onBytes: c.events}
	if br.Buffered() > 0 {
		b, _ := br.Peek(br.Buffered())
		used, err := c.events(b, time.Now().UnixNano())
		if err != nil {
			unix.Close(fd)
			return err
		}
		t.pend = append(t.pend, b[used:]...)
	}
	c.t.Store(t)
	if c.closing.Load() {
		unix.Close(fd)
		return errors.New("closed while subscribing")
	}
	if err := r.add(t); err != nil {
		unix.Close(fd)
		return err
	}
	return nil
}

// events handles the whole events at the start of b: a publication's data
// is its base64 payload, and its id says offset/epoch/stream.
func (c *sseConn) events(b []byte, now int64) (int, error) {
	used := 0
	for {
		end := bytes.Index(b[used:], []byte("\n\n"))
		if end < 0 {
			return used, nil
		}
		block := b[used : used+end]
		used += end + 2
		var name, data, id []byte
		for line := range bytes.SplitSeq(block, []byte("\n")) {
			k, v, _ := bytes.Cut(line, []byte(":"))
			v = bytes.TrimPrefix(v, []byte(" "))
			switch string(k) {
			case "event":
				name = v
			case "data":
				data = v // publications are one line
			case "id":
				id = v
			}
		}
		switch {
		case string(name) == "disconnect":
			return used, errors.New("disconnect: " + string(data))
		case name != nil || data == nil:
			continue
		}
		n := base64.StdEncoding.DecodedLen(len(data))
		if cap(c.b64) < n {
			c.b64 = make([]byte, n)
		}
		k, err := base64.StdEncoding.Decode(c.b64[:n], data)
		if err != nil {
			continue
		}
		c.ev = Event{Kind: EventPub, At: now, Stream: c.stream, Data: c.b64[:k]}
		if parts := strings.SplitN(string(id), "/", 3); len(parts) == 3 {
			c.ev.Offset, _ = strconv.ParseUint(parts[0], 10, 64)
			c.ev.Epoch = []byte(parts[1])
		}
		c.h(&c.ev)
	}
}

func (c *sseConn) Publish(stream string, data []byte) error { return c.a.bc.publish(stream, data) }
func (c *sseConn) Whisper(string, string, []byte) error {
	return fmt.Errorf("%w: whispers over server-sent events", ErrUnsupported)
}
func (c *sseConn) Join(string, []byte) error {
	return fmt.Errorf("%w: presence over server-sent events", ErrUnsupported)
}
func (c *sseConn) Leave(string) error {
	return fmt.Errorf("%w: presence over server-sent events", ErrUnsupported)
}

func (c *sseConn) Pause(paused bool) {
	if t := c.t.Load(); t != nil {
		t.Pause(paused)
	}
}

func (c *sseConn) Close() error {
	if c.closing.Swap(true) {
		return nil
	}
	if t := c.t.Load(); t != nil {
		return t.Close()
	}
	close(c.done)
	return nil
}

func (c *sseConn) Done() <-chan struct{} {
	if t := c.t.Load(); t != nil {
		return t.done
	}
	return c.done
}
