package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/internal/broker"
	redisbroker "github.com/huddle-rt/huddle/internal/broker/redis"
	"github.com/huddle-rt/huddle/internal/frontend/cable/redissessions"
	"github.com/huddle-rt/huddle/internal/server"
	redisoccupancy "github.com/huddle-rt/huddle/internal/webhooks/occupancy/redis"
	redispresence "github.com/huddle-rt/huddle/presence/redis"
	redislog "github.com/huddle-rt/huddle/storage/redis"
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
}

// newRedis connects to Redis. A Redis Cluster is detected by the client and
// gets sharded pub/sub.
func newRedis(o *options) (*redisBackends, error) {
	opt, err := redisOption(o.redisURL)
	if err != nil {
		return nil, err
	}
	client, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to Redis at %s: %w", strings.Join(opt.InitAddress, ","), err)
	}
	return &redisBackends{
		client:         client,
		opt:            opt,
		sharded:        client.Mode() == rueidis.ClientModeCluster,
		prefix:         o.redisPrefix,
		maxStreamBytes: int(o.historyStream),
	}, nil
}

// deps fills the server's backends with the Redis ones.
func (r *redisBackends) deps(d *server.Deps, logger *slog.Logger) {
	log := redislog.New(r.client, redislog.Config{Prefix: r.prefix, ShardedPubSub: r.sharded, MaxStreamBytes: r.maxStreamBytes})
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
	d.Check = func(ctx context.Context) error {
		if err := r.client.Do(ctx, r.client.B().Ping().Build()).Error(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
}

// Close closes the command client, after the server (and so the broker)
// stopped.
func (r *redisBackends) Close() { r.client.Close() }
