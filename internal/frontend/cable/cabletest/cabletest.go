// Package cabletest is a hand-made Action Cable client for tests: it dials
// /cable with a subprotocol, sends commands as maps and reads every message
// (JSON or msgpack) as a map, skipping pings.
package cabletest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/vmihailenco/msgpack/v5"
)

// Wait bounds every wait of a Client.
const Wait = 5 * time.Second

// Client is one /cable connection.
type Client struct {
	t       testing.TB
	nc      net.Conn
	r       io.Reader
	msgpack bool
	msgs    chan map[string]any
	closed  chan struct{}
}

// Dial opens url (ws://host/cable?...) offering subprotocol ("" for none).
// The connection closes with the test.
func Dial(t testing.TB, url, subprotocol string) *Client {
	t.Helper()
	d := ws.Dialer{Timeout: Wait}
	if subprotocol != "" {
		d.Protocols = []string{subprotocol}
	}
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	nc, br, _, err := d.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &Client{t: t, nc: nc, r: nc, msgpack: strings.Contains(subprotocol, "msgpack"), msgs: make(chan map[string]any, 256), closed: make(chan struct{})}
	if br != nil {
		c.r = io.MultiReader(br, nc)
	}
	t.Cleanup(func() { nc.Close() })
	go c.read()
	return c
}

// Closed is closed once the connection is.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// Close cuts the connection (no close frame).
func (c *Client) Close() { c.nc.Close() }

func (c *Client) read() {
	defer close(c.closed)
	rw := struct {
		io.Reader
		io.Writer
	}{c.r, c.nc}
	for {
		data, _, err := wsutil.ReadServerData(rw)
		if err != nil {
			return
		}
		var m map[string]any
		if c.msgpack {
			err = msgpack.Unmarshal(data, &m)
		} else {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			c.t.Errorf("undecodable frame %q: %v", data, err)
			return
		}
		c.msgs <- m
	}
}

// Send sends v as a command.
func (c *Client) Send(v map[string]any) {
	c.t.Helper()
	var b []byte
	var err error
	op := ws.OpText
	if c.msgpack {
		b, err = msgpack.Marshal(v)
		op = ws.OpBinary
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if err := wsutil.WriteClientMessage(c.nc, op, b); err != nil {
		c.t.Fatal(err)
	}
}

// SendRaw sends b as a text message.
func (c *Client) SendRaw(b []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientMessage(c.nc, ws.OpText, b); err != nil {
		c.t.Fatal(err)
	}
}

// SendOversize sends b as a text message the server is expected to refuse:
// the server may close the connection before the write ends, so a write
// error is not a failure.
func (c *Client) SendOversize(b []byte) {
	_ = wsutil.WriteClientMessage(c.nc, ws.OpText, b)
}

// Next returns the next message that is not a ping.
func (c *Client) Next() map[string]any {
	c.t.Helper()
	deadline := time.After(Wait)
	for {
		select {
		case m := <-c.msgs:
			if m["type"] == "ping" {
				continue
			}
			return m
		case <-c.closed:
			select { // what arrived before the close comes first
			case m := <-c.msgs:
				if m["type"] == "ping" {
					continue
				}
				return m
			default:
			}
			c.t.Fatal("the connection closed")
		case <-deadline:
			c.t.Fatal("no message in time")
		}
	}
}

// Expect returns the next message, failing unless its type is typ ("" for
// a broadcast, which has none).
func (c *Client) Expect(typ string) map[string]any {
	c.t.Helper()
	m := c.Next()
	if got, _ := m["type"].(string); got != typ {
		c.t.Fatalf("got %v, want a message of type %q", m, typ)
	}
	return m
}

// Quiet fails if a message other than a ping arrives within d.
func (c *Client) Quiet(d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m := <-c.msgs:
			if m["type"] != "ping" {
				c.t.Fatalf("unexpected %v", m)
			}
		case <-deadline:
			return
		}
	}
}

// PubSub is the identifier of the public stream.
func PubSub(stream string) string {
	b, _ := json.Marshal(map[string]string{"channel": "$pubsub", "stream_name": stream})
	return string(b)
}

// Subscribe subscribes to identifier and waits for the confirmation.
func (c *Client) Subscribe(identifier string) {
	c.t.Helper()
	c.Send(map[string]any{"command": "subscribe", "identifier": identifier})
	if m := c.Expect("confirm_subscription"); m["identifier"] != identifier {
		c.t.Fatalf("confirmed %v, want identifier %s", m, identifier)
	}
}
