package auth

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxStreamLen is the longest stream name in bytes. It matches the protocol's
// limit (protocol.MaxStreamName); auth keeps its own copy so that it does not
// depend on the wire package.
const MaxStreamLen = 256

// ValidStream reports whether name may name a stream: non-empty, at most
// MaxStreamLen bytes, valid UTF-8 and free of control characters (C0, DEL
// and C1). It does not allocate.
func ValidStream(name string) bool {
	if name == "" || len(name) > MaxStreamLen {
		return false
	}
	for i := 0; i < len(name); {
		c := name[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size == 1 {
			return false
		}
		if unicode.IsControl(r) {
			return false
		}
		i += size
	}
	return true
}

// grant is one entry of a token's streams claim.
type grant struct {
	pattern string // exact name, or the prefix when prefix is set
	prefix  bool   // the claim's pattern ended in '*'
	ops     Ops
}

// newGrant turns a streams-claim pattern into a grant: a pattern ending in '*'
// matches every stream starting with what comes before it, so a lone "*"
// matches every stream; any other pattern matches only itself.
func newGrant(pattern string, ops Ops) grant {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return grant{pattern: p, prefix: true, ops: ops}
	}
	return grant{pattern: pattern, ops: ops}
}

func (g *grant) matches(stream string) bool {
	if g.prefix {
		return strings.HasPrefix(stream, g.pattern)
	}
	return stream == g.pattern
}
