package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnknownOp is returned (wrapped) for an op name outside the protocol's list.
var ErrUnknownOp = errors.New("unknown op")

// Op is one operation a client may perform on a stream. The zero Op is not a
// valid operation and is never allowed.
type Op uint8

// The ops of the protocol, named as in tokens and rules.
const (
	OpSub      Op = iota + 1 // "sub": subscribe and receive publications
	OpPub                    // "pub": publish
	OpWhisper                // "whisper": send ephemeral events
	OpPresence               // "presence": join presence and see who is there
	OpHistory                // "history": read stored publications
)

// opNames is indexed by Op; opNames[0] belongs to the invalid zero Op.
var opNames = [...]string{"", "sub", "pub", "whisper", "presence", "history"}

// ParseOp returns the Op named s ("sub", "pub", "whisper", "presence" or
// "history"). Names are case-sensitive, as in tokens.
func ParseOp(s string) (Op, error) {
	for i := 1; i < len(opNames); i++ {
		if opNames[i] == s {
			return Op(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want sub, pub, whisper, presence or history)", ErrUnknownOp, s)
}

// String returns the protocol name of op, or "Op(N)" for an invalid op.
func (op Op) String() string {
	if op.valid() {
		return opNames[op]
	}
	return "Op(" + strconv.Itoa(int(op)) + ")"
}

func (op Op) valid() bool { return op >= OpSub && op <= OpHistory }

// Ops is a set of Op, one bit per op.
type Ops uint8

// AllOps holds every op.
const AllOps Ops = 1<<OpSub | 1<<OpPub | 1<<OpWhisper | 1<<OpPresence | 1<<OpHistory

// OpsOf returns the set holding ops. Invalid ops are left out.
func OpsOf(ops ...Op) Ops {
	var s Ops
	for _, op := range ops {
		if op.valid() {
			s |= 1 << op
		}
	}
	return s
}

// Has reports whether op is in s. It is false for an invalid op.
func (s Ops) Has(op Op) bool {
	return op.valid() && s&(1<<op) != 0
}

// String returns the ops in s as a comma-separated list in protocol order,
// the form ParseOps reads; the empty set is "".
func (s Ops) String() string {
	var b strings.Builder
	for op := OpSub; op <= OpHistory; op++ {
		if s.Has(op) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(opNames[op])
		}
	}
	return b.String()
}

// ParseOps reads a comma-separated list of op names such as "sub,pub".
// Spaces around names are ignored; "" is the empty set.
func ParseOps(s string) (Ops, error) {
	var set Ops
	if strings.TrimSpace(s) == "" {
		return 0, nil
	}
	for name := range strings.SplitSeq(s, ",") {
		op, err := ParseOp(strings.TrimSpace(name))
		if err != nil {
			return 0, err
		}
		set |= 1 << op
	}
	return set, nil
}
