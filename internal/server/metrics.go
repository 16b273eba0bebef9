package server

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/protocol"
)

// Reasons a message or connection was dropped.
const (
	dropSlowConsumer = iota
	dropRecoveryGap
	dropLiveGap          // a live publication skipped offsets (its connection gets 4010)
	dropWhisperRate      // a whisper over its sender's rate limit
	dropWhisperQueueFull // a whisper to a receiver whose queue is full
	dropPresenceRate     // a presence update over its sender's rate limit
	dropBrokerLost       // the broker reported messages of a stream lost (its subscribers get 4010)
	dropWhisperCacheFull // a whisper relayed but not cached: the node's cache is at its bound
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"slow_consumer", "recovery_gap", "live_gap", "whisper_rate", "whisper_queue_full", "presence_rate", "broker_lost", "whisper_cache_full"}

// Message types counted by metrics; anything else counts as "other".
var countedTypes = []string{
	protocol.TypeConnect, protocol.TypeSub, protocol.TypeUnsub, protocol.TypePub,
	protocol.TypeWhisper, protocol.TypeJoin, protocol.TypeUpdate, protocol.TypeLeave,
	protocol.TypeHistory, protocol.TypeWho, protocol.TypeRefresh, protocol.TypePing,
	protocol.TypePong, protocol.TypeConnected, protocol.TypeSubscribed,
	protocol.TypeUnsubscribed, protocol.TypePresence, protocol.TypeAck,
	protocol.TypeRefreshed, protocol.TypeError, protocol.TypeDisconnect, "invalid", "other",
}

// metrics keeps hot-path counters as atomics; OpenTelemetry reads them
// through observable instruments at scrape time, so counting costs one
// atomic add.
type metrics struct {
	handler http.Handler

	connected         atomic.Int64 // connections past connect
	subscriptions     atomic.Int64
	handshakeFailures atomic.Int64
	msgIn, msgOut     []atomic.Int64 // by countedTypes index
	drops             [numDropReasons]atomic.Int64
	disconnects       map[protocol.Code]*atomic.Int64

	latency metric.Float64Histogram
}

var typeIndexes = func() map[string]int {
	m := make(map[string]int, len(countedTypes))
	for i, name := range countedTypes {
		m[name] = i
	}
	return m
}()

func typeIndex(t string) int {
	if i, ok := typeIndexes[t]; ok {
		return i
	}
	return len(countedTypes) - 1
}

func (m *metrics) countIn(t string)         { m.msgIn[typeIndex(t)].Add(1) }
func (m *metrics) countOut(t string, n int) { m.msgOut[typeIndex(t)].Add(int64(n)) }

func (m *metrics) countDisconnect(code protocol.Code) {
	if v := m.disconnects[code]; v != nil {
		v.Add(1)
	}
}

func (m *metrics) observePublish(d time.Duration) {
	m.latency.Record(context.Background(), d.Seconds())
}

