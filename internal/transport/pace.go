package transport

import (
	"sync"
	"time"
)

// pacer holds connections whose output is only whispers and that flushed
// less than one pace ago: their whispers wait until one pace after that
// flush and go out together in one write. A cursor room of 20 at 30 Hz
// sends each receiver 570 whispers a second; written as they come, that is
// a write(2) each, and on loopback a write costs as much as the work behind
// it. Paced, a receiver gets one write per pace, and a whisper waits at
// most one pace (plus half a grain), usually less.
//
// Publications, replies and presence diffs are never held: queueing one
// flushes at once, whispers included.
type pacer struct {
	every time.Duration
	grain time.Duration // rounds come this often while connections are held

	mu    sync.Mutex // guards conns, armed and at
	conns []held
	armed bool  // a round is scheduled
	at    int64 // when (unix nanos)
	timer *time.Timer

	spare []*Conn // the round's batch; owned by the timer's goroutine
}

// held is a connection waiting for its flush, due one pace after its last.
type held struct {
	c   *Conn
	due int64 // unix nanos
}

func newPacer(every time.Duration) *pacer {
	p := &pacer{every: every, grain: max(every/8, time.Millisecond)}
	p.timer = time.AfterFunc(time.Hour, p.round)
	p.timer.Stop()
	return p
}

// hold queues c until due (unix nanos): one pace after its last flush, so
// that a whisper waits only for what is left of the pace. The caller holds
// c.mu and has set c.corked; a connection is held at most once at a time.
func (p *pacer) hold(c *Conn, due int64) {
	p.mu.Lock()
	p.conns = append(p.conns, held{c, due})
	// Arm the timer, or bring it forward for a connection due before the
	// round it is armed for.
	if !p.armed || due < p.at-int64(p.grain/2) {
		p.armLocked(due, time.Now().UnixNano())
	}
	p.mu.Unlock()
}

// armLocked schedules the next round for due, at least a grain from now.
// Lock p.mu must be held.
func (p *pacer) armLocked(due, now int64) {
	d := max(time.Duration(due-now), p.grain)
	p.armed, p.at = true, now+int64(d)
	p.timer.Reset(d)
}

// round flushes every held connection that is due within half a grain and
// schedules the next round for the rest.
func (p *pacer) round() {
	now := time.Now().UnixNano()
	p.mu.Lock()
	batch := p.spare[:0]
	p.spare = nil
	keep, next := p.conns[:0], int64(0)
	for _, h := range p.conns {
		if h.due <= now+int64(p.grain/2) {
			batch = append(batch, h.c)
			continue
		}
		keep = append(keep, h)
		if next == 0 || h.due < next {
			next = h.due
		}
	}
	clear(p.conns[len(keep):])
	p.conns = keep
	p.armed = false // unless some are kept, the next hold schedules the next round
	if len(keep) > 0 {
		p.armLocked(next, now)
	}
	p.mu.Unlock()
	for i, c := range batch {
		c.mu.Lock()
		c.corked = false
		start := len(c.queue) > 0 && c.state != stateClosed && c.wantFlushLocked()
		c.mu.Unlock()
		if start {
			c.Kick()
		}
		batch[i] = nil
	}
	p.mu.Lock()
	if p.spare == nil && cap(batch) <= 1<<16 {
		p.spare = batch[:0]
	}
	p.mu.Unlock()
}

// stop ends the rounds; held connections are flushed by their next event.
func (p *pacer) stop() { p.timer.Stop() }
