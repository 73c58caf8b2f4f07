package sid

import (
	"encoding/hex"
	"testing"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		auth uint64
		subs []uint32
		want string
	}{
		{5, []uint32{21, 1004336348, 1177238915, 682003330, 513}, "S-1-5-21-1004336348-1177238915-682003330-513"},
		{5, []uint32{32, 544}, "S-1-5-32-544"},
		{18, []uint32{1}, "S-1-18-1"},
		{1, []uint32{0}, "S-1-1-0"},
		{5, nil, "S-1-5"},
		{5, []uint32{4294967295}, "S-1-5-4294967295"},
		{1<<32 - 1, []uint32{7}, "S-1-4294967295-7"},
		{1 << 32, []uint32{7}, "S-1-0x000100000000-7"},
		{0xffffffffffff, []uint32{7}, "S-1-0xFFFFFFFFFFFF-7"},
	}
	for _, tt := range tests {
		if got := Format(tt.auth, tt.subs); got != tt.want {
			t.Errorf("Format(%d, %v) = %q, want %q", tt.auth, tt.subs, got, tt.want)
		}
	}
}

func TestFromBinary(t *testing.T) {
	tests := []struct {
		hex, want string // want "" means an error
	}{
		{"010500000000000515000000dcf4dc3b833d2b46828ba62801020000", "S-1-5-21-1004336348-1177238915-682003330-513"},
		{"01020000000000052000000020020000", "S-1-5-32-544"},
		{"010100000000000100000000", "S-1-1-0"},
		{"01010000ffffffffffff07000000", ""}, // wrong length for one sub-authority
		{"0101ffffffffffff07000000", "S-1-0xFFFFFFFFFFFF-7"},
		{"", ""},
		{"0105000000000005150000", ""},   // cut short
		{"020100000000000100000000", ""}, // revision 2
		{"01100000000000050000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000", ""}, // 16 sub-authorities
	}
	for _, tt := range tests {
		b, err := hex.DecodeString(tt.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := FromBinary(b)
		if tt.want == "" {
			if err == nil {
				t.Errorf("FromBinary(%s) = %q, want an error", tt.hex, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("FromBinary(%s) = %q, %v; want %q", tt.hex, got, err, tt.want)
		}
	}
}

func TestAppendBinary(t *testing.T) {
	b, _ := hex.DecodeString("010500000000000515000000dcf4dc3b833d2b46828ba62801020000")
	dst := []byte("sid=")
	got, err := AppendBinary(dst, b)
	if err != nil || string(got) != "sid=S-1-5-21-1004336348-1177238915-682003330-513" {
		t.Errorf("AppendBinary = %q, %v", got, err)
	}
	if got, err := AppendBinary(dst, b[:len(b)-1]); err == nil || string(got) != "sid=" {
		t.Errorf("AppendBinary of a cut SID = %q, %v; want sid= and an error", got, err)
	}
	// Written into a buffer with room, a SID costs no allocation: the PAC
	// decoder writes a thousand of them per login.
	buf := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendBinary(buf[:0], b) }); n != 0 {
		t.Errorf("AppendBinary allocated %v times", n)
	}
	if !ValidBinary(b) || ValidBinary(b[:8]) || ValidBinary(append(b, 0)) {
		t.Error("ValidBinary takes a whole SID and nothing else")
	}
}
