package bench

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end test runs every scenario at a tiny size against a real
// server process, with the workers in this process (so -race sees them).

const (
	e2eSecret = "e2e-secret-0123456789abcdef0123456789"
	e2eAPIKey = "e2e-api-key"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// huddleBinary builds cmd/huddle once per test run.
func huddleBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if buildDir, buildErr = os.MkdirTemp("", "bench-e2e"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "huddle")
		out, err := exec.Command(goBin, "build", "-o", builtBin, "github.com/huddle-rt/huddle/cmd/huddle").CombinedOutput()
		if err != nil {
			buildErr = err
			builtBin = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build cmd/huddle: %v\n%s", buildErr, builtBin)
	}
	return builtBin
}

// logWriter sends lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// e2eEnv starts a server with serverArgs and returns an Env for it.
func e2eEnv(t *testing.T, serverArgs []string) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := StartHuddle(ctx, ServerOptions{Bin: huddleBinary(t), Secret: e2eSecret, APIKey: e2eAPIKey, Args: serverArgs, Stderr: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return &Env{
		Target:   Target{URL: srv.URL, Pid: srv.Pid, APIKey: e2eAPIKey, Started: true, Args: srv.Args},
		Adapter:  AdapterConfig{Name: "huddle", URL: srv.URL, Secret: e2eSecret},
		Launcher: InProcLauncher{},
		Workers:  2,
		IPs:      4,
		Log:      logWriter{t},
	}
}

func TestScenariosEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and runs every scenario")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms := 1 * time.Millisecond
	checkCommon := func(t *testing.T, r Result, scenario string) {
		t.Helper()
		h := r.Head()
		if h.Scenario != scenario || h.ClientWorkers != 2 || !h.StartedServer {
			t.Fatalf("common %+v", h)
		}
		if runtime.GOOS == "linux" && (!h.ServerMeasured || h.ServerRSS <= 0) {
			t.Fatalf("no server readings: %+v", h.Usage)
		}
		var b strings.Builder
		WriteTable(&b, r)
		if err := WriteJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		t.Log("\n" + b.String())
	}

	t.Run("idle", func(t *testing.T) {
		c := IdleConfig{N: 40, Streams: 4, Settle: 200 * ms}
		r, err := RunIdle(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "idle")
		if r.Connections != 40 || r.Failed != 0 || r.Dropped != 0 || r.Connect.Count != 40 || r.LoadedRSS <= 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("connect", func(t *testing.T) {
		c := ConnectConfig{N: 60, Concurrency: 10, Streams: 3}
		r, err := RunConnect(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "connect")
		if r.Connected != 60 || r.Failed != 0 || r.Rate <= 0 || r.Connect.Count != 60 || r.Concurrency != 10 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		c := BroadcastConfig{N: 20, Rate: 40, Duration: time.Second, Size: 64, Drain: 500 * ms}
		r, err := RunBroadcast(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "broadcast")
		if r.Messages != 40 || r.Missing != 0 || r.TimeToLast.Count != 40 || r.Delivery.Count != 800 || r.P99ms <= 0 || r.P99ms < r.P50ms {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("rooms", func(t *testing.T) {
		c := RoomsConfig{Rooms: 4, Group: 5, Rates: []float64{50, 100}, Step: 500 * ms, Warmup: 200 * ms, Drain: 300 * ms, SLO: 10 * time.Second} // mechanics, not speed: the machine may be busy
		r, err := RunRooms(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "rooms")
		if len(r.Steps) != 2 || r.Sent == 0 || r.Missing != 0 || r.Delivered != r.Sent*5 || r.Best <= 0 {
			t.Fatalf("%+v", r)
		}
		if s := r.Steps[1]; s.Offered != 100 || s.Sent < 50 || s.Latency.Count == 0 || !s.WithinSLO {
			t.Fatalf("step %+v", s)
		}
	})
	t.Run("whisper", func(t *testing.T) {
		c := WhisperConfig{Pairs: 10, Rate: 400, Duration: time.Second, Drain: 300 * ms}
		r, err := RunWhisper(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "whisper")
		if r.Sent < 300 || r.Delivered != r.Sent || r.Missing != 0 || r.RateLimited != 0 || r.Latency.Count != uint64(r.Sent) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("cursors", func(t *testing.T) {
		c := CursorsConfig{Rooms: 2, Group: 5, Hz: 20, Duration: time.Second, Drain: 300 * ms}
		r, err := RunCursors(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "cursors")
		if r.Sent < 150 || r.Expected != r.Sent*4 || r.Delivered != r.Expected || r.RateLimited != 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("presence", func(t *testing.T) {
		c := PresenceConfig{Streams: 2, Members: 10, Watchers: 6, Rate: 20, Hold: 200 * ms, Duration: time.Second, Settle: 300 * ms}
		r, err := RunPresence(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "presence")
		if r.Cycles < 15 || r.Unsent != 0 || r.Missing != 0 || r.Unmatched != 0 ||
			r.Join.Count != uint64(r.Cycles)*6 || r.Leave.Count != uint64(r.Cycles)*6 || r.JoinLast.Count != uint64(r.Cycles) {
			t.Fatalf("%+v", r)
		}
		if r.PresentBefore != 20 || r.PresentAfter != 20 || r.RSSBefore <= 0 || r.RSSSettled <= 0 {
			t.Fatalf("presence counts or RSS: %+v", r)
		}
	})
	t.Run("slow", func(t *testing.T) {
		c := SlowConfig{Good: 4, Slow: 2, Rate: 200, Size: 16000, Baseline: 500 * ms, Slowdown: 3 * time.Second,
			MaxQueue: 64 << 10, Drain: 300 * ms, Wait: 3 * time.Second}
		r, err := RunSlow(ctx, e2eEnv(t, c.ServerArgs()), c)
		if err != nil {
			t.Fatal(err)
		}
		checkCommon(t, r, "slow")
		if r.Baseline.Messages != 100 || r.Baseline.Missing != 0 || r.Slowdown.Missing != 0 || r.GoodCut != 0 {
			t.Fatalf("good subscribers affected: %+v", r)
		}
		// Both are cut, and (having resumed reading within the server's
		// close grace) both read the 4008. When the sockets close depends
		// on that grace, so the cut times are reported, not asserted.
		if r.SlowClosed != 2 || r.NotCut != 0 || r.Cut4008 != 2 {
			t.Fatalf("slow subscribers not cut with 4008: %+v", r)
		}
	})
}
