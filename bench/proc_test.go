package bench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	stat := "1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 100 1000 200 18446744073709551615"
	d, err := parseStatCPU([]byte(stat))
	if err != nil || d != 3*time.Second {
		t.Fatalf("cpu %v %v, want 3s", d, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 x y z"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Fatalf("parsed %q", bad)
		}
	}
}

func TestParseCores(t *testing.T) {
	stat := `cpu  300 0 100 1000 10 5 5 0 0 0
cpu0 100 0 50 500 5 5 0 0 7 0
cpu1 200 0 50 500 5 0 5 0 0 0
intr 12345
`
	ct := parseCores([]byte(stat))
	if len(ct.Busy) != 2 || ct.Busy[0] != 155 || ct.Busy[1] != 255 || ct.IRQ[0] != 5 || ct.IRQ[1] != 5 || ct.Total[0] != 660 {
		t.Fatalf("cores %+v", ct)
	}
}

func TestReadProcSelf(t *testing.T) {
	st, err := ReadProc(os.Getpid())
	if err == ErrNoProc {
		t.Skip("no /proc")
	}
	if err != nil || st.RSS <= 0 {
		t.Fatalf("ReadProc(self) = %+v, %v", st, err)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("a missing pid read fine")
	}
}

func TestSplitAndWorkers(t *testing.T) {
	first, count := split(10, 3)
	if len(first) != 3 || first[0] != 0 || count[0]+count[1]+count[2] != 10 || first[2] != first[1]+count[1] {
		t.Fatalf("split %v %v", first, count)
	}
	if first, count := split(2, 5); len(first) != 2 || count[0] != 1 {
		t.Fatalf("more workers than clients: %v %v", first, count)
	}
	e := &Env{}
	for _, tc := range []struct{ clients, want int }{{1, 1}, {200, 1}, {15000, 1}, {19000, 1}, {19001, 2}, {60000, 4}} {
		if got := e.workers(tc.clients); got != tc.want {
			t.Fatalf("workers(%d) = %d, want %d", tc.clients, got, tc.want)
		}
	}
	e.Workers = 1
	if got := e.workers(40000); got != 3 {
		t.Fatalf("one worker asked for 40,000 clients: %d, want 3 (the file limit)", got)
	}
}

func TestRedact(t *testing.T) {
	got := redact([]string{"--secret", "s3", "--api-key=k", "--addr", "x"})
	if got[1] != "..." || got[2] != "--api-key=..." || got[4] != "x" {
		t.Fatalf("redact %v", got)
	}
}

func TestPresencePlan(t *testing.T) {
	tk := Task{Scenario: "presence", Shape: Shape{Streams: 2, Members: 3, Churners: 2, Watch: true, Watchers: 2}}
	var kinds []clientKind
	var streams []string
	var watch []bool
	for i := 0; i < 10; i++ {
		p := tk.plan(i)
		kinds, streams, watch = append(kinds, p.kind), append(streams, p.stream), append(watch, p.sub.Presence)
	}
	if kinds[5] != kindMember || kinds[6] != kindChurner || streams[3] != presenceStream(1) || streams[8] != presenceStream(1) || streams[7] != presenceStream(0) {
		t.Fatalf("kinds %v streams %v", kinds, streams)
	}
	if !watch[0] || !watch[1] || watch[2] || !watch[3] || watch[5] || watch[6] {
		t.Fatalf("watchers %v", watch)
	}
}

func TestParseCounters(t *testing.T) {
	text := `# HELP huddle_messages_out_total Messages sent.
# TYPE huddle_messages_out_total counter
huddle_messages_out_total{type="pub"} 1234
huddle_messages_out_total{type="a b"} 5
huddle_connections 7
huddle_whispers_conflated_total 3e+06
go_gc_duration_seconds{quantile="0.5"} 0.1
broken_total
`
	got := parseCounters(text)
	want := map[string]float64{`huddle_messages_out_total{type="pub"}`: 1234, `huddle_messages_out_total{type="a b"}`: 5, "huddle_whispers_conflated_total": 3e6}
	if len(got) != len(want) {
		t.Fatalf("counters %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}
