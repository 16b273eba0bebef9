package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/huddle-rt/huddle/protocol"
)

// Payload is a publication body that carries its sequence number and send
// time, so receivers measure latency from inside the message: msgpack
// bin of 16 bytes (seq, unix nanos) followed by padding to size.
func Payload(seq uint64, sent time.Time, size int) protocol.Raw {
	n := max(size, 16)
	b := make([]byte, 0, n+5)
	switch {
	case n <= 0xff:
		b = append(b, 0xc4, byte(n))
	case n <= 0xffff:
		b = append(b, 0xc5, byte(n>>8), byte(n))
	default:
		b = append(b, 0xc6, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(sent.UnixNano()))
	return append(b, make([]byte, n-16)...)
}

// ParsePayload reads what Payload wrote.
func ParsePayload(r protocol.Raw) (seq uint64, sent int64, ok bool) {
	var hdr int
	switch {
	case len(r) > 2 && r[0] == 0xc4:
		hdr = 2
	case len(r) > 3 && r[0] == 0xc5:
		hdr = 3
	case len(r) > 5 && r[0] == 0xc6:
		hdr = 5
	default:
		return 0, 0, false
	}
	if len(r) < hdr+16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(r[hdr:]), int64(binary.BigEndian.Uint64(r[hdr+8:])), true
}

// Recorder keeps, per sequence number, the worst latency and how many
// receivers saw it.
type Recorder struct {
	mu    sync.Mutex
	worst map[uint64]int64
	count map[uint64]int
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{worst: make(map[uint64]int64), count: make(map[uint64]int)}
}

// Record notes that seq, sent at sent (unix nanos), arrived now.
func (r *Recorder) Record(seq uint64, sent, now int64) {
	lat := now - sent
	r.mu.Lock()
	if lat > r.worst[seq] {
		r.worst[seq] = lat
	}
	r.count[seq]++
	r.mu.Unlock()
}

// SeqStat is one message's worst latency and receiver count.
type SeqStat struct {
	Seq   uint64 `json:"i"`
	Worst int64  `json:"w"`
	Count int    `json:"n"`
}

// Stats returns every recorded sequence.
func (r *Recorder) Stats() []SeqStat {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]SeqStat, 0, len(r.worst))
	for s, w := range r.worst {
		out = append(out, SeqStat{Seq: s, Worst: w, Count: r.count[s]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Subscriber connects, subscribes to stream and records every publication
// until ctx ends or the connection drops. ready is called once subscribed.
func Subscriber(ctx context.Context, url string, local net.IP, token, stream string, rec *Recorder, ready func(error)) {
	d := ws.Dialer{Protocols: []string{protocol.SubprotocolMsgpack}}
	if local != nil {
		nd := net.Dialer{LocalAddr: &net.TCPAddr{IP: local}}
		d.NetDial = nd.DialContext
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	conn, br, _, err := d.Dial(dctx, url)
	cancel()
	if err != nil {
		ready(err)
		return
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	frame, _ := protocol.EncodeFrame(protocol.Msgpack, &protocol.Connect{ID: 1, Token: token}, &protocol.Subscribe{ID: 2, S: stream})
	if err := ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewBinaryFrame(frame))); err != nil {
		ready(err)
		return
	}
	r := br
	if r == nil {
		r = bufio.NewReaderSize(conn, 4096)
	}
	subscribed := false
	var msgs []protocol.Decoded
	for {
		f, err := ws.ReadFrame(r)
		if err != nil {
			if !subscribed {
				ready(err)
			}
			return
		}
		now := time.Now().UnixNano()
		if f.Header.OpCode == ws.OpClose {
			if !subscribed {
				ready(errors.New("closed by server"))
			}
			return
		}
		msgs, err = protocol.DecodeServer(protocol.Msgpack, f.Payload, msgs[:0])
		if err != nil {
			continue
		}
		for _, d := range msgs {
			switch m := d.Msg.(type) {
			case *protocol.Pub:
				if seq, sent, ok := ParsePayload(m.Data); ok {
					rec.Record(seq, sent, now)
				}
			case *protocol.Subscribed:
				subscribed = true
				ready(nil)
			case *protocol.Ping:
				pong, _ := protocol.EncodeFrame(protocol.Msgpack, &protocol.Pong{})
				_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewBinaryFrame(pong)))
			case *protocol.ErrorReply:
				if !subscribed {
					ready(errors.New(m.Reason))
					return
				}
			}
		}
	}
}

// Percentile returns the p-th percentile (0-100) of sorted values.
func Percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}
