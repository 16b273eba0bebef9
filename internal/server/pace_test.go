package server_test

import (
	"testing"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// TestWhisperPace: whispers for a receiver written to less than a pace ago
// wait for the pacer and go out together, every one of them (a receiver
// that keeps up gets no conflation); a publication queued behind them goes
// out at once and takes them along.
func TestWhisperPace(t *testing.T) {
	const pace = time.Second
	h := start(t, func(o *harnessOpts) {
		o.cfg.WhisperPace = pace
		o.cfg.PingInterval = time.Hour // no ping may flush bob's queue or add a frame
	})
	const stream = "doc:pace"
	alice := whConnect(t, h, token(t, "alice"))
	bob := whConnect(t, h, token(t, "bob"))
	subscribe(t, alice.c, 1, stream, nil)
	subscribe(t, bob.c, 1, stream, nil)
	whSync(t, alice.c)
	whSync(t, bob.c)
	time.Sleep(pace) // bob's last write is a pace old: the next whisper goes at once

	sent := time.Now()
	whSend(t, alice.c, stream, "cursor", 0, 0)
	whWant(t, bob.c, stream, "cursor", alice.from, 0, 0)
	if d := time.Since(sent); d >= pace/2 {
		t.Errorf("the first whisper to an idle receiver took %v: it waited for the pacer", d)
	}

	// Twenty more within the pace: held, then written together, all twenty.
	framesBefore := whMetric(t, h, "huddle_frames_out_total")
	sent = time.Now()
	const n = 20
	for i := 1; i <= n; i++ {
		whSend(t, alice.c, stream, "cursor", i, 10*i)
	}
	whSync(t, alice.c) // alice's pong: one frame
	for i := 1; i <= n; i++ {
		whWant(t, bob.c, stream, "cursor", alice.from, i, 10*i)
	}
	if d := time.Since(sent); d < pace/2 {
		t.Errorf("whispers within a pace of the last write arrived after %v: not paced", d)
	}
	if frames := whMetric(t, h, "huddle_frames_out_total") - framesBefore; frames > 3 {
		t.Errorf("%d whispers and a pong took %v frames, want them batched (at most 3)", n, frames)
	}
	if c := whMetric(t, h, "huddle_whispers_conflated_total"); c != 0 {
		t.Errorf("%v whispers conflated for a receiver that keeps up", c)
	}

	// A whisper late in the pace waits only for the rest of it: it is due
	// one pace after bob's last write, not one pace after it came.
	time.Sleep(pace * 6 / 10)
	sent = time.Now()
	whSend(t, alice.c, stream, "cursor", n+1, 1)
	whWant(t, bob.c, stream, "cursor", alice.from, n+1, 1)
	if d := time.Since(sent); d > pace*3/4 {
		t.Errorf("a whisper 0.6 pace after the last write waited %v: not due one pace after that write", d)
	}

	// A held whisper, then a publication: both at once, in order.
	whSend(t, alice.c, stream, "cursor", n+2, 0)
	whSync(t, alice.c)
	sent = time.Now()
	if _, err := whPublish(h, stream, 1); err != nil {
		t.Fatal(err)
	}
	whWant(t, bob.c, stream, "cursor", alice.from, n+2, 0)
	if p := nextAs[*protocol.Pub](t, bob.c); p.S != stream {
		t.Fatalf("pub on %q", p.S)
	}
	if d := time.Since(sent); d >= pace/2 {
		t.Errorf("a publication behind a held whisper took %v: publications must not wait", d)
	}
}
