package auth

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrBadRule is returned (wrapped) for a stream rule that cannot be parsed or
// holds an invalid value.
var ErrBadRule = errors.New("invalid stream rule")

// HistoryDisabled, as a Rule's HistorySize or Config.DefaultHistorySize, turns
// history off: publications are still numbered but not stored.
const HistoryDisabled = -1

// Stream option defaults, used where neither a rule nor Config sets a value.
const (
	DefaultHistorySize = 100
	DefaultHistoryTTL  = 5 * time.Minute
)

// Rule is a server-side stream rule from config. It applies to every stream
// whose name starts with Prefix.
//
// Allow and Deny of every matching rule count: the ops allowed on a stream are
// the token's grants plus every matching rule's Allow, minus every matching
// rule's Deny (denial wins). The options (history, presence, whisper) come
// from the longest matching prefix that sets them, field by field, so a
// "chat:" rule can set the history size while a "" rule still decides
// whispers; among rules with the same prefix the later one wins.
type Rule struct {
	// Prefix selects the streams the rule applies to; "" matches every stream.
	Prefix string
	// Allow grants ops on matching streams to every client, on top of what
	// tokens grant.
	Allow Ops
	// Deny forbids ops on matching streams whatever tokens or other rules
	// grant.
	Deny Ops
	// HistorySize is how many publications a matching stream keeps. 0 leaves
	// the choice to a shorter rule or Config.DefaultHistorySize;
	// HistoryDisabled turns history off.
	HistorySize int
	// HistoryTTL is how long a matching stream's history is kept. 0 leaves the
	// choice to a shorter rule or Config.DefaultHistoryTTL.
	HistoryTTL time.Duration
	// Presence turns the presence feature on or off; nil leaves the choice to
	// a shorter rule (default on). Off denies OpPresence unless a longer rule
	// turns it back on, which is how it differs from Deny.
	Presence *bool
	// Whisper turns whispers on or off like Presence does for presence.
	Whisper *bool
	// SubscribeHook routes subscribes to matching streams to the subscribe
	// hook (--subscribe-hook), when one is set; nil leaves the choice to a
	// shorter rule (default on). See Authenticator.Hooked.
	SubscribeHook *bool
	// PublishHook routes client publishes to matching streams to the
	// publish hook (--publish-hook) like SubscribeHook does for subscribes.
	PublishHook *bool
	// Document makes matching streams durable documents: a snapshot plus
	// every publication since, with no count or age bound (HistorySize
	// and HistoryTTL do not apply). nil leaves the choice to a shorter
	// rule (default off).
	Document *bool
}

// ParseRule reads a rule in the compact syntax of the --rule flag:
//
//	PREFIX=OPS[;KEY=VALUE]...
//
// PREFIX runs up to the first '=' (so it cannot hold one) and is the stream
// name prefix; a trailing '*' is optional and dropped, so "chat:*" and
// "chat:" are the same rule, and "" or "*" matches every stream. OPS is a
// comma-separated list of ops the rule allows (sub, pub, whisper, presence,
// history) and may be empty. Each option is one of:
//
//	deny=OPS          ops denied on matching streams, whatever else grants them
//	history=N         keep N publications; 0 or "off" disables history
//	ttl=DURATION      history TTL in Go syntax: "90s", "5m", "1h"
//	presence=on|off   presence feature (also true|false)
//	whisper=on|off    whisper feature (also true|false)
//	subscribe-hook=on|off  subscribes go to the subscribe hook (also true|false)
//	publish-hook=on|off    client publishes go to the publish hook (also true|false)
//	document=on|off   the stream is a durable document: snapshot plus tail (also true|false)
//
// An option may appear once. Examples:
//
//	=sub                                    anyone may subscribe to anything
//	chat:*=sub,pub,history;history=500;ttl=10m
//	cursor:*=;history=off;whisper=on
//	internal:*=;deny=sub,pub,whisper,presence,history
//	doc:*=;subscribe-hook=off;publish-hook=on
//	doc:*=sub,pub;document=on
func ParseRule(s string) (Rule, error) {
	prefix, rest, ok := strings.Cut(s, "=")
	if !ok {
		return Rule{}, fmt.Errorf("auth: %w %q: want PREFIX=OPS[;KEY=VALUE]...", ErrBadRule, s)
	}
	r := Rule{Prefix: strings.TrimSuffix(prefix, "*")}
	opsText, opts, _ := strings.Cut(rest, ";")
	var err error
	if r.Allow, err = ParseOps(opsText); err != nil {
		return Rule{}, fmt.Errorf("auth: %w %q: %w", ErrBadRule, s, err)
	}
	seen := make(map[string]bool)
	for opt := range strings.SplitSeq(opts, ";") {
		if strings.TrimSpace(opt) == "" {
			continue // tolerate "a;;b" and a trailing ';'
		}
		key, val, ok := strings.Cut(opt, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" {
			return Rule{}, fmt.Errorf("auth: %w %q: option %q is not KEY=VALUE", ErrBadRule, s, opt)
		}
		if seen[key] {
			return Rule{}, fmt.Errorf("auth: %w %q: option %q given twice", ErrBadRule, s, key)
		}
		seen[key] = true
		if err := r.setOption(key, val); err != nil {
			return Rule{}, fmt.Errorf("auth: %w %q: %w", ErrBadRule, s, err)
		}
	}
	if err := r.validate(); err != nil {
		return Rule{}, fmt.Errorf("auth: %w %q: %w", ErrBadRule, s, err)
	}
	return r, nil
}

