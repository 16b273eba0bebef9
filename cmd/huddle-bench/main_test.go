package main

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/huddle-rt/huddle/bench"
)

// TestScenarioFlags: every scenario parses its defaults and a typical
// command line, names the server flags it needs, and documents itself.
func TestScenarioFlags(t *testing.T) {
	lines := map[string][]string{
		"idle":      {"-n", "15000", "-streams", "10"},
		"connect":   {"-n", "10000", "-concurrency", "500"},
		"broadcast": {"-n", "10000", "-rate", "10", "-duration", "10s", "-size", "100"},
		"rooms":     {"-rooms", "1000", "-group", "10", "-rates", "1000, 2000", "-slo", "100ms"},
		"whisper":   {"-pairs", "500", "-rate", "100000"},
		"cursors":   {"-rooms", "50", "-group", "20", "-hz", "30"},
		"presence":  {"-members", "10000", "-rate", "200"},
		"slow":      {"-good", "500", "-slow", "50", "-max-queue", "65536"},
		"soak":      {"-duration", "10m", "-slow-pause", "30s", "-history", "500"},
	}
	orders := map[int]bool{}
	for name, s := range scenarios {
		t.Run(name, func(t *testing.T) {
			args, ok := lines[name]
			if !ok {
				t.Fatalf("no command line for scenario %q in this test", name)
			}
			if orders[s.order] {
				t.Fatalf("order %d used twice", s.order)
			}
			orders[s.order] = true
			if !strings.HasPrefix(strings.TrimSpace(s.about), name+":") || s.summary == "" {
				t.Fatalf("about %q", s.about)
			}
			fs := flag.NewFlagSet(name, flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			targetFlags(fs)
			serverArgs, run := s.flags(fs)
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if run == nil {
				t.Fatal("no run function")
			}
			sa := serverArgs()
			for i := 0; i < len(sa); i += 2 {
				if strings.HasPrefix(sa[i], "--") && strings.Contains(sa[i], "=") {
					i-- // --flag=value
					continue
				}
				if !strings.HasPrefix(sa[i], "--") || i+1 >= len(sa) {
					t.Fatalf("server args %v are not flag/value pairs", sa)
				}
			}
			switch name {
			case "whisper":
				if !strings.Contains(strings.Join(sa, " "), "--whisper-rate 210") {
					t.Fatalf("whisper at 50/s per client needs the limit lifted: %v", sa)
				}
			case "slow":
				if strings.Join(sa, " ") != "--max-queue 65536" {
					t.Fatalf("slow server args %v", sa)
				}
			case "soak":
				if got := strings.Join(sa, " "); got != "--pprof=true --max-queue 262144 --history-size 500 --presence-grace 5s" {
					t.Fatalf("soak server args %v", sa)
				}
			case "presence":
				if !strings.HasPrefix(strings.Join(sa, " "), "--max-presence-members ") {
					t.Fatalf("presence server args %v", sa)
				}
			}
		})
	}
}

// TestCableAdapterConfig: against a server the tool started, the cable
// adapter goes to /cable and publishes with the API key; against -url it
// takes what it is given.
func TestCableAdapterConfig(t *testing.T) {
	tf := &target{adapter: "cable", codec: "json"}
	c := tf.adapterConfig(bench.Target{URL: "ws://127.0.0.1:9000/ws", APIKey: "api", Started: true})
	if c.URL != "ws://127.0.0.1:9000/cable" || c.BroadcastKey != "api" || c.Codec != "json" || c.Name != "cable" {
		t.Fatalf("started: %+v", c)
	}
	tf.broadcastKey, tf.broadcastURL = "k", "http://127.0.0.1:9001/_broadcast"
	c = tf.adapterConfig(bench.Target{URL: "ws://127.0.0.1:8090/cable", APIKey: "api"})
	if c.URL != "ws://127.0.0.1:8090/cable" || c.BroadcastKey != "k" || c.BroadcastURL != tf.broadcastURL {
		t.Fatalf("-url: %+v", c)
	}
	h := (&target{adapter: "huddle"}).adapterConfig(bench.Target{URL: "ws://127.0.0.1:9000/ws", APIKey: "api", Started: true})
	if h.URL != "ws://127.0.0.1:9000/ws" || h.BroadcastKey != "" {
		t.Fatalf("huddle: %+v", h)
	}
	if !hasFlag([]string{"--x", "--public=true"}, "--public") || hasFlag([]string{"--publicity"}, "--public") {
		t.Fatal("hasFlag")
	}
}
