package core

import (
	"sync/atomic"
	"time"

	"github.com/huddle-rt/huddle/protocol"
)

// Reasons a message or connection was dropped (Metrics.Drops).
const (
	DropSlowConsumer = iota
	DropRecoveryGap
	DropLiveGap          // a live publication skipped offsets (its connection gets 4010)
	DropWhisperRate      // a whisper over its sender's rate limit
	DropWhisperQueueFull // a whisper to a receiver whose queue is full
	DropPresenceRate     // a presence update over its sender's rate limit
	DropBrokerLost       // the broker reported messages of a stream lost (its subscribers get 4010)
	DropWhisperCacheFull // a whisper relayed but not cached: the node's cache is at its bound
	NumDropReasons
)

// DropReasonNames names the drop reasons, as metrics label them.
var DropReasonNames = [NumDropReasons]string{"slow_consumer", "recovery_gap", "live_gap", "whisper_rate", "whisper_queue_full", "presence_rate", "broker_lost", "whisper_cache_full"}

// CountedTypes are the message types counted by Metrics; anything else
// counts as "other".
var CountedTypes = []string{
	protocol.TypeConnect, protocol.TypeSub, protocol.TypeUnsub, protocol.TypePub,
	protocol.TypeWhisper, protocol.TypeJoin, protocol.TypeUpdate, protocol.TypeLeave,
	protocol.TypeHistory, protocol.TypeWho, protocol.TypeRefresh, protocol.TypeCompact, protocol.TypePing,
	protocol.TypePong, protocol.TypeConnected, protocol.TypeSubscribed,
	protocol.TypeUnsubscribed, protocol.TypePresence, protocol.TypeAck,
	protocol.TypeRefreshed, protocol.TypeError, protocol.TypeDisconnect, "invalid", "other",
}

// CountedCodes are the disconnect codes counted by Metrics.
var CountedCodes = []protocol.Code{
	protocol.CodeNormal, protocol.CodeUnauthorized, protocol.CodeTokenExpired, protocol.CodeForbidden,
	protocol.CodeBadRequest, protocol.CodeTooLarge, protocol.CodeRateLimited, protocol.CodeSlowConsumer,
	protocol.CodeShutdown, protocol.CodeInsufficientState, protocol.CodeNoPong, protocol.CodeInternal,
}

// Metrics are the node's hot-path counters, as atomics: counting costs one
// atomic add, and an exporter reads them at scrape time.
type Metrics struct {
	Connected     atomic.Int64 // sessions past connect
	Subscriptions atomic.Int64
	Published     atomic.Int64   // publications stored through this node (API and clients)
	Compactions   atomic.Int64   // document snapshots stored through this node
	MsgIn, MsgOut []atomic.Int64 // by CountedTypes index
	Drops         [NumDropReasons]atomic.Int64
	Disconnects   map[protocol.Code]*atomic.Int64 // by CountedCodes

	// ObservePublish records the time from a publication being stored to
	// it being queued for every local subscriber. Nil: not recorded.
	ObservePublish func(time.Duration)
	// ObserveDeliver records the time from a publication being stored
	// (its timestamp, which with Redis another node may have taken) to it
	// being queued for this node's subscribers: publish to deliver,
	// broker transit included. Nil: not recorded.
	ObserveDeliver func(time.Duration)
}

func newMetrics() *Metrics {
	m := &Metrics{
		MsgIn:       make([]atomic.Int64, len(CountedTypes)),
		MsgOut:      make([]atomic.Int64, len(CountedTypes)),
		Disconnects: make(map[protocol.Code]*atomic.Int64, len(CountedCodes)),
	}
	for _, c := range CountedCodes {
		m.Disconnects[c] = new(atomic.Int64)
	}
	return m
}

var typeIndexes = func() map[string]int {
	m := make(map[string]int, len(CountedTypes))
	for i, name := range CountedTypes {
		m[name] = i
	}
	return m
}()

func typeIndex(t string) int {
	if i, ok := typeIndexes[t]; ok {
		return i
	}
	return len(CountedTypes) - 1
}

// CountIn counts a received message of type t.
func (m *Metrics) CountIn(t string) { m.MsgIn[typeIndex(t)].Add(1) }

// CountOut counts n sent messages of type t.
func (m *Metrics) CountOut(t string, n int) { m.MsgOut[typeIndex(t)].Add(int64(n)) }

// CountDisconnect counts a disconnect sent with code.
func (m *Metrics) CountDisconnect(code protocol.Code) {
	if v := m.Disconnects[code]; v != nil {
		v.Add(1)
	}
}

func (m *Metrics) observePublish(d time.Duration) {
	if f := m.ObservePublish; f != nil {
		f(d)
	}
}

// observeDeliver records the publish-to-deliver time of a publication
// stored at stored (unix ms) and queued now; a clock behind another
// node's counts as 0.
func (m *Metrics) observeDeliver(stored int64, now time.Time) {
	if f := m.ObserveDeliver; f != nil && stored > 0 {
		f(max(now.Sub(time.UnixMilli(stored)), 0))
	}
}
