package server

import "testing"

func TestOriginAllowed(t *testing.T) {
	list := []string{"https://app.example.com", "https://*.example.org", "http://localhost:5173", "wss://[::1]:9000", "bad entry"}
	tests := []struct {
		name    string
		origin  string
		host    string
		allowed []string
		want    bool
	}{
		// Default (empty list): own origin and loopback only.
		{"own origin", "http://rt.example.com:8080", "rt.example.com:8080", nil, true},
		{"own origin https default port", "https://rt.example.com", "rt.example.com", nil, true},
		{"own origin Host with default port", "https://rt.example.com", "rt.example.com:443", nil, true},
		{"own origin with default port", "https://rt.example.com:443", "rt.example.com", nil, true},
		{"own origin other port", "https://rt.example.com:8443", "rt.example.com", nil, false},
		{"own origin http port 443", "http://rt.example.com", "rt.example.com:443", nil, false},
		{"own origin case", "HTTPS://RT.Example.COM", "rt.EXAMPLE.com", nil, true},
		{"own origin trailing slash", "https://rt.example.com/", "rt.example.com", nil, true},
		{"own origin ipv6", "http://[2001:db8::1]:8080", "[2001:db8::1]:8080", nil, true},
		{"foreign", "https://evil.example", "rt.example.com", nil, false},
		{"suffix of host", "https://example.com", "rt.example.com", nil, false},
		{"host as prefix", "https://rt.example.com.evil.example", "rt.example.com", nil, false},
		{"localhost", "http://localhost:3000", "rt.example.com", nil, true},
		{"localhost trailing dot", "http://localhost.:3000", "rt.example.com", nil, true},
		{"127/8", "http://127.1.2.3", "rt.example.com", nil, true},
		{"ipv6 loopback", "http://[::1]:3000", "rt.example.com", nil, true},
		{"localhost lookalike", "http://localhost.evil.example", "rt.example.com", nil, false},
		{"rebinding name", "http://127.0.0.1.nip.io", "rt.example.com", nil, false},
		{"null", "null", "rt.example.com", nil, false},
		{"empty", "", "rt.example.com", nil, false},
		{"no scheme", "rt.example.com", "rt.example.com", nil, false},
		{"path", "https://rt.example.com/app", "rt.example.com", nil, false},
		{"userinfo", "https://evil@rt.example.com", "rt.example.com", nil, false},
		{"bad port", "https://rt.example.com:http", "rt.example.com", nil, false},
		{"empty Host", "https://rt.example.com", "", nil, false},

		// An explicit list: the entries and the own origin; loopback only
		// when listed.
		{"listed", "https://app.example.com", "rt.example.com", list, true},
		{"listed case", "https://App.Example.Com", "rt.example.com", list, true},
		{"listed default port", "https://app.example.com:443", "rt.example.com", list, true},
		{"listed other scheme", "http://app.example.com", "rt.example.com", list, false},
		{"listed other port", "https://app.example.com:444", "rt.example.com", list, false},
		{"listed subdomain of entry", "https://x.app.example.com", "rt.example.com", list, false},
		{"wildcard one level", "https://a.example.org", "rt.example.com", list, true},
		{"wildcard two levels", "https://a.b.example.org", "rt.example.com", list, true},
		{"wildcard apex", "https://example.org", "rt.example.com", list, false},
		{"wildcard lookalike", "https://evilexample.org", "rt.example.com", list, false},
		{"wildcard other scheme", "http://a.example.org", "rt.example.com", list, false},
		{"listed loopback", "http://localhost:5173", "rt.example.com", list, true},
		{"listed ipv6 loopback", "wss://[::1]:9000", "rt.example.com", list, true},
		{"unlisted loopback", "http://localhost:3000", "rt.example.com", list, false},
		{"own origin with list", "https://rt.example.com", "rt.example.com", list, true},
		{"foreign with list", "https://evil.example", "rt.example.com", list, false},
		{"bad entry matches nothing", "bad entry", "rt.example.com", list, false},

		// "*" admits anything.
		{"star foreign", "https://evil.example", "rt.example.com", []string{"*"}, true},
		{"star null", "null", "rt.example.com", []string{"*"}, true},
		{"star among others", "https://evil.example", "rt.example.com", []string{"https://app.example.com", "*"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := originAllowed(tt.origin, tt.host, tt.allowed); got != tt.want {
				t.Errorf("originAllowed(%q, %q, %q) = %v, want %v", tt.origin, tt.host, tt.allowed, got, tt.want)
			}
		})
	}
}

func TestCheckOriginPattern(t *testing.T) {
	tests := []struct {
		pattern string
		ok      bool
	}{
		{"*", true},
		{"https://app.example.com", true},
		{"https://app.example.com/", true},
		{"http://localhost:5173", true},
		{"https://*.example.com", true},
		{"https://*.example.com:8443", true},
		{"http://[::1]:3000", true},
		{"chrome-extension://abcdef", true},
		{"", false},
		{"app.example.com", false},
		{"*.example.com", false},
		{"https://", false},
		{"https://*", false},
		{"https://*.", false},
		{"https://a*.example.com", false},
		{"https://*example.com", false},
		{"https://app.*.com", false},
		{"https://app.example.com/path", false},
		{"https://app.example.com:port", false},
		{"https://app.example.com:", false},
		{"https://app.example.com:123456", false},
		{"https://::1", false},
		{"https://[::1", false},
		{"1http://app.example.com", false},
		{"https://app.example.com,https://b.example.com", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			if err := CheckOriginPattern(tt.pattern); (err == nil) != tt.ok {
				t.Errorf("CheckOriginPattern(%q) = %v, want ok=%v", tt.pattern, err, tt.ok)
			}
		})
	}
}

func TestLoopbackHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"localhost", true},
		{"localhost:8080", true},
		{"LOCALHOST:8080", true},
		{"localhost.", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8080", true},
		{"127.45.6.7:8080", true},
		{"[::1]", true},
		{"[::1]:8080", true},
		{"", false},
		{"::1", false}, // a Host header brackets IPv6 addresses
		{"evil.example", false},
		{"evil.example:8080", false},
		{"localhost.evil.example", false},
		{"sub.localhost", false},
		{"127.0.0.1.nip.io", false},
		{"0.0.0.0:8080", false},
		{"10.0.0.1", false},
		{"[::ffff:127.0.0.1]:8080", true},
		{"[2001:db8::1]:8080", false},
		{"localhost:http", false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			if got := LoopbackHost(tt.host); got != tt.want {
				t.Errorf("LoopbackHost(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}
