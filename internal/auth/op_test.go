package auth_test

import (
	"errors"
	"testing"

	"github.com/huddle-rt/huddle/internal/auth"
)

func TestParseOp(t *testing.T) {
	tests := []struct {
		in      string
		want    auth.Op
		wantErr bool
	}{
		{"sub", auth.OpSub, false},
		{"pub", auth.OpPub, false},
		{"whisper", auth.OpWhisper, false},
		{"presence", auth.OpPresence, false},
		{"history", auth.OpHistory, false},
		{"", 0, true},
		{"Sub", 0, true},
		{"publish", 0, true},
		{" sub", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := auth.ParseOp(tt.in)
			if tt.wantErr {
				if !errors.Is(err, auth.ErrUnknownOp) {
					t.Fatalf("ParseOp(%q) = %v, %v; want ErrUnknownOp", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseOp(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.in {
				t.Errorf("String() = %q, want %q", s, tt.in)
			}
		})
	}
}

func TestOpStringInvalid(t *testing.T) {
	for _, op := range []auth.Op{0, 6, 255} {
		if got, _ := auth.ParseOp(op.String()); got != 0 {
			t.Errorf("invalid %d String() = %q parses as %v", op, op.String(), got)
		}
	}
	if got := auth.Op(0).String(); got != "Op(0)" {
		t.Errorf("Op(0).String() = %q", got)
	}
}

func TestOps(t *testing.T) {
	tests := []struct {
		in      string
		want    auth.Ops
		str     string
		wantErr bool
	}{
		{"", 0, "", false},
		{"  ", 0, "", false},
		{"sub", auth.OpsOf(auth.OpSub), "sub", false},
		{"history, sub ,pub", auth.OpsOf(auth.OpSub, auth.OpPub, auth.OpHistory), "sub,pub,history", false},
		{"sub,sub", auth.OpsOf(auth.OpSub), "sub", false},
		{"sub,pub,whisper,presence,history", auth.AllOps, "sub,pub,whisper,presence,history", false},
		{"sub,", 0, "", true},
		{"sub,nope", 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := auth.ParseOps(tt.in)
			if tt.wantErr {
				if !errors.Is(err, auth.ErrUnknownOp) {
					t.Fatalf("ParseOps(%q) = %v, %v; want ErrUnknownOp", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseOps(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}

func TestOpsHas(t *testing.T) {
	s := auth.OpsOf(auth.OpPub, auth.OpPresence, 0, 9)
	for op := auth.Op(0); op < 10; op++ {
		want := op == auth.OpPub || op == auth.OpPresence
		if got := s.Has(op); got != want {
			t.Errorf("Has(%v) = %v, want %v", op, got, want)
		}
	}
	if auth.AllOps.Has(0) {
		t.Error("AllOps.Has(0) = true")
	}
}
