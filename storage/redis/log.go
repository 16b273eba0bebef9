// Package redis is the storage.Log kept in Redis, for deployments of more
// than one node: every node appends to and reads from the same history.
//
// Each stream has two keys sharing the hash tag {stream}, so they live in
// one Redis Cluster slot: a meta hash with the epoch, the last offset and
// the age bound, and a Redis stream holding the retained publications under
// the IDs "<offset>-0". Append, Read and Top are each one Lua script, so
// offsets are assigned atomically with storing, and a read sees one moment
// of the stream. A meta that vanished (MetaTTL lapsed, or evicted under
// memory pressure) restarts the stream with a new epoch and clears the
// stored entries, so offsets restarting at 1 never mix with old ones.
//
// The package must not deliver publications or know about subscribers;
// AppendPublish only hands a broker the means to publish atomically with
// the append.
package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/storage"
)

// DefaultPrefix starts every key name when Config.Prefix is empty.
const DefaultPrefix = "huddle:"

// Config tunes a Log. The zero value is ready to use.
type Config struct {
	// Prefix starts the name of every key the log writes, so several
	// deployments can share a Redis. Default DefaultPrefix ("huddle:").
	// It should not contain '{' or '}', which would change the hash tag.
	Prefix string
	// ShardedPubSub makes AppendPublish use SPUBLISH (Redis 7 sharded
	// pub/sub, for Redis Cluster) instead of PUBLISH. Default false.
	ShardedPubSub bool
}

var _ storage.Log = (*Log)(nil)

// Log is a storage.Log in Redis. It is safe for concurrent use and holds
// no state of its own besides its configuration: any number of Logs, in
// any number of processes, may share one Redis.
//
// Publication times come from the Redis server's clock, so they are
// comparable across nodes. When the backend cannot be reached, methods
// return an error wrapping storage.ErrUnavailable; if the connection broke
// after an Append was sent, the publication may still have been stored.
type Log struct {
	client     rueidis.Client
	prefix     string
	publishCmd string
}

// New returns a Log storing into Redis through client. The caller keeps
// ownership of client and closes it after the Log's last use.
func New(client rueidis.Client, cfg Config) *Log {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	l := &Log{client: client, prefix: cfg.Prefix, publishCmd: "PUBLISH"}
	if cfg.ShardedPubSub {
		l.publishCmd = "SPUBLISH"
	}
	return l
}

// Append stores pub under the next offset of stream. It stamps pub.Time
// with the Redis server's time and applies opts as the stream's bounds from
// now on.
func (l *Log) Append(ctx context.Context, stream string, pub storage.Publication, opts storage.Options) (storage.Publication, storage.Position, error) {
	pub, pos, err := l.append(ctx, stream, pub, opts, "", "", nil)
	if err != nil {
		return storage.Publication{}, storage.Position{}, wrap("append to", stream, err)
	}
	return pub, pos, nil
}

// AppendPublish is Append that also publishes, in the same atomic step, an
// envelope (see DecodeEnvelope) holding the assigned position and time and
// payload to the pub/sub channel. No other publish to channel can come
// between this append and its message, so subscribers of channel receive
// a stream's offsets in the order they were assigned.
//
// payload is opaque here; a broker puts in it whatever its subscribers
// need besides the position. On Redis Cluster with ShardedPubSub, channel
// must carry the stream's hash tag "{stream}" so that it maps to the
// stream's slot.
func (l *Log) AppendPublish(ctx context.Context, stream string, pub storage.Publication, opts storage.Options, channel string, payload []byte) (storage.Publication, storage.Position, error) {
	pub, pos, err := l.append(ctx, stream, pub, opts, l.publishCmd, channel, payload)
	if err != nil {
		return storage.Publication{}, storage.Position{}, wrap("append and publish to", stream, err)
	}
	return pub, pos, nil
}

