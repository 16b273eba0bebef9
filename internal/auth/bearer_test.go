package auth_test

import (
	"testing"

	"github.com/huddle-rt/huddle/internal/auth"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   string
		wantOK bool
	}{
		{"canonical", "Bearer abc.def.ghi", "abc.def.ghi", true},
		{"lower case scheme", "bearer abc", "abc", true},
		{"upper case scheme", "BEARER abc", "abc", true},
		{"mixed case scheme", "bEaReR abc", "abc", true},
		{"several spaces", "Bearer    abc", "abc", true},
		{"tab", "Bearer\tabc", "abc", true},
		{"surrounding whitespace", "  Bearer abc  ", "abc", true},
		{"base64 padding", "Bearer YWJj==", "YWJj==", true},
		{"empty", "", "", false},
		{"scheme only", "Bearer", "", false},
		{"scheme and space only", "Bearer   ", "", false},
		{"other scheme", "Basic YWxhZGRpbjpvcGVuc2VzYW1l", "", false},
		{"scheme prefix of another word", "Bearerabc", "", false},
		{"longer scheme", "Bearers abc", "", false},
		{"two tokens", "Bearer abc def", "", false},
		{"no scheme", "abc.def.ghi", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := auth.BearerToken(tt.header)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("BearerToken(%q) = %q, %v, want %q, %v", tt.header, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
