package der

import (
	"bytes"
	"errors"
	"testing"
)

// TestRoundTrip: what AppendTLV writes, ReadTLV reads back, at each length
// form, with the bytes after it left alone.
func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000} {
		content := bytes.Repeat([]byte{0xab}, n)
		b := append(AppendTLV(nil, 0x30, content), 1, 2)
		tag, got, rest, err := ReadTLV(b)
		if err != nil || tag != 0x30 || !bytes.Equal(got, content) || !bytes.Equal(rest, []byte{1, 2}) {
			t.Errorf("%d bytes: tag %#x, %d bytes, rest %v, %v", n, tag, len(got), rest, err)
		}
	}
}

// TestReadTLVRefuses: every length is checked against the bytes present.
func TestReadTLVRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"tag only", []byte{0x30}},
		{"multi-byte tag", []byte{0x1f, 0x01, 0x00}},
		{"indefinite length", []byte{0x30, 0x80}},
		{"five length bytes", []byte{0x30, 0x85, 0, 0, 0, 0, 1}},
		{"length bytes missing", []byte{0x30, 0x82, 0x01}},
		{"content short", []byte{0x30, 0x03, 0x01, 0x02}},
		{"huge length", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}},
	} {
		if _, _, _, err := ReadTLV(tt.b); err == nil {
			t.Errorf("%s: % x read", tt.name, tt.b)
		}
	}
	if _, _, _, err := ReadTLV([]byte{0x30}); !errors.Is(err, ErrTruncated) {
		t.Errorf("one byte: %v, want ErrTruncated", err)
	}
}