func newMetrics(s *Server) (*metrics, error) {
	m := &metrics{
		msgIn:       make([]atomic.Int64, len(countedTypes)),
		msgOut:      make([]atomic.Int64, len(countedTypes)),
		disconnects: make(map[protocol.Code]*atomic.Int64),
	}
	for _, c := range []protocol.Code{
		protocol.CodeNormal, protocol.CodeUnauthorized, protocol.CodeTokenExpired, protocol.CodeForbidden,
		protocol.CodeBadRequest, protocol.CodeTooLarge, protocol.CodeRateLimited, protocol.CodeSlowConsumer,
		protocol.CodeShutdown, protocol.CodeInsufficientState, protocol.CodeNoPong, protocol.CodeInternal,
	} {
		m.disconnects[c] = new(atomic.Int64)
	}
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	provider := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "huddle.publish.enqueue.duration"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
				Boundaries: []float64{1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1},
			}},
		)),
	)
	meter := provider.Meter("github.com/huddle-rt/huddle")
	if m.latency, err = meter.Float64Histogram("huddle.publish.enqueue.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a publication being stored to it being queued for every local subscriber.")); err != nil {
		return nil, err
	}
	gauge := func(name, desc string) metric.Int64ObservableGauge {
		g, e := meter.Int64ObservableGauge(name, metric.WithDescription(desc))
		if e != nil && err == nil {
			err = e
		}
		return g
	}
	counter := func(name, desc, unit string) metric.Int64ObservableCounter {
		c, e := meter.Int64ObservableCounter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		if e != nil && err == nil {
			err = e
		}
		return c
	}
	conns := gauge("huddle.connections", "Open WebSocket connections.")
	connected := gauge("huddle.clients", "Connections past connect.")
	subs := gauge("huddle.subscriptions", "Subscriptions on this node.")
	streams := gauge("huddle.streams", "Streams with subscribers on this node.")
	accepted := counter("huddle.connections.accepted", "WebSocket connections accepted.", "")
	bytesIn := counter("huddle.bytes.in", "Bytes read from WebSocket connections.", "By")
	bytesOut := counter("huddle.bytes.out", "Bytes written to WebSocket connections.", "By")
	framesOut := counter("huddle.frames.out", "WebSocket data frames written (each may batch messages).", "")
	msgIn := counter("huddle.messages.in", "Protocol messages received, by type.", "")
	msgOut := counter("huddle.messages.out", "Protocol messages queued to connections, by type.", "")
	drops := counter("huddle.queue.drops", "Connections or messages dropped, by reason.", "")
	disc := counter("huddle.disconnects", "Disconnects sent, by code.", "")
	hsFail := counter("huddle.handshake.failures", "WebSocket upgrades refused.", "")
	droppedConns := counter("huddle.connections.dropped", "Connections that ended without a close handshake or a server close.", "")
	conflated := counter("huddle.whispers.conflated", "Whispers that replaced an older queued one of the same sender and event.", "")
	brokerEvents := counter("huddle.broker.events", "Broker events by kind (Redis broker: resubscribed, gap, lost, relay_dropped).", "")
	if err != nil {
		return nil, err
	}
	typeAttrs := make([]metric.ObserveOption, len(countedTypes))
	for i, t := range countedTypes {
		typeAttrs[i] = metric.WithAttributes(attribute.String("type", t))
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		tr := &s.tr.Counters
		o.ObserveInt64(conns, int64(s.tr.Count()))
		o.ObserveInt64(connected, m.connected.Load())
		nStreams, nSubs := s.hub.Stats()
		o.ObserveInt64(subs, int64(nSubs))
		o.ObserveInt64(streams, int64(nStreams))
		o.ObserveInt64(accepted, tr.Accepted.Load())
		o.ObserveInt64(bytesIn, tr.BytesIn.Load())
		o.ObserveInt64(bytesOut, tr.BytesOut.Load())
		o.ObserveInt64(framesOut, tr.FramesOut.Load())
		o.ObserveInt64(hsFail, m.handshakeFailures.Load())
		o.ObserveInt64(conflated, tr.Conflated.Load())
		o.ObserveInt64(droppedConns, tr.Dropped.Load())
		for i := range countedTypes {
			if v := m.msgIn[i].Load(); v > 0 {
				o.ObserveInt64(msgIn, v, typeAttrs[i])
			}
			if v := m.msgOut[i].Load(); v > 0 {
				o.ObserveInt64(msgOut, v, typeAttrs[i])
			}
		}
		for i := range m.drops {
			n := m.drops[i].Load()
			if i == dropWhisperQueueFull {
				n += tr.WhisperQueueFull.Load()
			}
			o.ObserveInt64(drops, n, metric.WithAttributes(attribute.String("reason", dropReasonNames[i])))
		}
		for code, v := range m.disconnects {
			o.ObserveInt64(disc, v.Load(), metric.WithAttributes(attribute.Int("code", int(code))))
		}
		if r, ok := s.broker.(broker.Reporter); ok {
			for event, n := range r.Events() {
				o.ObserveInt64(brokerEvents, n, metric.WithAttributes(attribute.String("event", event)))
			}
		}
		return nil
	}, conns, connected, subs, streams, accepted, bytesIn, bytesOut, framesOut, msgIn, msgOut, drops, disc, hsFail, conflated, droppedConns, brokerEvents)
	if err != nil {
		return nil, err
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m, nil
}
