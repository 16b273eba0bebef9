package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// TestCluster_HTTPSessionRelay: a huddle.v1 session over HTTP whose events
// come from node 0 while its POSTs land on node 1 (a load balancer without
// affinity): node 1 relays them through Redis, and the session connects,
// subscribes and receives as if every request had reached node 0.
func TestCluster_HTTPSessionRelay(t *testing.T) {
	c := startCluster(t, 2, nil)
	client := &http.Client{Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+c.addrs[0]+"/ws/events", nil)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /ws/events: %s %s", resp.Status, b)
	}
	events := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
		close(events)
	}()
	next := func() map[string]any {
		t.Helper()
		for {
			select {
			case d, ok := <-events:
				if !ok {
					t.Fatal("the event stream ended")
				}
				var m map[string]any
				_ = json.Unmarshal([]byte(d), &m)
				if m["t"] != "ping" {
					return m
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no event within 10s")
			}
		}
	}
	first := next()
	id, _ := first["session"].(string)
	if id == "" {
		t.Fatalf("first event %v", first)
	}
	seq := 0
	post := func(msg string) {
		t.Helper()
		if !strings.Contains(msg, `"connect"`) || seq == 0 {
			seq++ // a connect sent again keeps its seq: the node takes it once
		}
		r, err := client.Post("http://"+c.addrs[1]+"/ws/send?session="+id+"&seq="+strconv.Itoa(seq), "application/json", strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST to the other node: %d, want 202 (relayed)", r.StatusCode)
		}
	}
	// The relay needs node 0 listening on Redis; give a fresh node a moment.
	deadline := time.Now().Add(10 * time.Second)
	var connected map[string]any
	for connected == nil && time.Now().Before(deadline) {
		post(`{"t":"connect","id":1,"token":"` + clusterToken("ann") + `"}`)
		select {
		case d := <-events:
			_ = json.Unmarshal([]byte(d), &connected)
		case <-time.After(time.Second):
		}
	}
	if connected["t"] != "connected" || connected["user"] != "ann" {
		t.Fatalf("connect through the other node: %v", connected)
	}
	post(`{"t":"sub","id":2,"s":"relay:1"}`)
	if m := next(); m["t"] != "subscribed" {
		t.Fatalf("subscribe through the other node: %v", m)
	}
	if code, body, err := clusterAPI(c.addrs[1], "POST", "/api/publish", `{"stream":"relay:1","data":"hello"}`); err != nil || code != 200 {
		t.Fatalf("publish: %d %s %v", code, body, err)
	}
	if m := next(); m["t"] != "pub" || m["data"] != "hello" {
		t.Fatalf("publication %v", m)
	}
}

// TestCluster_Admin: /admin on either node shows both nodes, their
// connections and the cluster's busiest stream, from the snapshots they
// keep in Redis.
func TestCluster_Admin(t *testing.T) {
	c := startCluster(t, 2, nil, "--admin-password", "admin-pw")
	a, _ := clusterDialT(t, c.url(0), "ann")
	b, _ := clusterDialT(t, c.url(1), "bob")
	for _, cl := range []*wsclient.Client{a, b} {
		if err := cl.Send(&protocol.Subscribe{ID: 2, S: "busy:1"}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "http://"+c.addrs[1]+"/admin/api/cluster", nil)
		req.SetBasicAuth("admin", "admin-pw")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			var cl struct {
				Nodes []struct {
					Node        string `json:"node"`
					Connections int    `json:"connections"`
				} `json:"nodes"`
				Streams []struct {
					Stream      string `json:"stream"`
					Subscribers int    `json:"subscribers"`
				} `json:"streams"`
			}
			if json.Unmarshal(b, &cl) == nil && len(cl.Nodes) == 2 && cl.Nodes[0].Node == "n0" && cl.Nodes[0].Connections >= 1 &&
				cl.Nodes[1].Connections >= 1 && len(cl.Streams) > 0 && cl.Streams[0].Stream == "busy:1" && cl.Streams[0].Subscribers == 2 {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("/admin/api/cluster on node 1 never showed both nodes and busy:1 with 2 subscribers; last: %s", last)
}
