package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServerOptions say how StartHuddle runs a Huddle server.
type ServerOptions struct {
	// Bin is the huddle binary; empty builds cmd/huddle of this module
	// (the working directory must be inside it).
	Bin string
	// CPUs pins the server with taskset, e.g. "0"; empty runs it unpinned.
	CPUs string
	// GOMAXPROCS for the server; 0 leaves the Go default.
	GOMAXPROCS int
	// Secret and APIKey are passed as --secret and --api-key.
	Secret, APIKey string
	// Pprof adds --pprof (profiles at /debug/pprof/, behind the API key).
	Pprof bool
	// Args are more flags, e.g. a scenario's --whisper-rate.
	Args []string
	// Stderr gets the server's stderr; nil discards it.
	Stderr io.Writer
}

// Server is a Huddle server process StartHuddle started.
type Server struct {
	URL  string // ws://addr/ws
	Pid  int
	Args []string // the flags it runs with, secrets redacted

	cmd    *exec.Cmd
	dir    string
	exited chan error
}

// StartHuddle starts a Huddle server on a free loopback port and waits
// until it is ready.
func StartHuddle(ctx context.Context, o ServerOptions) (*Server, error) {
	dir, err := os.MkdirTemp("", "huddle-bench")
	if err != nil {
		return nil, err
	}
	bin := o.Bin
	if bin == "" {
		bin = filepath.Join(dir, "huddle")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/huddle-rt/huddle/cmd/huddle")
		build.Stdout, build.Stderr = o.Stderr, o.Stderr
		if err := build.Run(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: build cmd/huddle (run inside the repository, or give the binary): %w", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{"--addr", addr, "--secret", o.Secret, "--log-level", "warn"}
	if o.APIKey != "" {
		args = append(args, "--api-key", o.APIKey)
	}
	if o.Pprof {
		args = append(args, "--pprof")
	}
	args = append(args, o.Args...)
	name, cargs := bin, args
	if o.CPUs != "" {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: pinning the server to CPUs %s: %w", o.CPUs, err)
		}
		name, cargs = ts, append([]string{"-c", o.CPUs, bin}, args...)
	}
	cmd := exec.Command(name, cargs...)
	cmd.Env = os.Environ()
	if o.GOMAXPROCS > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(o.GOMAXPROCS))
	}
	cmd.Stderr = o.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &Server{URL: "ws://" + addr + "/ws", Pid: cmd.Process.Pid, Args: redact(args), cmd: cmd, dir: dir, exited: exited}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("bench: the server exited at start: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-exited
	os.RemoveAll(dir)
	return nil, fmt.Errorf("bench: the server did not become ready on %s", addr)
}

// redact hides the values of --secret and --api-key.
func redact(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		switch {
		case (out[i] == "--secret" || out[i] == "--api-key") && i+1 < len(out):
			out[i+1] = "..."
		case strings.HasPrefix(out[i], "--secret="), strings.HasPrefix(out[i], "--api-key="):
			out[i] = out[i][:strings.IndexByte(out[i], '=')+1] + "..."
		}
	}
	return out
}

// Stop ends the server: SIGINT (a graceful drain), then a kill after 5s.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	os.RemoveAll(s.dir)
}

// Target is the server a scenario runs against.
type Target struct {
	// URL is its WebSocket URL.
	URL string
	// Pid is its process, for /proc readings; 0 when it runs elsewhere.
	Pid int
	// APIKey unlocks its HTTP API (/api/stats, /api/presence) and, with
	// Pprof, /debug/pprof; empty skips what needs it.
	APIKey string
	// Pprof says /debug/pprof is served.
	Pprof bool
	// Started is set when the tool started the server, with these flags.
	Started bool
	Args    []string
}

