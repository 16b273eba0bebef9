package main

import (
	"net"
	"testing"
)

// TestDevDocumentRule: --dev makes the demo's editor stream a document
// stream and leaves other streams alone; a --rule with the same prefix
// still decides, since the flags come after the dev rule.
func TestDevDocumentRule(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	for _, tt := range []struct {
		name  string
		args  []string
		doc   bool // whether demo:doc is a document
		other string
	}{
		{"default", nil, true, "demo:room"},
		{"overridden", []string{"--rule", "demo:doc=;document=off"}, false, "demo:room"},
		{"kept beside other rules", []string{"--rule", "demo:=;history=50"}, true, "demo:room"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(append([]string{"--dev"}, tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := setupDev(o, loopback); err != nil {
				t.Fatal(err)
			}
			a, err := newAuth(o)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.StreamOptions(devDocument).Document; got != tt.doc {
				t.Errorf("%s is a document: %v, want %v (rules %q)", devDocument, got, tt.doc, o.rules)
			}
			if a.StreamOptions(tt.other).Document {
				t.Errorf("%s is a document too (rules %q)", tt.other, o.rules)
			}
		})
	}
	// Without --dev no rule is added.
	o, err := parseOptions([]string{"--secret", e2eSecret})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.rules) != 0 {
		t.Errorf("rules without --dev: %q", o.rules)
	}
}
