package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestResultJSON: a result is one JSON object with the common fields at the
// top level beside the scenario's own, and it reads back.
func TestResultJSON(t *testing.T) {
	res := &BroadcastResult{
		Common: Common{Scenario: "broadcast", Adapter: "huddle", URL: "ws://x/ws", StartedServer: true, ClientWorkers: 2,
			Usage: Usage{Seconds: 10, ServerMeasured: true, ServerCPU: 0.5, ServerRSS: 1 << 20, ClientCPU: 0.25, CoreBusy: []float64{0.5, 0.3}},
			Notes: []string{"n"}},
		Subscribers: 1000, Rate: 10, Size: 100, Messages: 100, Missing: 3, P99ms: 4.5,
		TimeToLast: Latency{Count: 100, P99ms: 4.5},
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, res); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(buf.String(), "}\n") || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("not one line: %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"scenario": "broadcast", "server_cpu_cores": 0.5, "client_cpu_cores": 0.25, "server_measured": true,
		"client_workers": 2.0, "subscribers": 1000.0, "missing_deliveries": 3.0, "time_to_last_p99_ms": 4.5,
		"server_rss_bytes": float64(1 << 20), "seconds": 10.0,
	} {
		if m[key] != want {
			t.Errorf("%s = %v, want %v", key, m[key], want)
		}
	}
	if ttl, ok := m["time_to_last"].(map[string]any); !ok || ttl["p99_ms"] != 4.5 {
		t.Errorf("time_to_last = %v", m["time_to_last"])
	}
	var back BroadcastResult
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Subscribers != 1000 || back.ServerCPU != 0.5 || back.Notes[0] != "n" || back.TimeToLast.P99ms != 4.5 {
		t.Fatalf("read back %+v", back)
	}
}

// TestResultTables: every result's table has as many cells as columns, and
// carries the server's and the clients' CPU.
func TestResultTables(t *testing.T) {
	results := []Result{
		&IdleResult{}, &ConnectResult{}, &BroadcastResult{}, &RoomsResult{Steps: []RoomsStep{{}, {}}},
		&RelayResult{}, &PresenceResult{}, &SlowResult{},
	}
	for _, r := range results {
		cols, rows := r.Table()
		if len(rows) == 0 {
			t.Fatalf("%T: no rows", r)
		}
		for _, row := range rows {
			if len(row) != len(cols) {
				t.Fatalf("%T: %d cells for %d columns", r, len(row), len(cols))
			}
		}
		joined := strings.Join(cols, "|")
		if !strings.Contains(joined, "cli cpu") || !strings.Contains(joined, "srv cpu") {
			t.Fatalf("%T: columns %v lack the CPU of server and clients", r, cols)
		}
		var buf bytes.Buffer
		r.Head().Notes = []string{"a note"}
		WriteTable(&buf, r)
		if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != len(rows)+2 || !strings.HasPrefix(lines[len(lines)-1], "note: ") {
			t.Fatalf("%T table:\n%s", r, buf.String())
		}
	}
}

func TestUsageSince(t *testing.T) {
	t0 := time.Unix(100, 0)
	a := sample{at: t0, server: ProcStats{CPUTime: time.Second}, serverOK: true, client: 2 * time.Second,
		cores: CoreTimes{Busy: []int64{100, 100}, IRQ: []int64{0, 10}, Total: []int64{1000, 1000}}}
	b := sample{at: t0.Add(2 * time.Second), server: ProcStats{CPUTime: 2 * time.Second, RSS: 42}, serverOK: true, client: 3 * time.Second,
		cores: CoreTimes{Busy: []int64{200, 300}, IRQ: []int64{0, 30}, Total: []int64{1200, 1200}}}
	u := b.since(a)
	if u.Seconds != 2 || !u.ServerMeasured || u.ServerCPU != 0.5 || u.ClientCPU != 0.5 || u.ServerRSS != 42 {
		t.Fatalf("usage %+v", u)
	}
	if len(u.CoreBusy) != 2 || u.CoreBusy[0] != 0.5 || u.CoreBusy[1] != 1 || u.CoreIRQ[1] != 0.1 {
		t.Fatalf("cores %v irq %v", u.CoreBusy, u.CoreIRQ)
	}
	b.serverOK = false
	if u := b.since(a); u.ServerMeasured || u.ServerCPU != 0 {
		t.Fatalf("server without /proc: %+v", u)
	}
}

func TestBoundNotes(t *testing.T) {
	e := &Env{ClientCores: 1, Target: Target{Started: true}}
	notes := e.boundNotes(Usage{Seconds: 5, ServerMeasured: true, ServerCPU: 0.95, ClientCPU: 0.9, CoreBusy: []float64{1, 1}, CoreIRQ: []float64{0, 0}})
	if len(notes) != 2 || !strings.Contains(notes[0], "clients used 0.90 of 1") || !strings.Contains(notes[1], "saturated") {
		t.Fatalf("notes %q", notes)
	}
	notes = e.boundNotes(Usage{Seconds: 5, ServerMeasured: true, ServerCPU: 0.2, ClientCPU: 0.2, CoreBusy: []float64{0.9, 0.4}, CoreIRQ: []float64{0.1, 0.1}})
	if len(notes) != 1 || !strings.Contains(notes[0], "other processes used about 0.70") {
		t.Fatalf("noise notes %q", notes)
	}
	if notes := e.boundNotes(Usage{Seconds: 0.1, ClientCPU: 0.1, CoreBusy: []float64{1, 1}}); len(notes) != 0 {
		t.Fatalf("a short phase says nothing about others: %q", notes)
	}
}
