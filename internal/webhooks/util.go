package webhooks

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateLog logs one line per interval at most, carrying how many events
// the lines it held back were about.
type rateLog struct {
	every time.Duration

	mu     sync.Mutex // guards the following
	last   time.Time
	held   int64 // events of the lines not logged since last
	heldLn int64 // lines not logged since last
}

func (r *rateLog) log(l *slog.Logger, level slog.Level, msg string, events int, args ...any) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < r.every {
		r.held += int64(events)
		r.heldLn++
		r.mu.Unlock()
		return
	}
	held, heldLn := r.held, r.heldLn
	r.last, r.held, r.heldLn = now, 0, 0
	r.mu.Unlock()
	args = append(args, "events", events)
	if heldLn > 0 {
		args = append(args, "since_last_log", strconv.FormatInt(heldLn, 10)+" more lines, "+strconv.FormatInt(held, 10)+" events")
	}
	l.Log(context.Background(), level, msg, args...)
}

// randDuration returns a random duration in [0, d).
func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// drain reads a little of a response's body, so its connection can be
// reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
}

// retryAfter reads a Retry-After header in seconds (an HTTP date is
// ignored: the backoff applies).
func retryAfter(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}