func (l *Log) append(ctx context.Context, stream string, pub storage.Publication, opts storage.Options, publishCmd, channel string, payload []byte) (storage.Publication, storage.Position, error) {
	if err := ctx.Err(); err != nil {
		return storage.Publication{}, storage.Position{}, err
	}
	opts = normalize(opts)
	keys := []string{l.metaKey(stream), l.streamKey(stream)}
	args := []string{
		newEpoch(),
		millis(opts.MetaTTL),
		strconv.Itoa(opts.Size),
		millis(opts.TTL),
		string(pub.Data),
		pub.User,
		pub.Client,
		publishCmd,
		channel,
		string(payload),
	}
	reply, err := appendScript.Exec(ctx, l.client, keys, args).ToArray()
	if err != nil {
		return storage.Publication{}, storage.Position{}, err
	}
	if len(reply) != 3 {
		return storage.Publication{}, storage.Position{}, fmt.Errorf("%w: append script returned %d values", errReply, len(reply))
	}
	offset, err1 := reply[0].AsUint64()
	epoch, err2 := reply[1].ToString()
	now, err3 := reply[2].AsInt64()
	if err := errors.Join(err1, err2, err3); err != nil {
		return storage.Publication{}, storage.Position{}, fmt.Errorf("%w: append script: %w", errReply, err)
	}
	pub.Offset, pub.Time = offset, now
	return pub, storage.Position{Epoch: epoch, Offset: offset}, nil
}

// Read returns the publications of stream selected by q. Reading a stream
// never published to creates its meta, like Top, so that the epoch the
// caller sees is the one later Appends use.
func (l *Log) Read(ctx context.Context, stream string, q storage.Query) (storage.Result, error) {
	res, err := l.read(ctx, stream, q)
	if err != nil && !errors.Is(err, storage.ErrEpochMismatch) {
		return storage.Result{}, wrap("read", stream, err)
	}
	return res, err
}

func (l *Log) read(ctx context.Context, stream string, q storage.Query) (storage.Result, error) {
	if err := ctx.Err(); err != nil {
		return storage.Result{}, err
	}
	reverse := "0"
	if q.Reverse {
		reverse = "1"
	}
	keys := []string{l.metaKey(stream), l.streamKey(stream)}
	args := []string{
		newEpoch(),
		millis(storage.DefaultMetaTTL),
		q.After.Epoch,
		strconv.FormatUint(q.After.Offset, 10),
		strconv.Itoa(max(q.Limit, 0)),
		reverse,
	}
	reply, err := readScript.Exec(ctx, l.client, keys, args).ToArray()
	if err != nil {
		return storage.Result{}, err
	}
	if len(reply) != 5 {
		return storage.Result{}, fmt.Errorf("%w: read script returned %d values", errReply, len(reply))
	}
	var res storage.Result
	var status, more int64
	var err1, err2, err3, err4 error
	res.Top.Epoch, err1 = reply[0].ToString()
	res.Top.Offset, err2 = reply[1].AsUint64()
	status, err3 = reply[2].AsInt64()
	more, err4 = reply[3].AsInt64()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return storage.Result{}, fmt.Errorf("%w: read script: %w", errReply, err)
	}
	if status == readMismatch {
		return storage.Result{Top: res.Top}, storage.ErrEpochMismatch
	}
	res.Complete = status == readComplete
	res.More = more != 0
	if res.Pubs, err = parsePubs(reply[4]); err != nil {
		return storage.Result{}, err
	}
	return res, nil
}

