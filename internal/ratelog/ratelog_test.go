package ratelog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := &Limiter{Every: 50 * time.Millisecond}
	for range 10 {
		l.Log(log, slog.LevelInfo, "refused")
	}
	if n := strings.Count(buf.String(), "refused"); n != 1 {
		t.Fatalf("%d lines within the interval, want 1:\n%s", n, buf.String())
	}
	time.Sleep(60 * time.Millisecond)
	l.Log(log, slog.LevelInfo, "refused")
	if !strings.Contains(buf.String(), "also=9") {
		t.Fatalf("the next line does not count the 9 held back:\n%s", buf.String())
	}
	l.Log(log, slog.LevelDebug, "quiet") // below the handler's level: not even counted
	if strings.Contains(buf.String(), "quiet") {
		t.Fatal("a debug line at info level")
	}
}