// httpBase derives the HTTP origin from the WebSocket URL.
func (t *Target) httpBase() string {
	u, err := url.Parse(t.URL)
	if err != nil {
		return ""
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

// Loopback says the target is on this machine's loopback, so clients may
// use 127.0.0.x source addresses.
func (t *Target) Loopback() bool {
	u, err := url.Parse(t.URL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

func (t *Target) getJSON(ctx context.Context, path string, v any) error {
	if t.APIKey == "" {
		return errors.New("bench: no API key")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", t.httpBase()+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// ServerStats is the server's /api/stats.
type ServerStats struct {
	Connections   int64 `json:"connections"`
	Streams       int64 `json:"streams"`
	Subscriptions int64 `json:"subscriptions"`
}

// Stats reads /api/stats.
func (t *Target) Stats(ctx context.Context) (ServerStats, error) {
	var s ServerStats
	err := t.getJSON(ctx, "/api/stats", &s)
	return s, err
}

// PresenceClients reads how many connections are present in stream.
func (t *Target) PresenceClients(ctx context.Context, stream string) (int, error) {
	var p struct {
		Clients int `json:"clients"`
	}
	err := t.getJSON(ctx, "/api/presence/"+url.PathEscape(stream), &p)
	return p.Clients, err
}

// Counters reads the server's Prometheus counters (series whose name ends
// in _total) from /metrics, keyed by series (name and labels).
func (t *Target) Counters(ctx context.Context) (map[string]float64, error) {
	text, err := t.get(ctx, "/metrics", 16<<20)
	if err != nil {
		return nil, err
	}
	return parseCounters(text), nil
}

// Gauges reads every series of the server's /metrics that is not a
// counter (no _total suffix), e.g. huddle_connections, or go_goroutines
// where the server exports Go's own metrics.
func (t *Target) Gauges(ctx context.Context) (map[string]float64, error) {
	text, err := t.get(ctx, "/metrics", 16<<20)
	if err != nil {
		return nil, err
	}
	return parseSeries(text, func(name string) bool { return !strings.HasSuffix(name, "_total") }), nil
}

// Goroutines counts the server's goroutines from its goroutine profile
// (/debug/pprof/goroutine, which needs --pprof and the API key).
func (t *Target) Goroutines(ctx context.Context) (int, error) {
	if t.APIKey == "" {
		return 0, errors.New("bench: counting goroutines needs the API key")
	}
	text, err := t.get(ctx, "/debug/pprof/goroutine?debug=1", 64<<10)
	if err != nil {
		return 0, err
	}
	var n int
	if _, err := fmt.Sscanf(text, "goroutine profile: total %d", &n); err != nil {
		return 0, fmt.Errorf("bench: goroutine profile: %w", err)
	}
	return n, nil
}

// StreamTop reads a stream's epoch and last offset through the HTTP API's
// history (needs the API key).
func (t *Target) StreamTop(ctx context.Context, stream string) (epoch string, offset uint64, err error) {
	var h struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	err = t.getJSON(ctx, "/api/history/"+url.PathEscape(stream)+"?limit=1&reverse=true", &h)
	return h.Epoch, h.Offset, err
}

// get reads path (at most limit bytes), with the API key when there is
// one.
func (t *Target) get(ctx context.Context, path string, limit int64) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", t.httpBase()+path, nil)
	if err != nil {
		return "", err
	}
	if t.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.APIKey)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("bench: GET %s: %s", path, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	return string(b), err
}

// parseCounters reads the counters of a Prometheus text exposition.
func parseCounters(text string) map[string]float64 {
	return parseSeries(text, func(name string) bool { return strings.HasSuffix(name, "_total") })
}

// parseSeries reads the series of a Prometheus text exposition whose
// metric name keep accepts.
func parseSeries(text string, keep func(name string) bool) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		series, val := line[:i], line[i+1:]
		name := series
		if j := strings.IndexByte(series, '{'); j >= 0 {
			name = series[:j]
		}
		if !keep(name) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[series] = v
		}
	}
	return out
}

// Profile writes a CPU profile of the next d of the server to path.
func (t *Target) Profile(ctx context.Context, d time.Duration, path string) error {
	if !t.Pprof || t.APIKey == "" {
		return errors.New("bench: profiling needs a server with --pprof and its API key")
	}
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := max(int(d.Round(time.Second)/time.Second), 1)
	req, err := http.NewRequestWithContext(ctx, "GET", t.httpBase()+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+t.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("bench: profile: %s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
