package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Common holds what every result has. Usage is the measured phase's (for a
// ramp, the whole ramp's; each step has its own too).
type Common struct {
	Scenario      string   `json:"scenario"`
	Time          string   `json:"time"` // start, RFC 3339 UTC
	Adapter       string   `json:"adapter"`
	URL           string   `json:"url"`
	StartedServer bool     `json:"started_server"`
	ServerArgs    []string `json:"server_args,omitempty"`
	ClientWorkers int      `json:"client_workers"`
	ClientSpin    string   `json:"client_spin"` // how long clients poll before they sleep (Env.Spin)
	Usage
	// ServerCounters are the server's Prometheus counters that changed
	// over the measured phase, by how much (messages and frames out,
	// drops by reason, conflated whispers, disconnects by code).
	ServerCounters map[string]float64 `json:"server_counters,omitempty"`
	// Notes are caveats: failures, a client-bound or noisy run.
	Notes []string `json:"notes,omitempty"`
}

// Head returns the common part.
func (c *Common) Head() *Common { return c }

// Result is a scenario's outcome: JSON by its fields, and a human table.
type Result interface {
	Head() *Common
	// Table returns column headers and rows.
	Table() (cols []string, rows [][]string)
}

// WriteJSON writes r as one line of JSON.
func WriteJSON(w io.Writer, r Result) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// TableData is one more table of a result.
type TableData struct {
	Cols []string
	Rows [][]string
}

// moreTables is a Result with tables after its main one.
type moreTables interface {
	MoreTables() []TableData
}

// WriteTable writes r's table, aligned, then its other tables and its
// notes.
func WriteTable(w io.Writer, r Result) {
	cols, rows := r.Table()
	writeAligned(w, cols, rows)
	if m, ok := r.(moreTables); ok {
		for _, t := range m.MoreTables() {
			fmt.Fprintln(w)
			writeAligned(w, t.Cols, t.Rows)
		}
	}
	for _, n := range r.Head().Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// writeAligned writes a table with aligned columns: the first left, the
// others right.
func writeAligned(w io.Writer, cols []string, rows [][]string) {
	width := make([]int, len(cols))
	for i, c := range cols {
		width[i] = len(c)
	}
	for _, row := range rows {
		for i, v := range row {
			if i < len(width) {
				width[i] = max(width[i], len(v))
			}
		}
	}
	line := func(vals []string) {
		var b strings.Builder
		for i, v := range vals {
			if i > 0 {
				b.WriteString("  ")
			}
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", width[i], v)
			} else {
				fmt.Fprintf(&b, "%*s", width[i], v)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(cols)
	for _, row := range rows {
		line(row)
	}
}

// Formatting helpers for table cells.
func fInt(v int64) string  { return fmt.Sprintf("%d", v) }
func fMS(v float64) string { return fmt.Sprintf("%.2f", v) }
func fCPU(u Usage) string {
	if !u.ServerMeasured {
		return "-"
	}
	return fmt.Sprintf("%.2f", u.ServerCPU)
}
func fCli(u Usage) string { return fmt.Sprintf("%.2f", u.ClientCPU) }
func fRSS(u Usage) string {
	if !u.ServerMeasured {
		return "-"
	}
	return fmt.Sprintf("%.1fM", float64(u.ServerRSS)/(1<<20))
}
func fRate(v float64) string { return fmt.Sprintf("%.0f", v) }
