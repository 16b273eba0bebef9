package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A Figure is one number a summary takes from each run's JSON result.
type Figure struct {
	Label  string // column label, e.g. "p99 ms"
	Path   string // dotted path into the JSON, e.g. "latency.p99_ms"; "a/b" divides a by b
	Scale  float64
	Digits int
}

// Figures lists, per scenario, what a summary reports.
var Figures = map[string][]Figure{
	"idle": {
		{Label: "B/conn", Path: "rss_per_connection_bytes", Digits: 0},
		{Label: "conns", Path: "connections"},
		{Label: "failed", Path: "failed"},
	},
	"connect": {
		{Label: "connects/s", Path: "connects_per_second"},
		{Label: "failed", Path: "failed"},
		{Label: "p99 ms", Path: "connect_latency.p99_ms", Digits: 1},
	},
	"broadcast": {
		{Label: "last p50 ms", Path: "time_to_last_p50_ms", Digits: 1},
		{Label: "last p99 ms", Path: "time_to_last_p99_ms", Digits: 1},
		{Label: "last max ms", Path: "time_to_last_max_ms", Digits: 1},
		{Label: "msgs", Path: "messages"},
		{Label: "missing", Path: "missing_deliveries"},
	},
	"whisper": {
		{Label: "delivered/s", Path: "delivered_per_second"},
		{Label: "delivered %", Path: "delivered/expected_deliveries", Scale: 100, Digits: 2},
		{Label: "p50 ms", Path: "latency.p50_ms", Digits: 1},
		{Label: "p99 ms", Path: "latency.p99_ms", Digits: 1},
	},
	"rooms": {
		{Label: "deliveries/s within SLO", Path: "max_deliveries_per_second_within_slo"},
		{Label: "pubs/s", Path: "max_pubs_per_second_within_slo"},
	},
	"cursors": {
		{Label: "deliveries/s", Path: "delivered_per_second"},
		{Label: "delivered %", Path: "delivered/expected_deliveries", Scale: 100, Digits: 2},
		{Label: "p50 ms", Path: "latency.p50_ms", Digits: 1},
		{Label: "p99 ms", Path: "latency.p99_ms", Digits: 1},
	},
	"presence": {
		{Label: "join p99 ms", Path: "join.p99_ms", Digits: 1},
		{Label: "leave p99 ms", Path: "leave.p99_ms", Digits: 1},
		{Label: "missing", Path: "missing_deliveries"},
		{Label: "RSS before MB", Path: "rss_before_bytes", Scale: 1.0 / (1 << 20), Digits: 1},
		{Label: "after MB", Path: "rss_after_bytes", Scale: 1.0 / (1 << 20), Digits: 1},
		{Label: "settled MB", Path: "rss_settled_bytes", Scale: 1.0 / (1 << 20), Digits: 1},
	},
	"slow": {
		{Label: "good p99 before ms", Path: "baseline.time_to_last.p99_ms", Digits: 1},
		{Label: "good p99 during ms", Path: "slowdown.time_to_last.p99_ms", Digits: 1},
		{Label: "good missing", Path: "slowdown.missing_deliveries"},
		{Label: "good cut", Path: "good_cut"},
		{Label: "slow closed", Path: "slow_closed"},
		{Label: "server 4008", Path: "server_disconnects_4008"},
		{Label: "slow read 4008", Path: "slow_cut_4008"},
		{Label: "all cut after s", Path: "all_cut_after_ms", Scale: 0.001, Digits: 1},
	},
	"soak": {
		{Label: "RSS first MB", Path: "rss_first_window_bytes", Scale: 1.0 / (1 << 20), Digits: 1},
		{Label: "RSS last MB", Path: "rss_last_window_bytes", Scale: 1.0 / (1 << 20), Digits: 1},
		{Label: "RSS growth %", Path: "rss_growth_pct", Digits: 1},
		{Label: "goroutines growth %", Path: "goroutines_growth_pct", Digits: 1},
		{Label: "delivered", Path: "delivered"},
		{Label: "lost", Path: "lost"},
		{Label: "duplicated", Path: "duplicated"},
		{Label: "out of order", Path: "out_of_order"},
		{Label: "reconnects", Path: "reconnects"},
		{Label: "server 4008", Path: "server_4008"},
	},
}

// usageFigures follow every scenario's own.
var usageFigures = []Figure{
	{Label: "srv cpu", Path: "server_cpu_cores", Digits: 2},
	{Label: "cli cpu", Path: "client_cpu_cores", Digits: 2},
}

// Summarize reads <dir>/<row>.json from every run directory and writes a
// Markdown table per row: each figure's median over the runs, then the runs'
// values. Rows are named after the files; rows missing from a run are
// summarized over the runs that have them.
func Summarize(w io.Writer, dirs []string) error {
	runs := map[string][]map[string]any{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return err
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			row := strings.TrimSuffix(filepath.Base(f), ".json")
			runs[row] = append(runs[row], m)
		}
	}
	if len(runs) == 0 {
		return fmt.Errorf("bench: no results (*.json) in %v", dirs)
	}
	rows := make([]string, 0, len(runs))
	for r := range runs {
		rows = append(rows, r)
	}
	sort.Strings(rows)
	for _, row := range rows {
		results := runs[row]
		scenario, _ := results[0]["scenario"].(string)
		figs := append(append([]Figure(nil), Figures[scenario]...), usageFigures...)
		fmt.Fprintf(w, "\n#### %s (%s, %d runs)\n\n", row, scenario, len(results))
		fmt.Fprintln(w, "| figure | median | runs |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, f := range figs {
			var vals []float64
			for _, r := range results {
				if v, ok := f.value(r); ok {
					vals = append(vals, v)
				}
			}
			if len(vals) == 0 {
				continue
			}
			each := make([]string, len(vals))
			for i, v := range vals {
				each[i] = f.format(v)
			}
			fmt.Fprintf(w, "| %s | **%s** | %s |\n", f.Label, f.format(Median(vals)), strings.Join(each, ", "))
		}
	}
	return nil
}

// Median returns the middle value (the mean of the two middle ones for an
// even count).
func Median(vals []float64) float64 {
	s := append([]float64(nil), vals...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (f Figure) value(r map[string]any) (float64, bool) {
	num, den, divide := strings.Cut(f.Path, "/")
	v, ok := lookup(r, num)
	if !ok {
		return 0, false
	}
	if divide {
		d, ok := lookup(r, den)
		if !ok || d == 0 {
			return 0, false
		}
		v /= d
	}
	if f.Scale != 0 {
		v *= f.Scale
	}
	return v, true
}

func (f Figure) format(v float64) string {
	return strconv.FormatFloat(v, 'f', f.Digits, 64)
}

func lookup(m map[string]any, path string) (float64, bool) {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		if cur, ok = obj[k]; !ok {
			return 0, false
		}
	}
	v, ok := cur.(float64)
	return v, ok
}
