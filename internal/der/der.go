// Package der reads and writes the single elements of the DER that
// Negotiate tokens are made of: a one-byte tag and a definite length of at
// most four bytes. It is written by hand, not left to encoding/asn1,
// because the GSS-API framing around a token is not itself valid DER (its
// inner token is not an ASN.1 value), and so that a token's parts can be
// walked with every length checked against the bytes present.
package der

import (
	"errors"
	"fmt"
)

// ErrTruncated is an element cut short.
var ErrTruncated = errors.New("truncated")

// ReadTLV splits one element (single-byte tag, definite length) off b:
// its tag, its content and the bytes after it.
func ReadTLV(b []byte) (tag byte, content, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, nil, ErrTruncated
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, nil, nil, errors.New("multi-byte ASN.1 tags are not used in Negotiate tokens")
	}
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		nb := n & 0x7f
		if nb == 0 || nb > 4 {
			return 0, nil, nil, fmt.Errorf("unsupported ASN.1 length form 0x%02x", b[1])
		}
		if len(b) < 2+nb {
			return 0, nil, nil, ErrTruncated
		}
		n = 0
		for _, c := range b[2 : 2+nb] {
			n = n<<8 | int(c)
		}
		hdr += nb
	}
	if n < 0 || n > len(b)-hdr {
		return 0, nil, nil, fmt.Errorf("ASN.1 length %d exceeds the %d bytes present", n, len(b)-hdr)
	}
	return tag, b[hdr : hdr+n], b[hdr+n:], nil
}

// AppendTLV appends the element of tag and content to b, its length in its
// shortest form.
func AppendTLV(b []byte, tag byte, content []byte) []byte {
	b = append(b, tag)
	switch n := len(content); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, content...)
}
