package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// The attacks of issue 13 run against the real binary, measured by its
// resident memory: what an operator sees.

// rssOf reads a process's resident set size from /proc.
func rssOf(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// publishBigE2E publishes count publications of about size bytes, round
// robin over streams, each its own API call (a call's body is bounded).
func publishBigE2E(addr string, streams []string, count, size int) error {
	pad := strings.Repeat("x", size)
	for i := range count {
		body := fmt.Sprintf(`{"stream":%q,"data":{"seq":%d,"pad":%q}}`, streams[i%len(streams)], i, pad)
		req, err := http.NewRequest("POST", "http://"+addr+"/api/publish", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
		resp, err := e2eHTTP.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("publish %d: %s", i, resp.Status)
		}
	}
	return nil
}

const mib = 1 << 20

// Issue 13, item 2: six clients that ask for the history of large
// publications and never read take the server's memory up by a bounded
// amount (not the full replies), and a bystander's round trips stay fast.
func TestAttackHistoryAmplificationRSS(t *testing.T) {
	bin := e2eBuild(t)
	addr := e2eFreeAddr(t)
	p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--api-key", e2eAPIKey,
		"--history-stream-memory", "0", "--log-level", "error")
	p.waitReady(t)
	const stream = "big:1"
	if err := publishBigE2E(addr, []string{stream}, 50, 1000_000); err != nil { // 50 MB of history
		t.Fatal(err)
	}
	base := rssOf(t, p.cmd.Process.Pid)

	url := "ws://" + addr + "/ws"
	for i := range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		a, err := wsclient.Dial(ctx, url, wsclient.Options{NoReader: true, Subprotocols: []string{protocol.SubprotocolJSON}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		msgs := []protocol.Message{&protocol.Connect{ID: 1, Token: e2eToken(t, e2eSecret, fmt.Sprintf("mallory%d", i))}}
		for id := range 40 {
			msgs = append(msgs, &protocol.HistoryRequest{ID: uint64(id + 2), S: stream, Limit: 1000})
		}
		if err := a.Send(msgs...); err != nil {
			t.Fatal(err)
		}
	}
	probe, err := e2eDialToken(url, e2eToken(t, e2eSecret, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	var worst time.Duration
	peak := base
	for range 50 {
		t0 := time.Now()
		if err := probe.Send(&protocol.Ping{}); err != nil {
			t.Fatal(err)
		}
		if _, err := wsclient.Wait[*protocol.Pong](probe, e2eWait); err != nil {
			t.Fatalf("probe: %v", err)
		}
		worst = max(worst, time.Since(t0))
		peak = max(peak, rssOf(t, p.cmd.Process.Pid))
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("RSS %d MiB before the six clients, peak %d MiB (+%d MiB); the bystander's worst ping %v",
		base/mib, peak/mib, (peak-base)/mib, worst)
	// Answered in full, 40 requests of 50 MB each for six JSON clients
	// would be gigabytes; each may hold about its 4 MiB queue bound.
	if peak-base > 150*mib {
		t.Fatalf("RSS grew by %d MiB", (peak-base)/mib)
	}
	if worst > time.Second {
		t.Fatalf("the bystander's ping took %v", worst)
	}
	p.stop(t)
}

// Issue 13, item 5: with --history-memory 64MiB, 600 MB of publications
// over 20 streams leave the server's memory well under 200 MB above where
// it started, and publishing keeps working.
func TestHistoryMemoryBudgetRSS(t *testing.T) {
	bin := e2eBuild(t)
	addr := e2eFreeAddr(t)
	p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--api-key", e2eAPIKey,
		"--history-memory", "64MiB", "--history-stream-memory", "0", "--history-size", "1000", "--log-level", "error")
	p.waitReady(t)
	base := rssOf(t, p.cmd.Process.Pid)
	streams := make([]string, 20)
	for i := range streams {
		streams[i] = fmt.Sprintf("flood:%d", i)
	}
	// Four publishers at once, 150 publications of 1 MB each.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publishBigE2E(addr, streams[w*5:w*5+5], 150, 1000_000); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	after := rssOf(t, p.cmd.Process.Pid)
	t.Logf("RSS %d MiB before 600 MB of publications, %d MiB after (+%d MiB)", base/mib, after/mib, (after-base)/mib)
	if after-base > 200*mib {
		t.Fatalf("RSS grew by %d MiB with a 64 MiB history budget", (after-base)/mib)
	}
	// The newest publications are kept; the oldest went.
	code, body := e2eAPI(t, addr, "GET", "/api/history/flood:19?limit=1&reverse=true", "")
	if code != http.StatusOK || !strings.Contains(body, `"offset":30`) {
		t.Fatalf("history of flood:19: %d %.200s", code, body)
	}
	p.stop(t)
}
