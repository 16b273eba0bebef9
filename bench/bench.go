// Package bench generates load against a real-time server and measures it.
// It owns the scenarios of DESIGN.md (idle, connect, broadcast, rooms,
// whisper, cursors, presence, slow) and a soak, the worker processes that
// hold the clients, the protocol adapters the clients speak (Huddle's own;
// others plug in through Adapter), latency histograms, and process statistics
// read from /proc.
//
// Clients run in worker processes, as few as the per-process file limit
// (20,000) allows, each reading all its connections with one epoll loop
// (reactor.go), spread over 127.0.0.x source addresses; the coordinator reads the
// server's and the workers' CPU from /proc beside every figure, because the
// client core can become what a run measures. Latency is always taken from
// a timestamp inside the payload to its receipt at a client.
//
// The package reads no flags or environment: cmd/huddle-bench does.
package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrNoProc means /proc is not there (not Linux), so no process statistics.
var ErrNoProc = errors.New("bench: /proc not available")

// ProcStats is a process's memory and CPU time, from /proc.
type ProcStats struct {
	RSS     int64         // resident set, bytes
	CPUTime time.Duration // user + system
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux architecture Go supports.
const clockTick = 100

// ReadProc reads /proc/<pid>/status and /proc/<pid>/stat.
func ReadProc(pid int) (ProcStats, error) {
	var st ProcStats
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat("/proc/self"); serr != nil {
				return st, ErrNoProc
			}
		}
		return st, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				st.RSS = kb << 10
			}
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	st.CPUTime, err = parseStatCPU(b)
	return st, err
}

// parseStatCPU returns utime+stime from the text of /proc/<pid>/stat. The
// fields after the command name (which may hold spaces and parentheses)
// start after the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bench: malformed /proc stat times")
	}
	return time.Duration(ut+st) * time.Second / clockTick, nil
}

// CoreTimes is, per CPU core, the busy and total time from /proc/stat.
// IRQ is the part of Busy spent in interrupts and softirqs, which on
// loopback is mostly the run's own network traffic, charged to no process.
type CoreTimes struct {
	Busy, IRQ, Total []int64 // clock ticks
}

// ReadCores reads the per-core lines of /proc/stat. It shows how busy each
// core was, including by processes that are not part of the run (a shared
// machine's noise).
func ReadCores() (CoreTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CoreTimes{}, ErrNoProc
	}
	return parseCores(b), nil
}

func parseCores(b []byte) CoreTimes {
	var ct CoreTimes
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var total, idle, irq int64
		for j, s := range f[1:] {
			v, _ := strconv.ParseInt(s, 10, 64)
			if j >= 8 { // guest times are already in user and nice
				break
			}
			total += v
			switch j {
			case 3, 4: // idle, iowait
				idle += v
			case 5, 6: // irq, softirq
				irq += v
			}
		}
		ct.Busy = append(ct.Busy, total-idle)
		ct.IRQ = append(ct.IRQ, irq)
		ct.Total = append(ct.Total, total)
	}
	return ct
}

// BusyFractions is how busy each core was between a and b (0..1), and how
// much of that was interrupts and softirqs.
func BusyFractions(a, b CoreTimes) (busy, irq []float64) {
	n := min(len(a.Busy), len(b.Busy), len(a.IRQ), len(b.IRQ))
	busy, irq = make([]float64, n), make([]float64, n)
	for i := 0; i < n; i++ {
		if dt := b.Total[i] - a.Total[i]; dt > 0 {
			busy[i] = round3(float64(b.Busy[i]-a.Busy[i]) / float64(dt))
			irq[i] = round3(float64(b.IRQ[i]-a.IRQ[i]) / float64(dt))
		}
	}
	return busy, irq
}
