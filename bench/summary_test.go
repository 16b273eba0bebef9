package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{7}, 7}} {
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestSummarize: medians per row over run directories, ratios, nested
// paths, and a row missing from one run.
func TestSummarize(t *testing.T) {
	root := t.TempDir()
	write := func(run, row, body string) {
		dir := filepath.Join(root, run)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, row+".json"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, p99 := range []string{"30", "10", "20"} {
		run := "run" + string(rune('1'+i))
		write(run, "whisper", `{"scenario":"whisper","delivered":`+p99+`,"expected_deliveries":40,"latency":{"p99_ms":`+p99+`},"server_cpu_cores":0.5}`)
	}
	write("run1", "idle", `{"scenario":"idle","rss_per_connection_bytes":1700.4}`)
	var out bytes.Buffer
	if err := Summarize(&out, []string{filepath.Join(root, "run1"), filepath.Join(root, "run2"), filepath.Join(root, "run3")}); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{
		"#### whisper (whisper, 3 runs)",
		"| p99 ms | **20.0** | 30.0, 10.0, 20.0 |",
		"| delivered % | **50.00** | 75.00, 25.00, 50.00 |",
		"| srv cpu | **0.50** |",
		"#### idle (idle, 1 runs)",
		"| B/conn | **1700** | 1700 |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if err := Summarize(&out, []string{t.TempDir()}); err == nil {
		t.Error("no error for a directory without results")
	}
}
