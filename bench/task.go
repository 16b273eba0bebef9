package bench

import (
	"strconv"
	"time"
)

// Task is one worker process's share of a scenario. The coordinator writes
// it as the first JSON line on the worker's stdin; later lines are
// commands, and the worker answers with reports on stdout (one JSON object
// a line).
type Task struct {
	Scenario    string        `json:"scenario"`
	Worker      int           `json:"worker"`
	Workers     int           `json:"workers"`
	First       int           `json:"first"` // global index of its first client
	Count       int           `json:"count"`
	Adapter     AdapterConfig `json:"adapter"`
	Locals      []string      `json:"locals,omitempty"` // source addresses; client i uses Locals[i%len]
	Concurrency int           `json:"concurrency"`      // connects in flight at once
	Shape       Shape         `json:"shape"`
}

// Shape is how a scenario lays its clients out over streams and what they
// send. Each scenario uses some of the fields.
type Shape struct {
	Streams  int           `json:"streams,omitempty"`   // idle, connect: streams spread over; presence: member streams
	Group    int           `json:"group,omitempty"`     // rooms, cursors: clients per room
	Members  int           `json:"members,omitempty"`   // presence: static members per stream
	Churners int           `json:"churners,omitempty"`  // presence: churning clients per stream
	Watch    bool          `json:"watch,omitempty"`     // presence: members receive presence diffs
	Watchers int           `json:"watchers,omitempty"`  // presence: of the members of a stream, how many watch (0: all)
	Hold     time.Duration `json:"hold,omitempty"`      // presence: how long a churner stays joined
	Slow     int           `json:"slow,omitempty"`      // slow: clients 0..Slow-1 stop reading on command
	RecvBuf  int           `json:"recv_buf,omitempty"`  // slow: SO_RCVBUF of the slow clients
	Size     int           `json:"size,omitempty"`      // bytes of each message sent
	Seqs     int           `json:"seqs,omitempty"`      // sequence numbers to keep time-to-last for
	Lazy     bool          `json:"lazy,omitempty"`      // connect: dial on the "dial" command, not at start
	Stream   string        `json:"stream,omitempty"`    // broadcast, slow: the one stream
	DialWait time.Duration `json:"dial_wait,omitempty"` // give up on a connect after this long
	Spin     time.Duration `json:"spin,omitempty"`      // the reactor polls this long before it sleeps (Env.Spin, see reactorSpin)
	Soak     *SoakShape    `json:"soak,omitempty"`      // soak: its whole layout
}

// Commands a coordinator sends to its workers.
const (
	cmdRate    = "rate"    // send at Rate per second (0 stops)
	cmdDial    = "dial"    // connect now (Shape.Lazy)
	cmdPause   = "pause"   // slow clients stop reading
	cmdResume  = "resume"  // slow clients read again
	cmdCollect = "collect" // report stats since the last collect
)

type command struct {
	Cmd   string  `json:"cmd"`
	Rate  float64 `json:"rate,omitempty"`
	Final bool    `json:"final,omitempty"` // collect: also the per-sequence table
	// Concurrency replaces the task's for a dial.
	Concurrency int `json:"concurrency,omitempty"`
	// Tops are the streams' final offsets, for a soak's final collect.
	Tops map[string]uint64 `json:"tops,omitempty"`
}

// Reports a worker sends.
const (
	evReady    = "ready"    // its clients are connected (or failed)
	evDialed   = "dialed"   // answers cmdDial
	evProgress = "progress" // every progressEvery
	evStats    = "stats"    // answers cmdCollect
)

const progressEvery = 500 * time.Millisecond

type report struct {
	Ev       string      `json:"ev"`
	Counters Counters    `json:"c"`
	Lat      *Histogram  `json:"lat,omitempty"`     // deliveries since the last collect
	Join     *Histogram  `json:"join,omitempty"`    // presence joins seen
	Leave    *Histogram  `json:"leave,omitempty"`   // presence leaves seen
	Dial     *Histogram  `json:"dial,omitempty"`    // connect+subscribe times
	Welcome  *Histogram  `json:"welcome,omitempty"` // dialed: connect times (to the welcome)
	Seq      []SeqStat   `json:"seq,omitempty"`
	WinP99   int64       `json:"win_p99,omitempty"` // progress: p99 over the last window
	WinN     uint64      `json:"win_n,omitempty"`
	Samples  []string    `json:"samples,omitempty"` // a few error messages
	Soak     *SoakCounts `json:"soak,omitempty"`    // soak: its totals
}

