package server_test

import (
	"sync"
	"testing"
	"time"

	"github.com/huddle-rt/huddle/internal/wsclient"
	"github.com/huddle-rt/huddle/protocol"
)

// TestPingsSpread: connections that arrive together are not all pinged in
// the same sweep: each one's first ping comes at a random point of the last
// quarter of its first interval (never later), so a reconnect storm does not
// turn into a ping (and pong) burst every interval.
func TestPingsSpread(t *testing.T) {
	const (
		n        = 20
		interval = 8 * time.Second
	)
	h := start(t, func(o *harnessOpts) { o.cfg.PingInterval = interval })
	clients := make([]*wsclient.Client, n)
	for i := range clients {
		clients[i] = dialUser(t, h, "u")
	}
	connected := time.Now()
	first := make([]time.Time, n)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(interval + 3*time.Second)
			for time.Now().Before(deadline) {
				m, err := c.Next(time.Until(deadline))
				if err != nil {
					return
				}
				if _, ok := m.(*protocol.Ping); ok {
					first[i] = time.Now()
					return
				}
			}
		}()
	}
	wg.Wait()
	lo, hi := first[0], first[0]
	for i, at := range first {
		if at.IsZero() {
			t.Fatalf("client %d got no ping within an interval and the sweep", i)
		}
		if d := at.Sub(connected); d < interval*3/4-time.Second {
			t.Errorf("client %d was pinged %v after connecting, before the last quarter of the interval", i, d)
		}
		if at.Before(lo) {
			lo = at
		}
		if at.After(hi) {
			hi = at
		}
	}
	// Uniform over 2 s and swept once a second, all 20 in one sweep has a
	// chance near 2^-19; unspread, they all come in the same sweep.
	if spread := hi.Sub(lo); spread < 500*time.Millisecond {
		t.Errorf("the first pings of %d connections made together came within %v of each other: not spread", n, spread)
	}
}
