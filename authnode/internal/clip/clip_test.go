package clip

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	long := strings.Repeat("a", 90<<10)
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"alice@EXAMPLE.TEST", "alice@EXAMPLE.TEST"},
		{strings.Repeat("x", Max), strings.Repeat("x", Max)},
		{strings.Repeat("x", Max+1), strings.Repeat("x", Max) + "…(truncated, 257 bytes)"},
		{long, strings.Repeat("a", Max) + "…(truncated, 92160 bytes)"},
		// A cut inside a multi-byte character backs off to its start.
		{strings.Repeat("x", Max-1) + "é" + "tail", strings.Repeat("x", Max-1) + "…(truncated, 261 bytes)"},
	}
	for _, tt := range tests {
		got := String(tt.in)
		if got != tt.want {
			t.Errorf("String(%d bytes) = %q, want %q", len(tt.in), got, tt.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("String(%d bytes) is not valid UTF-8", len(tt.in))
		}
	}
}

func TestN(t *testing.T) {
	if got := N("abcdef", 3); got != "abc…(truncated, 6 bytes)" {
		t.Errorf("N = %q", got)
	}
	if got := N("abcdef", 0); got != "…(truncated, 6 bytes)" {
		t.Errorf("N(…, 0) = %q", got)
	}
}
