// Package redis is the broker.Broker of a Huddle cluster: several nodes on
// one Redis (or Redis Cluster) share publications, whispers and presence
// diffs through Redis pub/sub, and history through storage/redis.
//
// Each stream has one pub/sub channel, "<prefix>pubsub:{<stream>}", whose
// hash tag puts it in the slot of the stream's history keys. Two kinds of
// messages travel on it:
//
//   - a publication: the envelope that storage/redis's AppendPublish
//     publishes from the same Lua script that assigns its offset and stores
//     it, "<offset>:<epoch>:<unix ms>:<payload>", so the channel carries a
//     stream's publications in offset order; payload holds the publisher's
//     user, client and data (see appendPubPayload);
//   - an ephemeral message: "e<node>:<payload>", where node is the random id
//     of the sending broker (a node skips its own: it delivered them
//     locally already) and payload is opaque here.
//
// A node subscribes to a stream's channel (SUBSCRIBE, or SSUBSCRIBE with
// sharded pub/sub) only while it has local subscribers of the stream, on a
// client of its own: a receive loop must not share a connection with
// commands. Subscribe returns once Redis confirmed the subscription, so
// whatever is published afterwards reaches the node.
//
// When a subscription breaks (Redis restarted, the connection dropped, a
// slot moved) the node subscribes again with backoff and then fills the gap
// from history: it reads the publications after the last one it delivered
// and delivers them before the live ones that arrived meanwhile. If history
// cannot fill the gap (a new epoch: Redis lost its data; or trimmed), it
// reports the loss to the Handler, which tells the subscribers to recover;
// the same happens for a gap seen in the live flow. Ephemeral messages sent
// during a break are gone; the Handler hears of that too.
//
// The package must not encode wire messages or know about connections.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/broker"
	"github.com/huddle-rt/huddle/storage"
	redislog "github.com/huddle-rt/huddle/storage/redis"
)

// DefaultPrefix starts every channel name when Config.Prefix is empty, as
// it starts every key of storage/redis and presence/redis.
const DefaultPrefix = "huddle:"

// ErrClosed is returned by Subscribe after Close.
var ErrClosed = errors.New("broker/redis: closed")

// ephemeralMark starts an ephemeral message ("e<node>:<payload>"), lostMark
// a loss marker ("l<node>": that node failed to relay an ephemeral message
// of the stream); a publication envelope starts with a digit.
const (
	ephemeralMark = 'e'
	lostMark      = 'l'
)

// readTimeout bounds the history read that fills a gap.
const readTimeout = 5 * time.Second

