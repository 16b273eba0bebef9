package server_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc"
	"github.com/huddle-rt/huddle/internal/frontend/cable/rpc/grpcrpc/grpctest"
	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
)

// TestCableGRPC: with --rpc-url grpc://…, /cable runs the application's
// connect, channel commands and disconnect over AnyCable's gRPC service:
// identifiers and cstate reach later calls, a channel's streams deliver,
// its action's transmissions reach the caller, istate round-trips, and
// the sid metadata names the session.
func TestCableGRPC(t *testing.T) {
	var mu sync.Mutex
	var seen []string // what the app saw, in order
	note := func(ctx context.Context, s string) {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		seen = append(seen, s+" sid="+strings.Join(md.Get("sid"), ","))
		mu.Unlock()
	}
	disconnected := make(chan *rpc.DisconnectRequest, 1)
	url := grpctest.Start(t, grpctest.App{
		Connect: func(ctx context.Context, req *rpc.ConnectRequest) (*rpc.ConnectResponse, error) {
			note(ctx, "connect")
			if !strings.Contains(req.Env.URL, "user=ann") {
				return &rpc.ConnectResponse{Status: rpc.Failure, Transmissions: []string{`{"type":"disconnect","reason":"unauthorized"}`}}, nil
			}
			return &rpc.ConnectResponse{Status: rpc.Success, Identifiers: `{"user":"ann"}`, Env: &rpc.EnvResponse{CState: map[string]string{"visits": "1"}}}, nil
		},
		Command: func(ctx context.Context, req *rpc.CommandRequest) (*rpc.CommandResponse, error) {
			note(ctx, req.Command)
			switch req.Command {
			case "subscribe":
				return &rpc.CommandResponse{Status: rpc.Success, Streams: []string{"room:1"},
					Transmissions: []string{`{"type":"confirm_subscription","identifier":` + jsonString(req.Identifier) + `}`},
					Env:           &rpc.EnvResponse{IState: map[string]string{"n": "0"}}}, nil
			case "message":
				reply := `{"who":` + jsonString(req.ConnectionIdentifiers) + `,"visits":"` + req.Env.CState["visits"] + `","n":"` + req.Env.IState["n"] + `"}`
				return &rpc.CommandResponse{Status: rpc.Success,
					Transmissions: []string{`{"identifier":` + jsonString(req.Identifier) + `,"message":` + reply + `}`},
					Env:           &rpc.EnvResponse{IState: map[string]string{"n": req.Env.IState["n"] + "1"}}}, nil
			}
			return &rpc.CommandResponse{Status: rpc.Success}, nil
		},
		Disconnect: func(ctx context.Context, req *rpc.DisconnectRequest) (*rpc.DisconnectResponse, error) {
			note(ctx, "disconnect")
			disconnected <- req
			return &rpc.DisconnectResponse{Status: rpc.Success}, nil
		},
	})
	h := start(t, func(o *harnessOpts) {
		o.cfg.RPCURL = url
		o.auth.AllowAnonymous = true
	})

	refused := h.dialCable("user=bob", wire.SubprotocolExtJSON)
	if m := refused.Expect("disconnect"); m["reason"] != "unauthorized" || m["reconnect"] != false {
		t.Fatalf("refused connect: %v", m)
	}

	c := h.dialCable("user=ann", wire.SubprotocolExtJSON)
	sid := c.Expect("welcome")["sid"].(string)
	const id = `{"channel":"RoomChannel"}`
	c.Subscribe(id)
	if code, body := h.apiPublish(`{"stream":"room:1","data":"hi"}`); code != 200 {
		t.Fatalf("publish: %d %s", code, body)
	}
	if m := c.Expect(""); m["message"] != "hi" || m["identifier"] != id {
		t.Fatalf("broadcast %v, want hi on %s", m, id)
	}
	for _, want := range []string{"0", "01"} {
		c.Send(map[string]any{"command": "message", "identifier": id, "data": `{"action":"ping"}`})
		m := c.Expect("")["message"].(map[string]any)
		if m["who"] != `{"user":"ann"}` || m["visits"] != "1" || m["n"] != want {
			t.Fatalf("action answered %v, want who ann, visits 1 (cstate), n %s (istate)", m, want)
		}
	}
	c.Close()
	d := <-disconnected
	if d.Identifiers != `{"user":"ann"}` || len(d.Subscriptions) != 1 || d.Subscriptions[0] != id {
		t.Fatalf("disconnect %+v, want ann's identifiers and the channel", d)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen[1:] { // seen[0] is bob's refused connect
		if !strings.HasSuffix(s, "sid="+sid) {
			t.Errorf("%s, want sid=%s", s, sid)
		}
	}
}

// jsonString is s as a JSON string literal.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
