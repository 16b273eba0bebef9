package main

import (
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/redistest"
)

func TestRedisOption(t *testing.T) {
	for _, tc := range []struct {
		url   string
		addrs []string
		db    int
		err   string
	}{
		{url: "redis://127.0.0.1:6379/2", addrs: []string{"127.0.0.1:6379"}, db: 2},
		{url: "redis://:secret@10.0.0.1", addrs: []string{"10.0.0.1:6379"}},
		{url: "redis://a:7000, redis://b:7001,redis://c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: ",redis://a:7000", addrs: []string{"a:7000"}},
		{url: "", err: "needs --redis-url"},
		{url: "http://127.0.0.1", err: "--redis-url"},
	} {
		opt, err := redisOption(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("redisOption(%q) = %v, want an error containing %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("redisOption(%q): %v", tc.url, err)
			continue
		}
		if !slices.Equal(opt.InitAddress, tc.addrs) || opt.SelectDB != tc.db {
			t.Errorf("redisOption(%q) = addresses %v db %d, want %v db %d", tc.url, opt.InitAddress, opt.SelectDB, tc.addrs, tc.db)
		}
	}
}

// TestRedisStartup: --broker redis refuses to start without a reachable
// Redis, and says which flag or address is at fault.
func TestRedisStartup(t *testing.T) {
	bin := e2eBuild(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no url", []string{"--broker", "redis"}, "--redis-url"},
		{"unreachable", []string{"--broker", "redis", "--redis-url", "redis://" + e2eFreeAddr(t)}, "connect to Redis"},
		{"unknown broker", []string{"--broker", "kafka"}, "want memory or redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--addr", "127.0.0.1:0", "--allow-anonymous"}, tc.args...)
			code, out := e2eRunToExit(t, bin, nil, args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, output:\n%s\nwant a refusal naming %q", code, out, tc.want)
			}
		})
	}
}

// TestRedisOutageLogged: a node logs when Redis stops answering and when
// it answers again, with how long it was away.
func TestRedisOutageLogged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a private redis-server")
	}
	redis := redistest.Start(t)
	bin := e2eBuild(t)
	addr := e2eFreeAddr(t)
	p := e2eStart(t, bin, nil, "--addr", addr, "--secret", e2eSecret, "--api-key", e2eAPIKey,
		"--broker", "redis", "--redis-url", redis.URL())
	p.waitReady(t)
	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(p.out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("the log has no %q within 15s:\n%s", what, p.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	redis.Kill()
	waitLog("Redis is unreachable")
	// The failed commands are counted.
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIKey)
	resp, err := e2eHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := regexp.MustCompile(`(?m)^huddle_redis_errors_total (\d+)`).FindSubmatch(b); m == nil || string(m[1]) == "0" {
		t.Errorf("huddle_redis_errors_total after Redis went away: %q", m)
	}
	redis.Restart()
	waitLog("Redis answers again")
	waitLog("down_for=")
}