// Counters are a worker's running totals; the coordinator adds them up.
type Counters struct {
	Up         int64 `json:"up"`          // connections open now
	Failed     int64 `json:"failed"`      // connects that failed
	Sent       int64 `json:"sent"`        // messages sent (pubs, whispers, joins and leaves)
	SendErrors int64 `json:"send_errors"` // sends the socket refused
	Unsent     int64 `json:"unsent"`      // sends skipped: the sender ran over a second behind schedule, or no churner was free
	Recv       int64 `json:"recv"`        // deliveries received
	Cycles     int64 `json:"cycles"`      // presence: churn cycles started
	Unmatched  int64 `json:"unmatched"`   // presence: leaves without a join seen before
	Overflow   int64 `json:"overflow"`    // receipts past the sequence table
	// Codes counts error replies by code; Closes counts connections that
	// ended by their close code (0: without one).
	Codes  map[int]int64 `json:"codes,omitempty"`
	Closes map[int]int64 `json:"closes,omitempty"`
	// SlowCloses counts the slow scenario's slow clients apart (they are
	// not in Closes).
	SlowCloses map[int]int64 `json:"slow_closes,omitempty"`
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Up += o.Up
	c.Failed += o.Failed
	c.Sent += o.Sent
	c.SendErrors += o.SendErrors
	c.Unsent += o.Unsent
	c.Recv += o.Recv
	c.Cycles += o.Cycles
	c.Unmatched += o.Unmatched
	c.Overflow += o.Overflow
	c.Codes = addCodes(c.Codes, o.Codes)
	c.Closes = addCodes(c.Closes, o.Closes)
	c.SlowCloses = addCodes(c.SlowCloses, o.SlowCloses)
}

func addCodes(dst, src map[int]int64) map[int]int64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[int]int64)
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// clientKind is a client's part in its scenario.
type clientKind uint8

const (
	kindQuiet   clientKind = iota // subscribes and receives
	kindSender                    // also sends when paced (rooms, whisper, cursors)
	kindMember                    // presence: a static member
	kindChurner                   // presence: joins and leaves when paced
	kindSlow                      // slow: stops reading on command
)

// plan is what client i (a global index) of the task subscribes to and does.
type plan struct {
	stream string
	kind   clientKind
	sub    SubOptions
}

// Stream names of the scenarios.
func idleStream(i, streams int) string { return "bench:idle:" + strconv.Itoa(i%max(streams, 1)) }
func roomStream(r int) string          { return "bench:room:" + strconv.Itoa(r) }
func pairStream(p int) string          { return "bench:pair:" + strconv.Itoa(p) }
func cursorStream(r int) string        { return "bench:cursors:" + strconv.Itoa(r) }
func presenceStream(s int) string      { return "bench:presence:" + strconv.Itoa(s) }

// userName is client i's identity; presence finds churners by it.
func userName(i int) string { return "u" + strconv.Itoa(i) }

// userIndex parses what userName wrote.
func userIndex(u []byte) (int, bool) {
	if len(u) < 2 || u[0] != 'u' || len(u) > 11 {
		return 0, false
	}
	n := 0
	for _, c := range u[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func (t *Task) plan(i int) plan {
	s := t.Shape
	switch t.Scenario {
	case "idle", "connect":
		return plan{stream: idleStream(i, s.Streams)}
	case "broadcast":
		return plan{stream: s.Stream}
	case "slow":
		if i < s.Slow {
			return plan{stream: s.Stream, kind: kindSlow}
		}
		return plan{stream: s.Stream}
	case "rooms":
		return plan{stream: roomStream(i / max(s.Group, 1)), kind: kindSender}
	case "whisper":
		return plan{stream: pairStream(i / 2), kind: kindSender}
	case "cursors":
		return plan{stream: cursorStream(i / max(s.Group, 1)), kind: kindSender}
	case "presence":
		if members := s.Streams * s.Members; i < members {
			watch := s.Watch && (s.Watchers <= 0 || i%s.Members < s.Watchers)
			return plan{stream: presenceStream(i / s.Members), kind: kindMember,
				sub: SubOptions{Presence: watch, Join: []byte{}}}
		} else {
			return plan{stream: presenceStream((i - members) / max(s.Churners, 1)), kind: kindChurner}
		}
	}
	return plan{stream: idleStream(i, 1)}
}
