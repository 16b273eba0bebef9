package server

import (
	"sync"
	"time"
)

// pacer holds connections whose output is only whispers and that flushed
// less than one pace ago: their whispers wait for the pacer's next round and
// go out together in one write. A cursor room of 20 at 30 Hz sends each
// receiver 570 whispers a second; written as they come, that is a write(2)
// each, and on loopback a write costs as much as the work behind it. Paced,
// a receiver gets one write per pace, and a whisper waits at most one pace.
//
// Publications, replies and presence diffs are never held: queueing one
// flushes at once, whispers included.
type pacer struct {
	every time.Duration

	mu    sync.Mutex // guards conns and armed
	conns []*conn
	armed bool // a round is scheduled
	timer *time.Timer

	spare []*conn // the round's batch; owned by the timer's goroutine
}

func newPacer(every time.Duration) *pacer {
	p := &pacer{every: every}
	p.timer = time.AfterFunc(time.Hour, p.round)
	p.timer.Stop()
	return p
}

// hold queues c for the next round. The caller holds c.mu and has set
// c.corked; a connection is held at most once per round.
func (p *pacer) hold(c *conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	if !p.armed {
		p.armed = true
		p.timer.Reset(p.every)
	}
	p.mu.Unlock()
}

// round flushes every held connection.
func (p *pacer) round() {
	p.mu.Lock()
	batch := p.conns
	p.conns, p.spare = p.spare[:0], nil
	p.armed = false // the next hold schedules the next round
	p.mu.Unlock()
	for i, c := range batch {
		c.mu.Lock()
		c.corked = false
		start := len(c.queue) > 0 && c.state != stateClosed && c.wantFlushLocked()
		c.mu.Unlock()
		if start {
			c.kick()
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
