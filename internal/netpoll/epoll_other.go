//go:build !linux

package netpoll

// Poller is unavailable off Linux; the server falls back to a goroutine per
// connection.
type Poller struct{}

// New returns ErrUnsupported.
func New(Handler) (*Poller, error) { return nil, ErrUnsupported }

// Add is never reached off Linux.
func (p *Poller) Add(fd int, key int32) error { return ErrUnsupported }

// Remove is never reached off Linux.
func (p *Poller) Remove(fd int) error { return ErrUnsupported }

// Close does nothing.
func (p *Poller) Close() error { return nil }
