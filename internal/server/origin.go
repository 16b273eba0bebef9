package server

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// Browser origins: which pages may open a WebSocket (Config.AllowedOrigins).

// originAllowed reports whether a page at origin (an Origin header's value)
// may open a WebSocket to this server, reached as host (the request's Host
// header), under allowed (Config.AllowedOrigins):
//
//   - "*" in allowed admits every origin, "null" and malformed ones too;
//   - the server's own origin (same host and port as Host) is always
//     admitted, so pages the server serves itself keep working;
//   - with allowed empty, loopback origins (localhost, 127.0.0.0/8, ::1) are
//     admitted as well, for a local app talking to a local server;
//   - otherwise the origin must match an entry: "https://app.example.com"
//     matches that scheme, host and port exactly, and
//     "https://*.example.com" any subdomain (not example.com itself).
//
// Scheme and host compare case-insensitively, and a default port (80 for
// http and ws, 443 for https and wss) is the same as none.
func originAllowed(origin, host string, allowed []string) bool {
	if slices.Contains(allowed, "*") {
		return true
	}
	o, ok := parseOrigin(origin, false)
	if !ok {
		return false
	}
	if hn, hp, ok := splitHost(host); ok && strings.EqualFold(hn, o.host) && defaultPort(o.scheme, hp) == o.port {
		return true
	}
	if len(allowed) == 0 {
		return isLoopbackName(o.host)
	}
	for _, a := range allowed {
		if p, ok := parseOrigin(a, true); ok && p.matches(o) {
			return true
		}
	}
	return false
}

// CheckOriginPattern reports why p cannot be an entry of
// Config.AllowedOrigins, or nil if it can. Entries are "*", or a scheme and
// a host with an optional port, whose host may start with "*." for every
// subdomain: "https://app.example.com", "http://localhost:5173",
// "https://*.example.com". An entry the server cannot parse matches nothing.
func CheckOriginPattern(p string) error {
	if p == "*" {
		return nil
	}
	if _, ok := parseOrigin(p, true); !ok {
		return fmt.Errorf("origin %q: want *, scheme://host[:port] or scheme://*.domain[:port], e.g. https://app.example.com", p)
	}
	return nil
}

// LoopbackHost reports whether hostport, a Host header's value with or
// without a port, names this machine by a loopback name or address:
// localhost, 127.0.0.0/8 or [::1]. DNS names that merely resolve to a
// loopback address do not count, which is the point: a DNS rebinding attack
// makes a foreign name resolve to 127.0.0.1 but cannot change the Host its
// browser sends.
func LoopbackHost(hostport string) bool {
	h, _, ok := splitHost(hostport)
	return ok && isLoopbackName(h)
}

func isLoopbackName(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// webOrigin is a parsed origin or AllowedOrigins entry; scheme and host are
// lower case, host has no IPv6 brackets, port is "" for the scheme's default.
type webOrigin struct {
	scheme, host, port string
	wildcard           bool // host is a suffix such as ".example.com"
}

func (p webOrigin) matches(o webOrigin) bool {
	if p.scheme != o.scheme || p.port != o.port {
		return false
	}
	if p.wildcard {
		return len(o.host) > len(p.host) && strings.HasSuffix(o.host, p.host)
	}
	return p.host == o.host
}

// parseOrigin parses scheme://host[:port], with one trailing slash
// tolerated for entries pasted from an address bar. With pattern set, the
// host may start with "*.".
func parseOrigin(s string, pattern bool) (webOrigin, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return webOrigin{}, false
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@\\ \t") {
		return webOrigin{}, false
	}
	host, port, ok := splitHost(rest)
	if !ok || host == "" {
		return webOrigin{}, false
	}
	o := webOrigin{scheme: strings.ToLower(scheme), host: strings.ToLower(host)}
	o.port = defaultPort(o.scheme, port)
	if pattern {
		if suffix, ok := strings.CutPrefix(o.host, "*"); ok && strings.HasPrefix(suffix, ".") && len(suffix) > 1 {
			o.host, o.wildcard = suffix, true
		}
	}
	if strings.Contains(o.host, "*") {
		return webOrigin{}, false
	}
	return o, true
}

// validScheme checks RFC 3986's ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // lower case for letters
		switch {
		case c >= 'a' && c <= 'z':
		case i > 0 && (s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// splitHost splits host[:port] or [ipv6][:port]; the port, when present,
// must be decimal digits. A bare IPv6 address (colons, no brackets) is
// refused, as in a URL.
func splitHost(s string) (host, port string, ok bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false
		}
		host, s = s[1:end], s[end+1:]
		if s == "" {
			return host, "", true
		}
		if s[0] != ':' {
			return "", "", false
		}
		port = s[1:]
	} else {
		var hasPort bool
		host, port, hasPort = strings.Cut(s, ":")
		if hasPort && strings.Contains(port, ":") {
			return "", "", false
		}
		if !hasPort {
			return host, "", true
		}
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", "", false
	}
	return host, port, true
}

// defaultPort returns "" for the default port of scheme, port otherwise.
func defaultPort(scheme, port string) string {
	switch {
	case port == "80" && (scheme == "http" || scheme == "ws"),
		port == "443" && (scheme == "https" || scheme == "wss"):
		return ""
	}
	return port
}
