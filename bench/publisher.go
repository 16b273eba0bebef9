package bench

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// publisher is the coordinator's own client for the one-stream scenarios
// (broadcast, slow): it publishes stamped messages with dense sequence
// numbers on an open-loop schedule.
type publisher struct {
	conn   Conn
	stream string
	size   int
	next   uint64 // sequence number of the next message
	buf    []byte
	errs   atomic.Int64 // error replies (e.g. 4006: rate limited)
	closed atomic.Int32 // close code once the connection ended, -1 before
}

func (r *run) dialPublisher(ctx context.Context, stream string, size int) (*publisher, error) {
	ad, err := NewAdapter(r.env.Adapter)
	if err != nil {
		return nil, err
	}
	p := &publisher{stream: stream, size: size}
	p.closed.Store(-1)
	o := DialOptions{User: "publisher"}
	if l := r.env.locals(); len(l) > 0 {
		o.Local = net.ParseIP(l[len(l)-1])
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p.conn, err = ad.Dial(dctx, o, func(e *Event) {
		switch e.Kind {
		case EventError:
			p.errs.Add(1)
		case EventClosed:
			p.closed.Store(int32(e.Code))
		}
	})
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return p, nil
}

// publish sends rate messages a second for d and returns the sequence
// numbers sent. Each is stamped with the time it was due; when publishing
// falls over a second behind, the rest of the phase is sent as fast as the
// socket takes it (and the latency shows it).
func (p *publisher) publish(ctx context.Context, rate float64, d time.Duration) ([]uint64, error) {
	total := int(d.Seconds() * rate)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	from := p.next
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			select {
			case <-time.After(w):
			case <-ctx.Done():
				return seqRange(from, p.next), ctx.Err()
			}
		}
		p.buf = AppendStamp(p.buf[:0], p.next, due.UnixNano(), 0, p.size)
		if err := p.conn.Publish(p.stream, p.buf); err != nil {
			return seqRange(from, p.next), fmt.Errorf("publish: %w", err)
		}
		p.next++
	}
	return seqRange(from, p.next), nil
}

func (p *publisher) close() { p.conn.Close() }
