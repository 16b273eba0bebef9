package bench

import (
	"fmt"
	"os"
	"runtime"
	"strings"
)

// DefaultCPUs is where the benchmark commands put the server and the
// clients by default (taskset lists): the server on core 0, the clients on
// the others; the clients unpinned with HUDDLE_BENCH_NOPIN set, and nothing
// pinned on one core.
func DefaultCPUs() (server, clients string) {
	n := runtime.NumCPU()
	switch {
	case n < 2:
		return "", ""
	case n == 2:
		server, clients = "0", "1"
	default:
		server, clients = "0", fmt.Sprintf("1-%d", n-1)
	}
	if os.Getenv("HUDDLE_BENCH_NOPIN") != "" {
		clients = ""
	}
	return server, clients
}

// CPUCount counts the CPUs in a taskset list such as "1-3,5".
func CPUCount(list string) int {
	n := 0
	for _, part := range strings.Split(list, ",") {
		var a, b int
		if k, _ := fmt.Sscanf(part, "%d-%d", &a, &b); k == 2 {
			n += b - a + 1
		} else if k, _ := fmt.Sscanf(part, "%d", &a); k == 1 {
			n++
		}
	}
	return n
}

// ListFlag is a repeatable string flag.
type ListFlag []string

func (l *ListFlag) String() string     { return strings.Join(*l, " ") }
func (l *ListFlag) Set(v string) error { *l = append(*l, v); return nil }
