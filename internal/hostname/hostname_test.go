package hostname

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	tests := []struct {
		name        string
		strict, sni bool
	}{
		{"auth1.example.test", true, true},
		{"LB.Example.Test", true, true},
		{"localhost", true, true},
		{"x", true, true},
		{long63 + ".test", true, true},
		{strings.Repeat("a", 64) + ".test", false, false},
		{strings.Repeat("a.", 126) + "a", true, true}, // 253 bytes
		{strings.Repeat("a.", 126) + "ab", false, false},
		{"my_host.corp", false, true},
		{"-lead.example.test", false, true},
		{"trail-.example.test", false, true},
		{"mid-dle.example.test", true, true},
		{"", false, false},
		{".example.test", false, false},
		{"example.test.", false, false},
		{"a..b", false, false},
		{"a b.test", false, false},
		{"a/b.test", false, false},
		{"xn--bcher-kva.example", true, true},
		{"héllo.test", false, false},
		{"evil.test\r\n", false, false},
	}
	for _, tt := range tests {
		if got := Valid(tt.name); got != tt.strict {
			t.Errorf("Valid(%q) = %v, want %v", tt.name, got, tt.strict)
		}
		if got := ValidSNI(tt.name); got != tt.sni {
			t.Errorf("ValidSNI(%q) = %v, want %v", tt.name, got, tt.sni)
		}
		if got := ValidSNI([]byte(tt.name)); got != tt.sni {
			t.Errorf("ValidSNI([]byte %q) = %v, want %v", tt.name, got, tt.sni)
		}
	}
}

func TestFQDNAndIPLike(t *testing.T) {
	for name, want := range map[string]bool{"auth1.example.test": true, "localhost": false, "a.b": true, "-a.b": false} {
		if got := FQDN(name); got != want {
			t.Errorf("FQDN(%q) = %v", name, got)
		}
	}
	for name, want := range map[string]bool{"192.0.2.1": true, "::1": true, "host.10": true, "10": true,
		"auth1.example.test": false, "a1.example.test2": false} {
		if got := IPLike(name); got != want {
			t.Errorf("IPLike(%q) = %v", name, got)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"sso.example.test", "sso.example.test", true},
		{"sso.example.test", "other.example.test", false},
		{"*.example.test", "a.example.test", true},
		{"*.example.test", "a.b.example.test", false}, // one label only
		{"*.example.test", "example.test", false},
		{"*.example.test", ".example.test", false},
		{"*.example.test", "*.example.test", true},
		{"*.example.test", "*.other.test", false},
		{"*.example.test", "aexample.test", false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.host); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
	if !ValidPattern("*.example.test", Valid) || ValidPattern("*.", Valid) || ValidPattern("a.*.test", Valid) || !ValidPattern("a.test", Valid) {
		t.Error("ValidPattern accepts or refuses the wrong patterns")
	}
}

// FuzzValid holds the checks to their contract: ValidSNI accepts whatever
// Valid does, the string and byte forms agree, and no check allocates
// (they run on every ClientHello and request).
func FuzzValid(f *testing.F) {
	f.Add("auth1.example.test")
	f.Add("-a_b.")
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) && !ValidSNI(s) {
			t.Fatalf("Valid but not ValidSNI: %q", s)
		}
		if ValidSNI(s) != ValidSNI([]byte(s)) {
			t.Fatalf("string and []byte disagree on %q", s)
		}
		if FQDN(s) && !Valid(s) {
			t.Fatalf("FQDN but not Valid: %q", s)
		}
		b := []byte(s)
		var sink bool
		if n := testing.AllocsPerRun(1, func() { sink = Valid(s) != ValidSNI(b) != Match("*.example.test", s) }); n != 0 {
			t.Fatalf("%v allocations checking %q", n, s)
		}
		_ = sink
	})
}