// parsePubs decodes the flat publication list of readScript. The strings
// rueidis returns are copied into fresh byte slices, so results never alias
// one another.
func parsePubs(m rueidis.RedisMessage) ([]storage.Publication, error) {
	flat, err := m.ToArray()
	if err != nil {
		return nil, fmt.Errorf("%w: read script publications: %w", errReply, err)
	}
	if len(flat)%5 != 0 {
		return nil, fmt.Errorf("%w: read script returned %d publication fields", errReply, len(flat))
	}
	if len(flat) == 0 {
		return nil, nil
	}
	pubs := make([]storage.Publication, len(flat)/5)
	for i := range pubs {
		f := flat[5*i : 5*i+5]
		p := &pubs[i]
		var data string
		var err1, err2, err3, err4, err5 error
		p.Offset, err1 = f[0].AsUint64()
		data, err2 = f[1].ToString()
		p.User, err3 = f[2].ToString()
		p.Client, err4 = f[3].ToString()
		p.Time, err5 = f[4].AsInt64()
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("%w: read script publication #%d: %w", errReply, i, err)
		}
		p.Data = []byte(data)
	}
	return pubs, nil
}

// Top returns the current position of stream, creating its meta with a
// fresh epoch and offset 0 if the stream is unknown.
func (l *Log) Top(ctx context.Context, stream string) (storage.Position, error) {
	pos, err := l.top(ctx, stream)
	if err != nil {
		return storage.Position{}, wrap("top of", stream, err)
	}
	return pos, nil
}

func (l *Log) top(ctx context.Context, stream string) (storage.Position, error) {
	if err := ctx.Err(); err != nil {
		return storage.Position{}, err
	}
	keys := []string{l.metaKey(stream), l.streamKey(stream)}
	args := []string{newEpoch(), millis(storage.DefaultMetaTTL)}
	reply, err := topScript.Exec(ctx, l.client, keys, args).ToArray()
	if err != nil {
		return storage.Position{}, err
	}
	if len(reply) != 2 {
		return storage.Position{}, fmt.Errorf("%w: top script returned %d values", errReply, len(reply))
	}
	epoch, err1 := reply[0].ToString()
	offset, err2 := reply[1].AsUint64()
	if err := errors.Join(err1, err2); err != nil {
		return storage.Position{}, fmt.Errorf("%w: top script: %w", errReply, err)
	}
	return storage.Position{Epoch: epoch, Offset: offset}, nil
}

// metaKey names the hash holding the stream's epoch, offset and age bound.
// The kind comes before the hash tag so that no stream name can make one
// stream's key equal another's.
func (l *Log) metaKey(stream string) string {
	return l.prefix + "history-meta:{" + stream + "}"
}

// streamKey names the Redis stream holding the retained publications.
func (l *Log) streamKey(stream string) string {
	return l.prefix + "history:{" + stream + "}"
}

// errReply marks a script reply of an unexpected shape: a bug or a foreign
// key, not an outage.
var errReply = errors.New("unexpected reply")

// wrap names the operation in err and marks errors that are neither the
// caller's context, nor an error reply from Redis, nor a malformed reply as
// storage.ErrUnavailable.
func wrap(op, stream string, err error) error {
	_, redisErr := rueidis.IsRedisErr(err)
	if redisErr || errors.Is(err, errReply) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("storage/redis: %s %q: %w", op, stream, err)
	}
	return fmt.Errorf("storage/redis: %s %q: %w: %w", op, stream, storage.ErrUnavailable, err)
}

// normalize replaces unset or negative bounds with their meaning, as the
// memory log does.
func normalize(o storage.Options) storage.Options {
	if o.Size < 0 {
		o.Size = 0
	}
	if o.TTL < 0 {
		o.TTL = 0
	}
	if o.MetaTTL <= 0 {
		o.MetaTTL = storage.DefaultMetaTTL
	}
	return o
}

// millis formats d in whole milliseconds, rounding up so that a positive
// duration never becomes 0 (which means "no bound" for an age and "now" for
// PEXPIRE).
func millis(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(int64((d+time.Millisecond-1)/time.Millisecond), 10)
}

// newEpoch returns 8 random bytes in hex. Each script call gets one and
// uses it only if it has to start the stream anew, so epochs come from
// crypto/rand rather than from Lua's predictable generator.
func newEpoch() string {
	var b [8]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}
