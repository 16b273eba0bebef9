package main

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/huddle-rt/huddle/internal/server"
	"github.com/huddle-rt/huddle/internal/webhooks"
)

// webhookOptions are the --webhook-* flags (docs/webhooks.md).
type webhookOptions struct {
	urls      listFlag
	secret    string
	timeout   time.Duration
	batch     int
	batchWait time.Duration
	queue     int
	retryFor  time.Duration
	drain     time.Duration
	nodeTTL   time.Duration
}

func (w *webhookOptions) flags(fs *flag.FlagSet) {
	fs.Var(&w.urls, "webhook-url", "send webhooks (presence.join, presence.leave, stream.occupied, stream.vacated, user.disconnected) to this http(s) URL, optionally followed by ;events=TYPE,TYPE to pick the types (presence.* picks a family); repeatable (in the environment: space-separated)")
	fs.StringVar(&w.secret, "webhook-secret", "", "HMAC-SHA256 key of the Huddle-Signature header of every webhook (required with --webhook-url)")
	fs.DurationVar(&w.timeout, "webhook-timeout", 5*time.Second, "longest a webhook request may take before it is retried")
	fs.IntVar(&w.batch, "webhook-batch", 100, "most events in one webhook request")
	fs.DurationVar(&w.batchWait, "webhook-batch-wait", 100*time.Millisecond, "how long an event waits for others to share its webhook request")
	fs.IntVar(&w.queue, "webhook-queue", 10000, "events waiting per webhook URL at most; more are dropped and counted")
	fs.DurationVar(&w.retryFor, "webhook-retry-for", time.Minute, "how long after its first attempt a webhook request is still retried (network errors, timeouts, 408, 429, 5xx); then it is dropped and counted")
	fs.DurationVar(&w.drain, "webhook-drain-timeout", 5*time.Second, "on shutdown, how long queued webhooks may take to go out")
	fs.DurationVar(&w.nodeTTL, "webhook-node-ttl", 30*time.Second, "how long a node's streams and users count without its refresh: a node that dies has them vacated and disconnected by the others within about this")
}

// apply sets cfg's webhooks from the flags.
func (w *webhookOptions) apply(cfg *server.Config) error {
	if len(w.urls) == 0 {
		return nil
	}
	if w.secret == "" {
		return errors.New("--webhook-url needs --webhook-secret (HUDDLE_WEBHOOK_SECRET), the key that signs every webhook")
	}
	var eps []webhooks.Endpoint
	for _, u := range w.urls {
		ep, err := webhooks.ParseEndpoint(u)
		if err != nil {
			return fmt.Errorf("--webhook-url: %w", err)
		}
		eps = append(eps, ep)
	}
	cfg.Webhooks = webhooks.Config{
		Endpoints:    eps,
		Secret:       []byte(w.secret),
		Timeout:      w.timeout,
		BatchSize:    w.batch,
		BatchWait:    w.batchWait,
		QueueSize:    w.queue,
		RetryFor:     w.retryFor,
		DrainTimeout: w.drain,
	}
	cfg.WebhookNodeTTL = w.nodeTTL
	return nil
}
