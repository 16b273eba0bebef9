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
// A stream's history is bounded by count (Options.Size, kept as the Redis
// stream's MAXLEN), by age (Options.TTL: older entries are skipped by
// reads, and the whole stream key expires one TTL after its newest
// entry), and, with Config.MaxStreamBytes, by bytes. The bound across all
// streams is Redis's own maxmemory.
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
	"strings"
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
	// MaxStreamBytes caps each stream's history, counted as
	// storage.Publication.StoredBytes counts, like
	// storage.MemoryConfig.MaxStreamBytes: over it the oldest entries are
	// dropped, never the newest. Default 0, no cap: only the count bound
	// (Options.Size, as the stream's MAXLEN) and the age bound hold a
	// stream.
	//
	// There is no budget for all streams together: that is Redis's
	// maxmemory, with a policy that evicts keys (allkeys-lru, for one); a
	// stream whose meta was evicted starts a new epoch, so recoveries
	// across it fail rather than miss publications.
	MaxStreamBytes int
	// MaxDocumentBytes caps each document stream (storage.Options.Document),
	// its snapshot and the entries after it; over it an Append fails with
	// storage.ErrDocumentFull. Default 0, no cap.
	//
	// Document keys never expire, so under maxmemory a policy that evicts
	// only keys with an expiry (volatile-lru) leaves documents alone while
	// it evicts history; allkeys-* policies may evict a document, which
	// then restarts empty in a new epoch.
	MaxDocumentBytes int
}

var (
	_ storage.Log       = (*Log)(nil)
	_ storage.Compactor = (*Log)(nil)
)

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
	maxBytes   string // Config.MaxStreamBytes, as the script's argument
	maxDoc     string // Config.MaxDocumentBytes, likewise
}

// New returns a Log storing into Redis through client. The caller keeps
// ownership of client and closes it after the Log's last use.
func New(client rueidis.Client, cfg Config) *Log {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	l := &Log{client: client, prefix: cfg.Prefix, publishCmd: "PUBLISH",
		maxBytes: strconv.Itoa(max(cfg.MaxStreamBytes, 0)), maxDoc: strconv.Itoa(max(cfg.MaxDocumentBytes, 0))}
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
	keys := []string{l.metaKey(stream), l.streamKey(stream)}
	args := l.appendArgs(pub, opts, publishCmd, channel, payload)
	return parseAppend(pub, appendScript.Exec(ctx, l.client, keys, args))
}

// appendArgs returns ARGV of appendScript, without the batch guard.
func (l *Log) appendArgs(pub storage.Publication, opts storage.Options, publishCmd, channel string, payload []byte) []string {
	opts = normalize(opts)
	metaTTL, size, ttl, maxBytes := millis(opts.MetaTTL), strconv.Itoa(opts.Size), millis(opts.TTL), l.maxBytes
	if opts.Document {
		metaTTL, size, ttl, maxBytes = "0", "-1", "0", l.maxDoc
	}
	return append(make([]string, 0, 13),
		newEpoch(),
		metaTTL,
		size,
		ttl,
		string(pub.Data),
		pub.User,
		pub.Client,
		publishCmd,
		channel,
		string(payload),
		maxBytes,
	)
}

