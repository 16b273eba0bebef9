package core

import "context"

// directPrefix starts the names of the broker streams that carry messages
// from one node to another. No client can name such a stream: stream
// names may not hold control characters (auth.ValidStream).
const directPrefix = "\x00direct:"

// ListenDirect delivers to h what other nodes send to name with
// SendDirect. h runs on the broker's delivery goroutine: it must hand the
// work off and return. It returns once the broker delivers name's
// messages (or fails to).
func (node *Node) ListenDirect(ctx context.Context, name string, h func(payload []byte)) error {
	node.direct.Store(directPrefix+name, h)
	return node.broker.Subscribe(ctx, directPrefix+name)
}

// SendDirect relays payload to the node that listens on name. Like a
// whisper it is neither stored nor acknowledged, and dropped if the broker
// cannot relay it. It reports false on a single node (nothing to relay
// to). The caller must not modify payload afterwards.
func (node *Node) SendDirect(name string, payload []byte) bool {
	if !node.relaying {
		return false
	}
	node.broker.PublishEphemeral(directPrefix+name, payload, false)
	return true
}

// MaxMessage is the largest message a connected session takes.
func (node *Node) MaxMessage() int { return node.cfg.MaxMessage }
