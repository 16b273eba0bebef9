package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestMerge(t *testing.T) {
	c := Merge([]Snapshot{
		{Node: "b", Connections: 3, CPU: 0.5, PublishRate: 2, Disconnects: map[int]int64{4009: 2}, RecentDisconnects: map[int]int64{4009: 1},
			Top: []StreamStat{{Stream: "doc:1", Subscribers: 2, Members: 3}, {Stream: "doc:2", Subscribers: 1}}},
		{Node: "a", Connections: 4, CPU: 0.25, PublishRate: 1, Disconnects: map[int]int64{4009: 1, 4001: 5},
			Top: []StreamStat{{Stream: "doc:1", Subscribers: 5, Members: 4}}},
	}, 10)
	if c.Nodes[0].Node != "a" || c.Totals.Connections != 7 || c.Totals.CPU != 0.75 || c.Totals.PublishRate != 3 {
		t.Fatalf("totals %+v", c.Totals)
	}
	if c.Totals.Disconnects[4009] != 3 || c.Totals.Disconnects[4001] != 5 || c.Totals.RecentDisconnects[4009] != 1 {
		t.Fatalf("disconnects %+v", c.Totals)
	}
	if len(c.Streams) != 2 || c.Streams[0] != (StreamStat{"doc:1", 7, 4}) || c.Totals.Streams != 2 {
		t.Fatalf("streams %+v", c.Streams)
	}
}

func TestHandlerAuth(t *testing.T) {
	store := &MemoryStore{}
	_ = store.Put(context.Background(), Snapshot{Node: "n1", Connections: 2}, time.Minute)
	srv := httptest.NewServer(Handler(store, "pw", "api-key"))
	defer srv.Close()
	get := func(path string, set func(*http.Request)) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if set != nil {
			set(req)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/admin", nil); code != 401 {
		t.Fatalf("no credentials: %d", code)
	}
	if code, _ := get("/admin", func(r *http.Request) { r.SetBasicAuth("x", "wrong") }); code != 401 {
		t.Fatalf("a wrong password: %d", code)
	}
	if code, body := get("/admin", func(r *http.Request) { r.SetBasicAuth("admin", "pw") }); code != 200 || !strings.Contains(body, "<title>Huddle") {
		t.Fatalf("the password: %d", code)
	}
	code, body := get("/admin/api/cluster", func(r *http.Request) { r.Header.Set("Authorization", "Bearer api-key") })
	if code != 200 || !strings.Contains(body, `"node":"n1"`) || !strings.Contains(body, `"connections":2`) {
		t.Fatalf("the API key: %d %s", code, body)
	}
	// No password and no key: closed to everyone.
	closed := httptest.NewServer(Handler(store, "", ""))
	defer closed.Close()
	req, _ := http.NewRequest("GET", closed.URL+"/admin", nil)
	req.SetBasicAuth("admin", "")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("an empty password opened a closed page: %v %v", resp, err)
	}
}

func TestMemoryStoreTTL(t *testing.T) {
	s := &MemoryStore{}
	_ = s.Put(context.Background(), Snapshot{Node: "gone"}, time.Millisecond)
	_ = s.Put(context.Background(), Snapshot{Node: "here"}, time.Minute)
	time.Sleep(5 * time.Millisecond)
	all, _ := s.All(context.Background())
	if len(all) != 1 || all[0].Node != "here" {
		t.Fatalf("live snapshots %+v", all)
	}
}