func (r *Rule) setOption(key, val string) error {
	switch key {
	case "deny":
		ops, err := ParseOps(val)
		if err != nil {
			return err
		}
		r.Deny = ops
	case "history":
		if val == "off" {
			r.HistorySize = HistoryDisabled
			return nil
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return fmt.Errorf("history=%q: want a count >= 0 or off", val)
		}
		r.HistorySize = n
		if n == 0 {
			r.HistorySize = HistoryDisabled
		}
	case "ttl":
		d, err := time.ParseDuration(val)
		if err != nil || d <= 0 {
			return fmt.Errorf("ttl=%q: want a positive duration such as 5m", val)
		}
		r.HistoryTTL = d
	case "presence", "whisper", "subscribe-hook", "publish-hook", "document":
		var on bool
		switch val {
		case "on", "true":
			on = true
		case "off", "false":
		default:
			return fmt.Errorf("%s=%q: want on or off", key, val)
		}
		switch key {
		case "presence":
			r.Presence = &on
		case "whisper":
			r.Whisper = &on
		case "subscribe-hook":
			r.SubscribeHook = &on
		case "document":
			r.Document = &on
		default:
			r.PublishHook = &on
		}
	default:
		return fmt.Errorf("unknown option %q (want deny, history, ttl, presence, whisper, subscribe-hook, publish-hook or document)", key)
	}
	return nil
}

// validate checks what both ParseRule and New must refuse.
func (r *Rule) validate() error {
	switch {
	case r.Prefix != "" && !ValidStream(r.Prefix):
		return fmt.Errorf("prefix %q is not a valid stream name prefix", r.Prefix)
	case r.Allow&^AllOps != 0 || r.Deny&^AllOps != 0:
		return errors.New("ops hold unknown bits")
	case r.HistorySize < HistoryDisabled:
		return fmt.Errorf("history size %d: want >= 0 or HistoryDisabled", r.HistorySize)
	case r.HistoryTTL < 0:
		return fmt.Errorf("history TTL %v is negative", r.HistoryTTL)
	}
	return nil
}

// String returns r in the syntax ParseRule reads, with the prefix written as
// a pattern ("chat:*", or "*" for every stream).
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix)
	b.WriteString("*=")
	b.WriteString(r.Allow.String())
	if r.Deny != 0 {
		b.WriteString(";deny=")
		b.WriteString(r.Deny.String())
	}
	switch {
	case r.HistorySize == HistoryDisabled:
		b.WriteString(";history=off")
	case r.HistorySize > 0:
		b.WriteString(";history=")
		b.WriteString(strconv.Itoa(r.HistorySize))
	}
	if r.HistoryTTL > 0 {
		b.WriteString(";ttl=")
		b.WriteString(r.HistoryTTL.String())
	}
	writeSwitch(&b, "presence", r.Presence)
	writeSwitch(&b, "whisper", r.Whisper)
	writeSwitch(&b, "subscribe-hook", r.SubscribeHook)
	writeSwitch(&b, "publish-hook", r.PublishHook)
	writeSwitch(&b, "document", r.Document)
	return b.String()
}

func writeSwitch(b *strings.Builder, key string, v *bool) {
	if v == nil {
		return
	}
	b.WriteByte(';')
	b.WriteString(key)
	if *v {
		b.WriteString("=on")
	} else {
		b.WriteString("=off")
	}
}

// StreamOptions are the resolved per-stream settings.
type StreamOptions struct {
	// HistorySize is how many publications the stream keeps; 0 means history
	// is off (publications are still numbered).
	HistorySize int
	// HistoryTTL is how long the history is kept; 0 when history is off.
	HistoryTTL time.Duration
	// Presence reports whether the presence feature is on.
	Presence bool
	// Whisper reports whether whispers are on.
	Whisper bool
	// Document reports whether the stream is a durable document; history
	// size and TTL are then 0, as they do not apply.
	Document bool
}

// toggle is a Rule's *bool switch copied by value: unset, on or off.
type toggle uint8

const (
	unset toggle = iota
	on
	off
)

func toggleOf(v *bool) toggle {
	switch {
	case v == nil:
		return unset
	case *v:
		return on
	default:
		return off
	}
}

// rule is a validated Rule owned by the Authenticator, so that later changes
// to the caller's Rule (or to what its pointers point at) have no effect.
type rule struct {
	prefix      string
	allow, deny Ops
	historySize int
	historyTTL  time.Duration
	presence    toggle
	whisper     toggle
	subHook     toggle
	pubHook     toggle
	document    toggle
}