// parseAppend reads appendScript's reply into pub and its position.
func parseAppend(pub storage.Publication, res rueidis.RedisResult) (storage.Publication, storage.Position, error) {
	reply, err := res.ToArray()
	if err != nil {
		if isSkipped(err) {
			return storage.Publication{}, storage.Position{}, ErrSkipped
		}
		if re, ok := rueidis.IsRedisErr(err); ok && strings.HasPrefix(re.Error(), fullMark) {
			return storage.Publication{}, storage.Position{}, storage.ErrDocumentFull
		}
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

// ErrSkipped is the error of a batch item that was not stored because an
// earlier item of the same stream in the batch failed.
var ErrSkipped = errors.New("not stored: an earlier item of the stream in the batch failed")

// Item is one publication of AppendPublishBatch, with the arguments
// AppendPublish takes.
type Item struct {
	Stream  string
	Pub     storage.Publication
	Opts    storage.Options
	Channel string
	Payload []byte
}

// Result is the outcome of one Item: the stored publication and the
// stream's position after it, or Err.
type Result struct {
	Pub storage.Publication
	Pos storage.Position
	Err error
}

// AppendPublishBatch does AppendPublish for every item, as one pipeline:
// one round trip (per Redis node of a Cluster) whatever the number of
// items. Redis runs the scripts one after the other in the items' order
// (on a Cluster, in order per node, and a stream lives on one node), so
// each stream gets its items' offsets in order, and no other append to a
// stream can come between an item's append and its message.
//
// It returns one Result per item. A failed script does not stop the
// pipeline, so the batch guards each stream instead: once an item fails,
// the later items of the same stream are not stored and fail with
// ErrSkipped; items of other streams are unaffected. Hence the items of
// a stream that were stored are always a prefix of that stream's items in
// the batch. What an error says about storage is as for AppendPublish: a
// Redis error reply (or ErrSkipped) means the item was not stored; an
// error wrapping storage.ErrUnavailable, or ctx's, means it may have been.
func (l *Log) AppendPublishBatch(ctx context.Context, items []Item) []Result {
	out := make([]Result, len(items))
	if err := ctx.Err(); err != nil {
		for i, it := range items {
			out[i].Err = wrap("append and publish to", it.Stream, err)
		}
		return out
	}
	// next[i] is the index of the next item of the same stream, or -1.
	next := make([]int, len(items))
	last := make(map[string]int, 8)
	for i := len(items) - 1; i >= 0; i-- {
		j, ok := last[items[i].Stream]
		if !ok {
			j = -1
		}
		next[i] = j
		last[items[i].Stream] = i
	}
	token := newEpoch()
	prev := make(map[string]int, len(last))
	execs := make([]rueidis.LuaExec, len(items))
	for i, it := range items {
		keys := []string{l.metaKey(it.Stream), l.streamKey(it.Stream)}
		args := l.appendArgs(it.Pub, it.Opts, l.publishCmd, it.Channel, it.Payload)
		p, hasPrev := prev[it.Stream]
		if hasPrev || next[i] >= 0 {
			keys = append(keys, l.guardKey(it.Stream, token))
			expect, leave := "", ""
			if hasPrev {
				expect = strconv.Itoa(p)
			}
			if next[i] >= 0 {
				leave = strconv.Itoa(i)
			}
			args = append(args, expect, leave)
		}
		prev[it.Stream] = i
		execs[i] = rueidis.LuaExec{Keys: keys, Args: args}
	}
	for i, res := range l.execBatch(ctx, items, execs) {
		it := items[i]
		pub, pos, err := parseAppend(it.Pub, res)
		if err != nil {
			out[i].Err = wrap("append and publish to", it.Stream, err)
			continue
		}
		out[i] = Result{Pub: pub, Pos: pos}
	}
	return out
}

// execBatch runs appendScript once per exec, in one pipeline of EVALSHA.
// The commands are not retryable: a command that may have run is never
// sent twice, and an outage fails the batch at once rather than waiting
// for Redis (rueidis's ExecMulti loads the script first with a command it
// retries until ctx ends).
//
// Where Redis does not know the script yet (it restarted, or this is a new
// node of a Cluster), it loads it on every node and sends once more the
// items that did not run: from each stream's first NOSCRIPT on, those that
// failed with NOSCRIPT or were refused by the guard. Their predecessors of
// the same stream were stored and left the guard values the retried items
// expect, so each stream stays in order.
func (l *Log) execBatch(ctx context.Context, items []Item, execs []rueidis.LuaExec) []rueidis.RedisResult {
	res := l.client.DoMulti(ctx, evalshaCmds(l.client, execs)...)
	var retry []int
	noScript := make(map[string]bool)
	for i, r := range res {
		s := items[i].Stream
		if isNoScript(r.Error()) {
			noScript[s] = true
		}
		if noScript[s] && (isNoScript(r.Error()) || isSkipped(r.Error())) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return res
	}
	for _, n := range l.client.Nodes() {
		if err := n.Do(ctx, n.B().ScriptLoad().Script(appendLua).Build()).Error(); err != nil {
			return res // the NOSCRIPT replies say that nothing was stored
		}
	}
	again := make([]rueidis.LuaExec, len(retry))
	for k, i := range retry {
		again[k] = execs[i]
	}
	for k, r := range l.client.DoMulti(ctx, evalshaCmds(l.client, again)...) {
		res[retry[k]] = r
	}
	return res
}

func evalshaCmds(c rueidis.Client, execs []rueidis.LuaExec) rueidis.Commands {
	cmds := make(rueidis.Commands, len(execs))
	for i, e := range execs {
		cmds[i] = c.B().Evalsha().Sha1(appendSHA).Numkeys(int64(len(e.Keys))).Key(e.Keys...).Arg(e.Args...).Build()
	}
	return cmds
}

func isNoScript(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && re.IsNoScript()
}

func isSkipped(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	return ok && strings.HasPrefix(re.Error(), skipMark)
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
		strconv.Itoa(max(q.MaxBytes, 0)),
	}
	reply, err := readScript.Exec(ctx, l.client, keys, args).ToArray()
	if err != nil {
		return storage.Result{}, err
	}
	if len(reply) != 6 {
		return storage.Result{}, fmt.Errorf("%w: read script returned %d values", errReply, len(reply))
	}
	var res storage.Result
	var status, more, snapped int64
	var err1, err2, err3, err4, err5 error
	res.Top.Epoch, err1 = reply[0].ToString()
	res.Top.Offset, err2 = reply[1].AsUint64()
	status, err3 = reply[2].AsInt64()
	more, err4 = reply[3].AsInt64()
	snapped, err5 = reply[5].AsInt64()
	if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
		return storage.Result{}, fmt.Errorf("%w: read script: %w", errReply, err)
	}
	if status == readMismatch {
		return storage.Result{Top: res.Top}, storage.ErrEpochMismatch
	}
	res.Complete = status == readComplete
	res.More = more != 0
	res.Snapshot = snapped != 0
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

// Compact stores data as the snapshot of the document stream through
// at.Offset and drops the entries it covers; see storage.Compactor.
func (l *Log) Compact(ctx context.Context, stream string, at storage.Position, data []byte, _ storage.Options) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	keys := []string{l.metaKey(stream), l.streamKey(stream)}
	args := []string{newEpoch(), "0", at.Epoch, strconv.FormatUint(at.Offset, 10), string(data)}
	status, err := compactScript.Exec(ctx, l.client, keys, args).AsInt64()
	switch {
	case err != nil:
		return false, wrap("compact", stream, err)
	case status == 2:
		return false, storage.ErrEpochMismatch
	case status == 3:
		return false, storage.ErrSnapshotAhead
	}
	return status == 1, nil
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

// guardKey names the key through which the items of one stream in the
// batch token tell each other that they were stored; it shares the
// stream's hash tag.
func (l *Log) guardKey(stream, token string) string {
	return l.prefix + "batch:{" + stream + "}:" + token
}

// streamKey names the Redis stream holding the retained publications.
func (l *Log) streamKey(stream string) string {
	return l.prefix + "history:{" + stream + "}"
}

// errReply marks a script reply of an unexpected shape: a bug or a foreign
// key, not an outage.
var errReply = errors.New("unexpected reply")

// wrap names the operation in err and marks errors that are neither the
// caller's context, nor an error reply from Redis, nor ErrSkipped, nor a
// malformed reply as storage.ErrUnavailable.
func wrap(op, stream string, err error) error {
	_, redisErr := rueidis.IsRedisErr(err)
	if redisErr || errors.Is(err, ErrSkipped) || errors.Is(err, errReply) || errors.Is(err, storage.ErrDocumentFull) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
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