// Config tunes a Broker. Zero fields take the documented defaults.
type Config struct {
	// Prefix starts every channel name. Use the prefix of the Log, so that
	// deployments sharing a Redis stay apart. Default DefaultPrefix.
	Prefix string
	// Sharded uses sharded pub/sub (SSUBSCRIBE, SPUBLISH; Redis 7), which
	// a Redis Cluster needs so that a message is not broadcast to every
	// node of the cluster. It must agree with the Log's ShardedPubSub.
	// Default false.
	Sharded bool
	// PubSub configures the client the broker opens for its subscriptions
	// and closes in Close. InitAddress is required. DisableRetry is forced
	// on: the broker resubscribes itself, with backoff, and fills the gap.
	PubSub rueidis.ClientOption
	// RelayQueue bounds the ephemeral messages waiting to be relayed;
	// beyond it they are dropped. Default 10000.
	RelayQueue int
	// MaxPending bounds the live publications of one stream held while a
	// gap is filled from history; beyond it the stream's subscribers are
	// told publications were lost. Default 10000.
	MaxPending int
	// RetryMin and RetryMax bound the jittered exponential pause between
	// attempts to subscribe to a stream or read its history after a
	// failure. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.RelayQueue <= 0 {
		c.RelayQueue = 10000
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 10000
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(2*time.Second, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Deps are what a Broker is built on. The caller owns Log and Client and
// closes them after the Broker.
type Deps struct {
	// Log is the history that Publish appends to and gaps are filled
	// from. Required.
	Log *redislog.Log
	// Client sends commands: the PUBLISH of ephemeral messages. Required.
	Client rueidis.Client
	// Handler receives what the broker delivers. Required.
	Handler broker.Handler
}

// Stats counts a Broker's notable events since it started.
type Stats struct {
	// Streams is how many stream channels the node is subscribed to (or
	// trying to be).
	Streams int
	// Resubscribed counts subscriptions confirmed again after a break.
	Resubscribed int64
	// Gaps counts live publications that did not follow the last one
	// delivered, and so started a gap fill.
	Gaps int64
	// Lost counts gaps that history could not fill.
	Lost int64
	// RelayDropped counts ephemeral messages dropped: queue full or Redis
	// unreachable.
	RelayDropped int64
}

// Broker is a broker.Broker over Redis. It is safe for concurrent use.
type Broker struct {
	cfg     Config
	log     *redislog.Log
	client  rueidis.Client
	pubsub  rueidis.Client
	handler broker.Handler
	logger  *slog.Logger
	node    string // random id, marks this broker's ephemeral messages

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // receive loops, gap fills, the relay sender

	mu       sync.Mutex // guards the following
	channels map[string]*channel
	closed   bool

	relay relay

	resubscribed, gaps, lost atomic.Int64
	warned                   atomic.Int64 // unix nanos of the last rate-limited warning
}

var _ broker.Broker = (*Broker)(nil)

// New starts a Broker. It opens the subscription client from cfg.PubSub,
// which fails when Redis cannot be reached.
func New(cfg Config, deps Deps) (*Broker, error) {
	cfg.setDefaults()
	if deps.Log == nil || deps.Client == nil || deps.Handler == nil {
		return nil, errors.New("broker/redis: Deps.Log, Deps.Client and Deps.Handler are required")
	}
	opt := cfg.PubSub
	opt.DisableRetry = true
	if opt.ClientName == "" {
		opt.ClientName = "huddle-pubsub"
	}
	pubsub, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("broker/redis: connect the subscription client: %w", err)
	}
	var id [8]byte
	rand.Read(id[:])
	b := &Broker{
		cfg:      cfg,
		log:      deps.Log,
		client:   deps.Client,
		pubsub:   pubsub,
		handler:  deps.Handler,
		logger:   cfg.Logger,
		node:     hex.EncodeToString(id[:]),
		channels: make(map[string]*channel),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.relay.init(cfg.RelayQueue)
	b.wg.Add(1)
	go b.sendRelayed()
	return b, nil
}

// Node returns the broker's random id, which marks its ephemeral messages.
func (b *Broker) Node() string { return b.node }

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := len(b.channels)
	b.mu.Unlock()
	return Stats{
		Streams:      n,
		Resubscribed: b.resubscribed.Load(),
		Gaps:         b.gaps.Load(),
		Lost:         b.lost.Load(),
		RelayDropped: b.relay.dropped.Load(),
	}
}

var _ broker.Reporter = (*Broker)(nil)

// Events implements broker.Reporter with the counters of Stats.
func (b *Broker) Events() map[string]int64 {
	s := b.Stats()
	return map[string]int64{
		"resubscribed":  s.Resubscribed,
		"gap":           s.Gaps,
		"lost":          s.Lost,
		"relay_dropped": s.RelayDropped,
	}
}

// Publish stores pub and publishes it to the stream's channel in one Lua
// script (storage/redis AppendPublish). Every node subscribed to the stream,
// this one included, delivers it from the channel, so all of them deliver a
// stream's publications in offset order. While Redis is unreachable it
// fails with an error wrapping storage.ErrUnavailable.
func (b *Broker) Publish(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error) {
	payload := appendPubPayload(nil, pub.User, pub.Client, pub.Data)
	stored, pos, err := b.log.AppendPublish(ctx, stream, pub, opts, b.channelName(stream), payload)
	if err != nil {
		return storage.Publication{}, storage.Position{}, fmt.Errorf("broker/redis: publish: %w", err)
	}
	return stored, pos, nil
}

// PublishBatch publishes items as Publish does, all in one pipeline
// (storage/redis AppendPublishBatch): one round trip for the whole batch
// rather than one per item. Redis runs the scripts in the items' order, so
// each stream's items get their offsets, and reach every node, in order.
//
// A failed script does not stop the pipeline: the later items of its
// stream are refused (broker.ErrSkipped), but items of other streams that
// come after it are still stored, and their Results say so. The node
// keeps no state of its own about what it published (it delivers its own
// publications from the channel like any other node's), so a batch needs
// no bookkeeping beyond Publish's.
func (b *Broker) PublishBatch(ctx context.Context, items []broker.Item) ([]broker.Result, error) {
	in := make([]redislog.Item, len(items))
	for i, it := range items {
		in[i] = redislog.Item{
			Stream:  it.Stream,
			Pub:     it.Pub,
			Opts:    it.Opts,
			Channel: b.channelName(it.Stream),
			Payload: appendPubPayload(nil, it.Pub.User, it.Pub.Client, it.Pub.Data),
		}
	}
	out := make([]broker.Result, len(items))
	var first error
	for i, r := range b.log.AppendPublishBatch(ctx, in) {
		switch {
		case r.Err == nil:
			out[i] = broker.Result{Pub: r.Pub, Pos: r.Pos}
			continue
		case errors.Is(r.Err, redislog.ErrSkipped):
			out[i].Err = fmt.Errorf("broker/redis: publish to %q: %w", items[i].Stream, broker.ErrSkipped)
		default:
			out[i].Err = fmt.Errorf("broker/redis: publish: %w", r.Err)
		}
		if first == nil {
			first = fmt.Errorf("item %d: %w", i, out[i].Err)
		}
	}
	return out, first
}

// Subscribe counts one more local subscriber of stream and, for the first,
// subscribes the node to the stream's channel. It returns once Redis has
// confirmed the subscription, or with the error of the attempt (wrapping
// storage.ErrUnavailable when Redis cannot be reached), or ctx's. Either
// way the caller must call Unsubscribe once.
func (b *Broker) Subscribe(ctx context.Context, stream string) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return fmt.Errorf("broker/redis: subscribe to %q: %w", stream, ErrClosed)
	}
	ch := b.channels[stream]
	if ch == nil {
		ch = newChannel(b, stream)
		b.channels[stream] = ch
		b.wg.Add(1)
		go ch.run()
	}
	ch.refs++
	b.mu.Unlock()
	if err := ch.wait(ctx); err != nil {
		return fmt.Errorf("broker/redis: subscribe to %q: %w", stream, err)
	}
	ch.baseline(ctx)
	return nil
}

