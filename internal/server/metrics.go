package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/hooks"
)

// metrics exports the node's counters (core.Metrics, the transport's) as
// OpenTelemetry instruments read at scrape time, served as Prometheus.
type metrics struct {
	handler http.Handler
	latency metric.Float64Histogram
	deliver metric.Float64Histogram
}

func newMetrics(s *Server) (*metrics, error) {
	m := &metrics{}
	cm := s.node.Metrics()
	reg := prometheus.NewRegistry()
	// The Go runtime's and the process's own (go_*, process_*).
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: "huddle.publish.deliver.duration"},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{
				// Publication timestamps are in milliseconds.
				Boundaries: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5},
			}},
		)),
	)
	meter := provider.Meter("github.com/huddle-rt/huddle")
	if m.latency, err = meter.Float64Histogram("huddle.publish.enqueue.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a publication being stored to it being queued for every local subscriber.")); err != nil {
		return nil, err
	}
	if m.deliver, err = meter.Float64Histogram("huddle.publish.deliver.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a publication being stored (its timestamp, in ms) to it being queued for this node's subscribers: publish to deliver, the broker's transit included.")); err != nil {
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
	docBytes := gauge("huddle.documents.bytes", "What document streams hold in this node's memory (--broker memory): snapshots and publications, counted as --document-memory counts them.")
	connected := gauge("huddle.clients", "Connections past connect.")
	subs := gauge("huddle.subscriptions", "Subscriptions on this node.")
	streams := gauge("huddle.streams", "Streams with subscribers on this node.")
	accepted := counter("huddle.connections.accepted", "WebSocket connections accepted.", "")
	bytesIn := counter("huddle.received", "Bytes read from client connections.", "By")
	bytesOut := counter("huddle.sent", "Bytes written to client connections.", "By")
	redisErrors := counter("huddle.redis.errors", "Redis commands that failed (not counting a nil answer).", "")
	framesOut := counter("huddle.frames.out", "WebSocket data frames written (each may batch messages).", "")
	msgIn := counter("huddle.messages.in", "Protocol messages received, by type.", "")
	msgOut := counter("huddle.messages.out", "Protocol messages queued to connections, by type.", "")
	drops := counter("huddle.queue.drops", "Connections or messages dropped, by reason.", "")
	disc := counter("huddle.disconnects", "Disconnects sent, by code.", "")
	hsFail := counter("huddle.handshake.failures", "WebSocket upgrades refused.", "")
	droppedConns := counter("huddle.connections.dropped", "Connections that ended without a close handshake or a server close.", "")
	compactions := counter("huddle.documents.compactions", "Document snapshots (compact) stored through this node.", "")
	conflated := counter("huddle.whispers.conflated", "Whispers that replaced an older queued one of the same sender and event.", "")
	brokerEvents := counter("huddle.broker.events", "Broker events by kind (Redis broker: resubscribed, gap, lost, relay_dropped).", "")
	hookCalls := counter("huddle.hook.calls", "Calls to the /ws clients' hooks by hook and outcome (allowed: answered yes; denied: answered no; unavailable: no answer, timed out or garbage).", "")
	backendEvents := counter("huddle.cable.backend.events", "/cable application backend events by kind (errors: calls that failed or were refused with ERROR; disconnects_dropped: disconnect calls dropped from a full queue; commands_dropped: commands dropped when 64 of their connection's waited; retries: calls made again after the backend could not be reached).", "")
	if err != nil {
		return nil, err
	}
	cm.ObservePublish = func(d time.Duration) { m.latency.Record(context.Background(), d.Seconds()) }
	cm.ObserveDeliver = func(d time.Duration) { m.deliver.Record(context.Background(), d.Seconds()) }
	typeAttrs := make([]metric.ObserveOption, len(core.CountedTypes))
	for i, t := range core.CountedTypes {
		typeAttrs[i] = metric.WithAttributes(attribute.String("type", t))
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		tr := &s.tr.Counters
		o.ObserveInt64(conns, int64(s.tr.Count()))
		if s.docBytes != nil {
			o.ObserveInt64(docBytes, s.docBytes())
		}
		o.ObserveInt64(connected, cm.Connected.Load())
		nStreams, nSubs := s.node.Stats()
		o.ObserveInt64(subs, int64(nSubs))
		o.ObserveInt64(streams, int64(nStreams))
		o.ObserveInt64(accepted, tr.Accepted.Load())
		o.ObserveInt64(bytesIn, tr.BytesIn.Load())
		o.ObserveInt64(bytesOut, tr.BytesOut.Load())
		o.ObserveInt64(framesOut, tr.FramesOut.Load())
		o.ObserveInt64(hsFail, s.handshakeFailures.Load())
		o.ObserveInt64(conflated, tr.Conflated.Load())
		o.ObserveInt64(compactions, cm.Compactions.Load())
		o.ObserveInt64(droppedConns, tr.Dropped.Load())
		for i := range core.CountedTypes {
			if v := cm.MsgIn[i].Load(); v > 0 {
				o.ObserveInt64(msgIn, v, typeAttrs[i])
			}
			if v := cm.MsgOut[i].Load(); v > 0 {
				o.ObserveInt64(msgOut, v, typeAttrs[i])
			}
		}
		for i := range cm.Drops {
			n := cm.Drops[i].Load()
			if i == core.DropWhisperQueueFull {
				n += tr.WhisperQueueFull.Load()
			}
			o.ObserveInt64(drops, n, metric.WithAttributes(attribute.String("reason", core.DropReasonNames[i])))
		}
		for code, v := range cm.Disconnects {
			o.ObserveInt64(disc, v.Load(), metric.WithAttributes(attribute.Int("code", int(code))))
		}
		if r, ok := s.node.Broker().(broker.Reporter); ok {
			for event, n := range r.Events() {
				o.ObserveInt64(brokerEvents, n, metric.WithAttributes(attribute.String("event", event)))
			}
		}
		errs, dropped, cmdDropped := s.cable.BackendStats()
		o.ObserveInt64(backendEvents, errs, metric.WithAttributes(attribute.String("event", "errors")))
		o.ObserveInt64(backendEvents, dropped, metric.WithAttributes(attribute.String("event", "disconnects_dropped")))
		o.ObserveInt64(backendEvents, cmdDropped, metric.WithAttributes(attribute.String("event", "commands_dropped")))
		if s.hooks != nil {
			for _, hk := range []hooks.Hook{hooks.Connect, hooks.Subscribe, hooks.Publish} {
				st := s.hooks.Stats(hk)
				for outcome, n := range map[string]int64{"allowed": st.Allowed.Load(), "denied": st.Denied.Load(), "unavailable": st.Unavailable.Load()} {
					o.ObserveInt64(hookCalls, n, metric.WithAttributes(attribute.String("hook", hk.String()), attribute.String("outcome", outcome)))
				}
			}
		}
		if s.rpc != nil {
			o.ObserveInt64(backendEvents, s.rpc.Retries(), metric.WithAttributes(attribute.String("event", "retries")))
		}
		if s.redisErrors != nil {
			o.ObserveInt64(redisErrors, s.redisErrors())
		}
		return nil
	}, conns, connected, subs, streams, accepted, bytesIn, bytesOut, framesOut, msgIn, msgOut, drops, disc, hsFail, conflated, droppedConns, brokerEvents, backendEvents, hookCalls, redisErrors, compactions, docBytes)
	if err != nil {
		return nil, err
	}
	if err := s.webhooks.metrics(meter); err != nil {
		return nil, err
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return m, nil
}
