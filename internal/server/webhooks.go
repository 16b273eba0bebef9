package server

import (
	"context"
	"strings"
	"sync"
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
	streamKey         = "s:"
	userKey           = "u:"
	presenceKeyPrefix = "p:" // then stream NUL user
)

// webhookSink turns the core's events into webhooks: presence diffs of this
// node's tracker directly, streams and users through the cluster-wide
// occupancy tracker, which reports each first and last exactly once.
type webhookSink struct {
	sender *webhooks.Sender
	occ    *occupancy.Tracker // nil when no endpoint wants stream or user events
	// What some endpoint wants, so nothing is built or counted for nobody.
	joins, leaves, streams, users bool

	// members are this node's presence members by stream and user; nil
	// when no endpoint wants presence events. The occupancy tracker counts
	// them across the cluster too: a user joins a stream when its first
	// connection joins, and leaves when its last has left (the presence
	// tracker's leaves waited for the grace already), so a reconnect is
	// neither a leave nor a join.
	mu      sync.Mutex              // guards members' contents
	members map[string]*presentUser // presence key -> this node's connections of the user there
}

// presentUser is a user's presence in a stream on this node: its
// connections there, and what the latest of them joined with (a join
// event's member). It goes when its last connection leaves.
type presentUser struct {
	clients map[string]struct{}
	last    protocol.Member
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
	if h.joins || h.leaves {
		h.members = make(map[string]*presentUser)
	}
	if h.streams || h.users || h.members != nil {
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
	if h.members == nil {
		return
	}
	// Only this node's own members count here: the tracker also reports
	// the leaves of a dead node's members it expired, and the cluster
	// count forgets those with the dead node's entries.
	for i := range diff.Joins {
		m := &diff.Joins[i]
		key := presenceKey(stream, m.User, m.Client)
		h.mu.Lock()
		u := h.members[key]
		if u == nil {
			u = &presentUser{clients: make(map[string]struct{}, 1)}
			h.members[key] = u
		}
		u.last = *m
		_, known := u.clients[m.Client]
		u.clients[m.Client] = struct{}{}
		h.mu.Unlock()
		if !known {
			h.occ.Inc(key)
		}
	}
	for _, l := range diff.Leaves {
		key := presenceKey(stream, l.User, l.Client)
		h.mu.Lock()
		u := h.members[key]
		known := false
		if u != nil {
			_, known = u.clients[l.Client]
		}
		if known {
			delete(u.clients, l.Client)
			if len(u.clients) == 0 {
				delete(h.members, key)
			}
		}
		h.mu.Unlock()
		if known {
			h.occ.DecNow(key)
		}
	}
}

// presenceKey names a user's presence in a stream; an anonymous member
// (no user) is its connection.
func presenceKey(stream, user, client string) string {
	if user == "" {
		user = "\x01" + client
	}
	return presenceKeyPrefix + stream + "\x00" + user
}

// presenceFirst: a user became present in a stream, told by this node.
// The event carries the member of the connection that joined last here.
func (h *webhookSink) presenceFirst(key string) {
	if !h.joins {
		return
	}
	ev := webhooks.Event{Type: webhooks.PresenceJoin}
	ev.Stream, ev.User = splitPresenceKey(key)
	h.mu.Lock()
	if u := h.members[key]; u != nil {
		ev.Client, ev.Info, ev.State = u.last.Client, toJSON(u.last.Info), toJSON(u.last.State)
	}
	h.mu.Unlock()
	h.sender.Emit(ev)
}

// presenceLast: a user is no longer present in a stream, told by this
// node (whose last connection there left, or whose sweep found a dead
// node's entry expired).
func (h *webhookSink) presenceLast(key string) {
	if h.leaves {
		ev := webhooks.Event{Type: webhooks.PresenceLeave}
		ev.Stream, ev.User = splitPresenceKey(key)
		h.sender.Emit(ev)
	}
}

// splitPresenceKey undoes presenceKey; an anonymous member has no user.
func splitPresenceKey(key string) (stream, user string) {
	stream, user, _ = strings.Cut(strings.TrimPrefix(key, presenceKeyPrefix), "\x00")
	if strings.HasPrefix(user, "\x01") {
		user = ""
	}
	return stream, user
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
	if strings.HasPrefix(key, presenceKeyPrefix) {
		h.presenceFirst(key)
		return
	}
	if stream, ok := strings.CutPrefix(key, streamKey); ok {
		h.sender.Emit(webhooks.Event{Type: webhooks.StreamOccupied, Stream: stream})
	}
	// A user's first connection has no event (yet).
}

// last: a key lost its last holder in the cluster, told by this node.
func (h *webhookSink) last(key string) {
	if strings.HasPrefix(key, presenceKeyPrefix) {
		h.presenceLast(key)
		return
	}
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