// Unsubscribe counts one local subscriber of stream less; after the last
// the node unsubscribes from the stream's channel.
func (b *Broker) Unsubscribe(_ context.Context, stream string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.channels[stream]
	if ch == nil {
		return nil
	}
	ch.refs--
	if ch.refs <= 0 {
		ch.stopLocked()
	}
	return nil
}

// PublishEphemeral queues payload for the other nodes subscribed to stream.
// It never blocks; when the queue is full the message is dropped.
func (b *Broker) PublishEphemeral(stream string, payload []byte, reportLoss bool) {
	b.relay.put(stream, payload, reportLoss)
}

// Close unsubscribes from every channel, sends the ephemeral messages still
// queued (for at most a second), stops every goroutine of the broker and
// closes its subscription client. Subscribe fails afterwards.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	for _, ch := range b.channels {
		ch.stopLocked()
	}
	b.mu.Unlock()
	b.relay.close()
	<-b.relay.done
	b.cancel()
	b.wg.Wait()
	b.pubsub.Close()
	return nil
}

// channelName returns the pub/sub channel of stream. The hash tag is that
// of the stream's history keys, as SPUBLISH from the append script needs.
func (b *Broker) channelName(stream string) string {
	return b.cfg.Prefix + "pubsub:{" + stream + "}"
}

func (b *Broker) subscribeCmd(name string) rueidis.Completed {
	if b.cfg.Sharded {
		return b.pubsub.B().Ssubscribe().Channel(name).Build()
	}
	return b.pubsub.B().Subscribe().Channel(name).Build()
}

func unsubscribeCmd(c rueidis.CommandClient, sharded bool, name string) rueidis.Completed {
	if sharded {
		return c.B().Sunsubscribe().Channel(name).Build()
	}
	return c.B().Unsubscribe().Channel(name).Build()
}

func (b *Broker) publishCmd(name, msg string) rueidis.Completed {
	if b.cfg.Sharded {
		return b.client.B().Spublish().Channel(name).Message(msg).Build()
	}
	return b.client.B().Publish().Channel(name).Message(msg).Build()
}

// warn logs at most one warning a second, so that an outage seen by every
// stream at once does not flood the log.
func (b *Broker) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := b.warned.Load()
	if now-last < int64(time.Second) || !b.warned.CompareAndSwap(last, now) {
		return
	}
	b.logger.Warn(msg, args...)
}

// backoff returns the pause before attempt (1, 2, ...): exponential from
// RetryMin to RetryMax, with the upper half jittered.
func (b *Broker) backoff(attempt int) time.Duration {
	d := b.cfg.RetryMax
	if attempt < 20 {
		d = min(b.cfg.RetryMin<<(attempt-1), b.cfg.RetryMax)
	}
	return d/2 + time.Duration(mrand.Uint64N(uint64(d/2)+1))
}

// sleep waits for d or until the broker closes; it reports whether the
// broker is still open.
func (b *Broker) sleep(d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-b.ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// appendPubPayload encodes what a subscriber needs of a publication besides
// its position and time: the user and client lengths as uvarints, each
// followed by its bytes, then the data to the end.
func appendPubPayload(dst []byte, user, client string, data []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(user)))
	dst = append(dst, user...)
	dst = binary.AppendUvarint(dst, uint64(len(client)))
	dst = append(dst, client...)
	return append(dst, data...)
}

// errBadPayload marks a message on a channel that this broker cannot read.
var errBadPayload = errors.New("broker/redis: malformed publication payload")

// decodePub turns an envelope into the publication it announces. Data
// aliases env.Payload.
func decodePub(env redislog.Envelope) (storage.Publication, error) {
	p := env.Payload
	user, p, ok := cutField(p)
	if !ok {
		return storage.Publication{}, fmt.Errorf("%w: user", errBadPayload)
	}
	client, p, ok := cutField(p)
	if !ok {
		return storage.Publication{}, fmt.Errorf("%w: client", errBadPayload)
	}
	return storage.Publication{
		Offset: env.Position.Offset,
		Data:   p,
		User:   string(user),
		Client: string(client),
		Time:   env.Time,
	}, nil
}

func cutField(p []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return nil, nil, false
	}
	return p[k : k+int(n)], p[k+int(n):], true
}
