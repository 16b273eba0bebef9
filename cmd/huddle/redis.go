package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/admin/redisadmin"
	"github.com/huddle-rt/huddle/internal/broker"
	redisbroker "github.com/huddle-rt/huddle/internal/broker/redis"
	"github.com/huddle-rt/huddle/internal/frontend/cable/redissessions"
	"github.com/huddle-rt/huddle/internal/server"
	redisoccupancy "github.com/huddle-rt/huddle/internal/webhooks/occupancy/redis"
	redispresence "github.com/huddle-rt/huddle/presence/redis"
	redislog "github.com/huddle-rt/huddle/storage/redis"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/huddle-rt/huddle/internal/tracing"
)

// redisOption reads --redis-url: one redis:// (or rediss://, unix://) URL,
// or a comma-separated list of them naming seed nodes of a Redis Cluster.
// Credentials, TLS and the database come from the first.
func redisOption(urls string) (rueidis.ClientOption, error) {
	var opt rueidis.ClientOption
	for _, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		o, err := rueidis.ParseURL(u)
		if err != nil {
			return rueidis.ClientOption{}, fmt.Errorf("--redis-url %q: %w", u, err)
		}
		if len(opt.InitAddress) == 0 {
			opt = o
			continue
		}
		opt.InitAddress = append(opt.InitAddress, o.InitAddress...)
	}
	if len(opt.InitAddress) == 0 {
		return rueidis.ClientOption{}, fmt.Errorf("--broker redis needs --redis-url (e.g. redis://127.0.0.1:6379/0)")
	}
	opt.ClientName = "huddle"
	opt.DisableCache = true // no client-side caching is used
	return opt, nil
}

// redisBackends are a node's Redis parts: history, presence and the broker
// share one client for commands; the broker opens its own for its
// subscriptions.
type redisBackends struct {
	client  rueidis.Client
	opt     rueidis.ClientOption
	sharded bool
	prefix  string
	// maxStreamBytes is --history-stream-memory.
	maxStreamBytes int
	// maxDocBytes is --document-max-bytes.
	maxDocBytes int
	stop        chan struct{} // ends watch
	errors      *atomic.Int64 // failed commands
}

// countingClient counts the commands that fail (a nil answer is not a
// failure) for the huddle_redis_errors_total metric.
type countingClient struct {
	rueidis.Client
	errors atomic.Int64
}

func (c *countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	ctx, span := tracing.Child(ctx, "redis "+firstWord(cmd.Commands()), trace.SpanKindClient)
	r := c.Client.Do(ctx, cmd)
	c.count(r.Error())
	endSpan(span, r.Error())
	return r
}

// firstWord is a command's name, for its span.
func firstWord(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

// endSpan ends a Redis command's span (a no-op span when no traced
// request caused the command).
func endSpan(span trace.Span, err error) {
	if err != nil && !rueidis.IsRedisNil(err) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// count counts err unless it is a nil answer or a script to load (the
// script runs on the next call: not a failure).
func (c *countingClient) count(err error) {
	if err == nil || rueidis.IsRedisNil(err) {
		return
	}
	if re, ok := rueidis.IsRedisErr(err); ok && re.IsNoScript() {
		return
	}
	c.errors.Add(1)
}

func (c *countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	name := "redis pipeline"
	if len(cmds) > 0 {
		name += " " + firstWord(cmds[0].Commands())
	}
	ctx, span := tracing.Child(ctx, name, trace.SpanKindClient)
	rs := c.Client.DoMulti(ctx, cmds...)
	var first error
	for _, r := range rs {
		c.count(r.Error())
		if first == nil {
			first = r.Error()
		}
	}
	endSpan(span, first)
	return rs
}

// newRedis connects to Redis. A Redis Cluster is detected by the client and
// gets sharded pub/sub.
func newRedis(o *options) (*redisBackends, error) {
	opt, err := redisOption(o.redisURL)
	if err != nil {
		return nil, err
	}
	raw, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to Redis at %s: %w", strings.Join(opt.InitAddress, ","), err)
	}
	client := &countingClient{Client: raw}
	return &redisBackends{
		client:         client,
		errors:         &client.errors,
		opt:            opt,
		sharded:        client.Mode() == rueidis.ClientModeCluster,
		prefix:         o.redisPrefix,
		maxStreamBytes: int(o.historyStream),
		maxDocBytes:    int(o.documentMax),
	}, nil
}

// deps fills the server's backends with the Redis ones.
func (r *redisBackends) deps(d *server.Deps, logger *slog.Logger) {
	log := redislog.New(r.client, redislog.Config{Prefix: r.prefix, ShardedPubSub: r.sharded, MaxStreamBytes: r.maxStreamBytes, MaxDocumentBytes: r.maxDocBytes})
	d.Log = log
	d.Presence = redispresence.New(r.client, redispresence.Config{Prefix: r.prefix})
	d.Sessions = redissessions.New(r.client, r.prefix)
	d.Occupancy = redisoccupancy.New(r.client, redisoccupancy.Config{Prefix: r.prefix})
	d.NewBroker = func(h broker.Handler) (broker.Broker, error) {
		return redisbroker.New(
			redisbroker.Config{Prefix: r.prefix, Sharded: r.sharded, PubSub: r.opt, Logger: logger},
			redisbroker.Deps{Log: log, Client: r.client, Handler: h},
		)
	}
	d.Check = r.ping
	d.Admin = redisadmin.New(r.client, r.prefix)
	d.RedisErrors = r.errors.Load
	r.stop = make(chan struct{})
	go r.watch(logger, time.Second)
}

func (r *redisBackends) ping(ctx context.Context) error {
	if err := r.client.Do(ctx, r.client.B().Ping().Build()).Error(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// watch pings Redis every interval and logs when it stops answering and
// when it answers again, with how long it was away.
func (r *redisBackends) watch(log *slog.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var downSince time.Time
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		err := r.ping(ctx)
		cancel()
		switch {
		case err != nil && downSince.IsZero():
			downSince = time.Now()
			log.Warn("Redis is unreachable: publishes and subscribes fail with 4500 (503 on the API), /readyz answers 503; connections stay open", "err", err)
		case err == nil && !downSince.IsZero():
			log.Info("Redis answers again", "down_for", time.Since(downSince).Round(time.Millisecond).String())
			downSince = time.Time{}
		}
	}
}

// Close stops the watch and closes the command client, after the server
// (and so the broker) stopped.
func (r *redisBackends) Close() {
	if r.stop != nil {
		close(r.stop)
	}
	r.client.Close()
}
