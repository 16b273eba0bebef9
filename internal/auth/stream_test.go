package auth_test

import (
	"strings"
	"testing"

	"github.com/huddle-rt/huddle/internal/auth"
)

func TestValidStream(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{"simple", "doc:42", true},
		{"spaces and symbols", "room 1/a*b?=;", true},
		{"unicode", "салон:☕", true},
		{"max length", strings.Repeat("a", auth.MaxStreamLen), true},
		{"max length multibyte", strings.Repeat("é", auth.MaxStreamLen/2), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", auth.MaxStreamLen+1), false},
		{"too long multibyte", strings.Repeat("é", auth.MaxStreamLen/2) + "a", false},
		{"newline", "doc\n1", false},
		{"nul", "doc\x001", false},
		{"tab", "doc\t1", false},
		{"del", "doc\x7f", false},
		{"C1 control", "doc\u0085", false},
		{"invalid utf8", "doc\xff", false},
		{"truncated utf8", "doc\xc3", false},
		{"replacement char itself", "doc\ufffd", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.ValidStream(tt.in); got != tt.want {
				t.Errorf("ValidStream(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestValidStreamAllocs(t *testing.T) {
	name := strings.Repeat("é", 100)
	if n := testing.AllocsPerRun(100, func() { auth.ValidStream(name) }); n != 0 {
		t.Errorf("ValidStream allocates %v times", n)
	}
}