// compileRules validates rules and orders them longest prefix first, later
// rules first among equal prefixes, so that the first match setting an
// option is the one that decides it.
func compileRules(rules []Rule) ([]rule, error) {
	out := make([]rule, 0, len(rules))
	for i := len(rules) - 1; i >= 0; i-- {
		r := &rules[i]
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("auth: %w %d (%s): %w", ErrBadRule, i, r, err)
		}
		out = append(out, rule{
			prefix:      r.Prefix,
			allow:       r.Allow,
			deny:        r.Deny,
			historySize: r.HistorySize,
			historyTTL:  r.HistoryTTL,
			presence:    toggleOf(r.Presence),
			whisper:     toggleOf(r.Whisper),
			subHook:     toggleOf(r.SubscribeHook),
			pubHook:     toggleOf(r.PublishHook),
			document:    toggleOf(r.Document),
		})
	}
	slices.SortStableFunc(out, func(a, b rule) int {
		return cmp.Compare(len(b.prefix), len(a.prefix))
	})
	return out, nil
}

// StreamOptions returns the settings of stream: for each option the value of
// the longest matching rule that sets it, else the Config default (history
// DefaultHistorySize publications for DefaultHistoryTTL, presence and
// whispers on).
func (a *Authenticator) StreamOptions(stream string) StreamOptions {
	size, ttl := 0, time.Duration(0)
	presence, whisper, document := unset, unset, unset
	for i := range a.rules {
		r := &a.rules[i]
		if !strings.HasPrefix(stream, r.prefix) {
			continue
		}
		if size == 0 {
			size = r.historySize
		}
		if ttl == 0 {
			ttl = r.historyTTL
		}
		if presence == unset {
			presence = r.presence
		}
		if whisper == unset {
			whisper = r.whisper
		}
		if document == unset {
			document = r.document
		}
	}
	if size == 0 {
		size = a.historySize
	}
	if ttl == 0 {
		ttl = a.historyTTL
	}
	if size == HistoryDisabled || document == on {
		size, ttl = 0, 0
	}
	return StreamOptions{
		HistorySize: size,
		HistoryTTL:  ttl,
		Presence:    presence != off,
		Whisper:     whisper != off,
		Document:    document == on,
	}
}

// Allowed reports whether the client with identity id may perform op on
// stream. Token grants and rules combine and denial wins: op is allowed when
// the token's streams claim or a matching rule grants it, no matching rule
// denies it, and, for OpPresence and OpWhisper, the feature is not switched
// off for the stream. A stream matched by nothing is denied. A nil id has no
// grants, so only rules can allow it anything.
//
// Allowed does not check the name itself; callers reject names that fail
// ValidStream first, with their own error. It does not allocate.
func (a *Authenticator) Allowed(id *Identity, op Op, stream string) bool {
	if !op.valid() {
		return false
	}
	allow, denied := a.ruleVerdict(op, stream)
	if denied {
		return false
	}
	return allow || id.granted(Ops(1)<<op, stream)
}

// Denied reports whether the rules forbid op on stream whatever grants it:
// a matching rule's deny, or the feature (presence, whispers) switched off.
// What a hook allows is still subject to it. An invalid op is denied. It
// does not allocate.
func (a *Authenticator) Denied(op Op, stream string) bool {
	if !op.valid() {
		return true
	}
	_, denied := a.ruleVerdict(op, stream)
	return denied
}

// ruleVerdict is what the rules matching stream say of a valid op: whether
// one allows it, and whether one denies it or switches its feature off.
func (a *Authenticator) ruleVerdict(op Op, stream string) (allow, denied bool) {
	bit := Ops(1) << op
	var allowed, deny Ops
	feature := unset
	for i := range a.rules {
		r := &a.rules[i]
		if !strings.HasPrefix(stream, r.prefix) {
			continue
		}
		allowed |= r.allow
		deny |= r.deny
		if feature == unset {
			switch op {
			case OpPresence:
				feature = r.presence
			case OpWhisper:
				feature = r.whisper
			}
		}
	}
	return allowed&bit != 0, deny&bit != 0 || feature == off
}

// Hooked reports whether op on stream goes to the application's hook for
// it, when the server has one: OpSub to the subscribe hook, OpPub to the
// publish hook. The longest matching rule that sets subscribe-hook
// (publish-hook) decides; with none, the hook applies, so that setting a
// hook guards every stream unless a rule opts streams out. Other ops have
// no hook. It does not allocate.
func (a *Authenticator) Hooked(op Op, stream string) bool {
	if op != OpSub && op != OpPub {
		return false
	}
	for i := range a.rules {
		r := &a.rules[i]
		if !strings.HasPrefix(stream, r.prefix) {
			continue
		}
		t := r.subHook
		if op == OpPub {
			t = r.pubHook
		}
		if t != unset {
			return t == on
		}
	}
	return true
}
