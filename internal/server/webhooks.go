package server

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/huddle-rt/huddle/internal/core"
	"github.com/huddle-rt/huddle/internal/webhooks"
	"github.com/huddle-rt/huddle/internal/webhooks/occupancy"
	"github.com/huddle-rt/huddle/protocol"
)

// Occupancy keys: a stream with subscribers, a user with connections.
const (
	streamKey = "s:"
	userKey   = "u:"
)

// webhookSink turns the core's events into webhooks: presence diffs of this
// node's tracker directly, streams and users through the cluster-wide
// occupancy tracker, which reports each first and last exactly once.
type webhookSink struct {
	sender *webhooks.Sender
	occ    *occupancy.Tracker // nil when no endpoint wants stream or user events
	// What some endpoint wants, so nothing is built or counted for nobody.
	joins, leaves, streams, users bool
}

var _ core.Events = (*webhookSink)(nil)

// newWebhookSink starts the webhook sender and the occupancy tracker; nil when
// no endpoint is configured.
func newWebhookSink(cfg *Config, deps *Deps) (*webhookSink, error) {
	wc := cfg.Webhooks
	if len(wc.Endpoints) == 0 {
		return nil, nil
	}
	if wc.Node == "" {
		wc.Node = cfg.Node
	}
	if wc.Logger == nil {
		wc.Logger = cfg.Logger
	}
	s, err := webhooks.New(wc)
	if err != nil {
		return nil, err
	}
	h := &webhookSink{
		sender:  s,
		joins:   s.Wants(webhooks.PresenceJoin),
		leaves:  s.Wants(webhooks.PresenceLeave),
		streams: s.Wants(webhooks.StreamOccupied) || s.Wants(webhooks.StreamVacated),
		users:   s.Wants(webhooks.UserDisconnected),
	}
	if h.streams || h.users {
		store := deps.Occupancy
		if store == nil {
			store = occupancy.NewMemoryStore()
		}
		log := cfg.Logger
		h.occ = occupancy.NewTracker(occupancy.Config{
			Node: cfg.Node + "-" + uuid.NewString()[:8], // unique per process, restarts included
			TTL:  cfg.WebhookNodeTTL,
			// A reconnect within the presence grace neither vacates its
			// streams nor disconnects its user.
			Linger:  cfg.Presence.Grace,
			OnError: func(err error) { log.Warn("webhooks: occupancy store failed; retrying", "err", err) },
		}, store, h.first, h.last)
	}
	return h, nil
}

// events returns h as the core's observer; nil (an interface without a
// value) when there are no webhooks.
func (h *webhookSink) events() core.Events {
	if h == nil {
		return nil
	}
	return h
}

func (h *webhookSink) OnOccupied(stream string) {
	if h.streams {
		h.occ.Inc(streamKey + stream)
	}
}

func (h *webhookSink) OnVacated(stream string) {
	if h.streams {
		h.occ.Dec(streamKey + stream)
	}
}

func (h *webhookSink) OnUserConnected(user string) {
	if h.users {
		h.occ.Inc(userKey + user)
	}
}

func (h *webhookSink) OnUserDisconnected(user string) {
	if h.users {
		h.occ.Dec(userKey + user)
	}
}

func (h *webhookSink) OnPresence(stream string, diff *protocol.Presence) {
	if h.joins {
		for i := range diff.Joins {
			m := &diff.Joins[i]
			h.sender.Emit(webhooks.Event{Type: webhooks.PresenceJoin, Stream: stream, User: m.User, Client: m.Client, Info: toJSON(m.Info), State: toJSON(m.State)})
		}
	}
	if h.leaves {
		for _, l := range diff.Leaves {
			h.sender.Emit(webhooks.Event{Type: webhooks.PresenceLeave, Stream: stream, User: l.User, Client: l.Client})
		}
	}
}

// toJSON converts a member's msgpack info or state; nil when empty or not
// convertible.
func toJSON(r protocol.Raw) []byte {
	if r.IsNil() {
		return nil
	}
	b, err := r.MarshalJSON()
	if err != nil {
		return nil
	}
	return b
}

// first: a key got its first holder in the cluster, told by this node.
func (h *webhookSink) first(key string) {
	if stream, ok := strings.CutPrefix(key, streamKey); ok {
		h.sender.Emit(webhooks.Event{Type: webhooks.StreamOccupied, Stream: stream})
	}
	// A user's first connection has no event (yet).
}

// last: a key lost its last holder in the cluster, told by this node.
func (h *webhookSink) last(key string) {
	if stream, ok := strings.CutPrefix(key, streamKey); ok {
		h.sender.Emit(webhooks.Event{Type: webhooks.StreamVacated, Stream: stream})
	} else if user, ok := strings.CutPrefix(key, userKey); ok {
		h.sender.Emit(webhooks.Event{Type: webhooks.UserDisconnected, User: user})
	}
}

// close releases this node's streams and users in the cluster (the node
// has no connections left, so they are vacated and disconnected here, or
// by the node that still holds them), then flushes the queue, each within
// the drain timeout.
func (h *webhookSink) close() {
	if h == nil {
		return
	}
	timeout := h.drainTimeout()
	if h.occ != nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		h.occ.Close(ctx)
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	h.sender.Close(ctx)
	cancel()
}

func (h *webhookSink) drainTimeout() time.Duration { return h.sender.DrainTimeout() }

// metrics registers the webhook instruments: events by result, the queue.
func (h *webhookSink) metrics(meter metric.Meter) error {
	if h == nil {
		return nil
	}
	events, err := meter.Int64ObservableCounter("huddle.webhook.events",
		metric.WithDescription("Webhook events by result: sent (2xx), failed (refused, not retried), expired (retried too long), dropped (queue full, or unsent at the end of a drain)."))
	if err != nil {
		return err
	}
	queued, err := meter.Int64ObservableGauge("huddle.webhook.queue", metric.WithDescription("Webhook events waiting to be sent, all endpoints."))
	if err != nil {
		return err
	}
	retries, err := meter.Int64ObservableCounter("huddle.webhook.retries", metric.WithDescription("Webhook requests that were attempts after a batch's first."))
	if err != nil {
		return err
	}
	results := []string{"sent", "failed", "expired", "dropped"}
	attrs := make([]metric.ObserveOption, len(results))
	for i, r := range results {
		attrs[i] = metric.WithAttributes(attribute.String("result", r))
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := h.sender.Stats()
		for i, v := range []int64{st.Sent, st.Failed, st.Expired, st.Dropped} {
			o.ObserveInt64(events, v, attrs[i])
		}
		o.ObserveInt64(queued, st.Queued)
		o.ObserveInt64(retries, st.Retries)
		return nil
	}, events, queued, retries)
	return err
}
