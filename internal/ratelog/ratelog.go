// Package ratelog writes log lines at most once per interval each, with the
// count of those it held back, for events that can come in floods (auth
// failures, slow consumers): an operator sees that they happen and how
// often, and the log does not drown.
package ratelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter logs one kind of event.
type Limiter struct {
	Every time.Duration // at most one line per Every

	mu   sync.Mutex
	last time.Time
	held int
}

// Log writes msg at level with args and the count of events held back
// since the last line ("also"), unless a line went out less than Every ago;
// then it only counts. It never blocks on the log for long: the line is
// written by the caller, so call it outside locks.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, args ...any) {
	if log == nil || !log.Enabled(context.Background(), level) {
		return
	}
	if held, ok := l.Take(); ok {
		if held > 0 {
			args = append(args, "also", held, "over", l.Every.String())
		}
		log.Log(context.Background(), level, msg, args...)
	}
}

// Take reports whether a line may go out now, and how many events were
// held back since the last one; when not, it counts this one. It does no
// I/O: a caller holding a lock can decide, and write the line after.
func (l *Limiter) Take() (held int, ok bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.held++
		return 0, false
	}
	held = l.held
	l.last, l.held = now, 0
	return held, true
}
