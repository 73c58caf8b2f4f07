package l4

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/iwalb/iwalb/internal/hostname"
)

// Errors from reading a ClientHello. A caller branches on them to count the
// reason a connection was refused.
var (
	// ErrNotTLS means the first bytes are not a TLS handshake record.
	ErrNotTLS = errors.New("not a TLS handshake")
	// ErrHelloTooLarge means the ClientHello exceeds the configured maximum.
	ErrHelloTooLarge = errors.New("TLS ClientHello too large")
	// ErrMalformedHello means the bytes look like TLS but do not form a
	// well-formed ClientHello.
	ErrMalformedHello = errors.New("malformed TLS ClientHello")
	// ErrIncompleteHello means the bytes end before the ClientHello does.
	ErrIncompleteHello = errors.New("incomplete TLS ClientHello")
	// ErrTooManyRecords means the ClientHello is split into more TLS
	// records than allowed.
	ErrTooManyRecords = errors.New("TLS ClientHello split into too many records")
)

// DefaultMaxHelloRecords is how many TLS records a ClientHello may be split
// into unless configured otherwise. Browsers and TLS libraries send it in
// one record (two once it exceeds 16 KiB); the rest leaves room for clients
// that split it on purpose, as some do to slip past filtering middleboxes.
const DefaultMaxHelloRecords = 8

const (
	recordTypeHandshake  = 22
	handshakeClientHello = 1
	recordHeaderLen      = 5
	maxRecordPayload     = 1<<14 + 2048 // TLSCiphertext limit; plaintext hellos are smaller
	extServerName        = 0
	extALPN              = 16
	sniHostName          = 0
)

// ClientHello is what routing needs from a TLS ClientHello.
type ClientHello struct {
	// ServerName is the SNI host name, lower-cased; empty when the client
	// sent none.
	ServerName string
	// ALPN lists the protocols the client offers, in its order.
	ALPN []string
	// WireLen is how many bytes of records carried the ClientHello.
	WireLen int
}

// ParseClientHello parses the ClientHello at the start of wire, the bytes
// exactly as a client sent them: one or more TLS handshake records, as many
// as it likes. It returns ErrIncompleteHello (wrapped) if wire ends too
// early, and ErrNotTLS or ErrMalformedHello for bytes that can never become
// a valid ClientHello. Its work is linear in len(wire).
func ParseClientHello(wire []byte) (*ClientHello, error) {
	r := helloReader{maxWire: 1 << 24}
	return r.parseWire(wire)
}

// parseWire is ParseClientHello with r's limits.
func (r *helloReader) parseWire(wire []byte) (*ClientHello, error) {
	msg, n, need, err := r.assemble(wire)
	if err != nil {
		return nil, err
	}
	if need > 0 {
		return nil, fmt.Errorf("%w: have %d bytes, need at least %d", ErrIncompleteHello, len(wire), need)
	}
	h, err := r.parse(msg)
	if err != nil {
		return nil, err
	}
	h.WireLen = n
	return h, nil
}

// PeekClientHello reads the ClientHello through br without consuming it:
// afterwards br still holds every byte the client sent, to be forwarded
// unchanged. maxWire bounds the bytes of records read and must not exceed
// br's size; a hello split into more than DefaultMaxHelloRecords records is
// refused with ErrTooManyRecords. Its work is linear in the bytes read,
// however they arrive. Deadlines are the caller's: set one on the
// connection first.
func PeekClientHello(br *bufio.Reader, maxWire int) (*ClientHello, error) {
	r := helloReader{maxWire: maxWire, maxRecords: DefaultMaxHelloRecords}
	return r.peek(br)
}

// helloReader gathers the ClientHello handshake message from the records
// that carry it as their bytes arrive, and parses it. It keeps its place
// between calls: each record header is read once and each fragment copied
// at most once, into one buffer that grows by doubling, so the work is
// linear in the bytes received however the client splits them.
// (Reassembling from the first record for every new one made one write of
// a 16 KiB hello in one-byte records cost seconds of CPU.)
type helloReader struct {
	maxWire    int // bytes of records at most
	maxRecords int // records at most; 0 means no limit

	off     int    // wire bytes of the records taken so far
	records int    // records taken so far
	msg     []byte // the fragments taken so far, copied (owned)

	// steps counts units of work (records looked at, bytes copied, fields
	// parsed), so that tests can hold it to a budget linear in the input.
	steps int
}

// peek runs the reader over br until it has the ClientHello or an error.
func (r *helloReader) peek(br *bufio.Reader) (*ClientHello, error) {
	r.maxWire = min(r.maxWire, br.Size())
	need := 1 // one byte is enough to refuse a non-TLS client at once
	for {
		if need > r.maxWire {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, r.maxWire)
		}
		// Everything already buffered, not only the bytes needed: one
		// write of many records is taken in one call.
		wire, err := br.Peek(max(need, min(br.Buffered(), r.maxWire)))
		if err != nil {
			// Judge what did arrive: a client that sent "\x16\x30" and
			// hung up sent non-TLS bytes, not a short hello.
			if _, _, _, aerr := r.assemble(wire); aerr != nil {
				return nil, aerr
			}
			return nil, err
		}
		msg, n, more, err := r.assemble(wire)
		if err != nil {
			return nil, err
		}
		if more > 0 {
			need = more
			continue
		}
		h, err := r.parse(msg)
		if err != nil {
			return nil, err
		}
		h.WireLen = n
		return h, nil
	}
}

// assemble resumes collecting the handshake message that starts in wire:
// the client's bytes from the first one, at least as many as the previous
// call saw (the slice itself may have moved). It returns the message and
// how many wire bytes carried it, or need > 0: the wire length to wait for.
// The message is r's own or, when one record held all of it, a part of
// wire.
func (r *helloReader) assemble(wire []byte) (msg []byte, n, need int, err error) {
	if len(wire) > 0 && wire[0] != recordTypeHandshake {
		return nil, 0, 0, ErrNotTLS
	}
	if len(wire) > 1 && wire[1] != 3 { // SSL 3.0 .. TLS 1.3 all have major version 3
		return nil, 0, 0, ErrNotTLS
	}
	for {
		r.steps++
		if len(wire) < r.off+recordHeaderLen {
			return nil, 0, r.off + recordHeaderLen, nil
		}
		hdr := wire[r.off : r.off+recordHeaderLen]
		if hdr[0] != recordTypeHandshake {
			// Nothing may be interleaved with a fragmented handshake message.
			return nil, 0, 0, fmt.Errorf("%w: record type %d inside the ClientHello", ErrMalformedHello, hdr[0])
		}
		if hdr[1] != 3 {
			return nil, 0, 0, fmt.Errorf("%w: record version %d.%d", ErrMalformedHello, hdr[1], hdr[2])
		}
		l := int(hdr[3])<<8 | int(hdr[4])
		if l == 0 || l > maxRecordPayload {
			return nil, 0, 0, fmt.Errorf("%w: record length %d", ErrMalformedHello, l)
		}
		end := r.off + recordHeaderLen + l
		if end > r.maxWire {
			return nil, 0, 0, fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, r.maxWire)
		}
		if len(wire) < end {
			return nil, 0, end, nil
		}
		frag := wire[r.off+recordHeaderLen : end]
		r.off = end
		r.records++
		if r.records == 1 {
			// The common case: one record holds the whole message, which
			// is parsed where it lies.
			ml, err := r.helloLen(frag)
			if err != nil {
				return nil, 0, 0, err
			}
			if ml > 0 && len(frag) >= ml {
				return frag[:ml], end, 0, nil
			}
		}
		r.msg = append(r.msg, frag...)
		r.steps += len(frag)
		ml, err := r.helloLen(r.msg)
		if err != nil {
			return nil, 0, 0, err
		}
		if ml > 0 && len(r.msg) >= ml {
			return r.msg[:ml], end, 0, nil
		}
		if r.maxRecords > 0 && r.records >= r.maxRecords {
			return nil, 0, 0, fmt.Errorf("%w: %d records and the message is not complete", ErrTooManyRecords, r.records)
		}
	}
}

// helloLen returns the length of the ClientHello message that starts msg,
// header included, or 0 while msg is too short to say.
func (r *helloReader) helloLen(msg []byte) (int, error) {
	if len(msg) < 4 {
		return 0, nil
	}
	if msg[0] != handshakeClientHello {
		return 0, fmt.Errorf("%w: handshake type %d, want ClientHello", ErrMalformedHello, msg[0])
	}
	ml := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
	if ml > r.maxWire {
		return 0, fmt.Errorf("%w: %d-byte message, limit %d", ErrHelloTooLarge, ml, r.maxWire)
	}
	return ml, nil
}

// parse parses a complete ClientHello handshake message.
func (r *helloReader) parse(msg []byte) (*ClientHello, error) {
	bad := func(what string) (*ClientHello, error) {
		return nil, fmt.Errorf("%w: %s", ErrMalformedHello, what)
	}
	s := cursor(msg[4:])
	if _, ok := s.bytes(2 + 32); !ok { // legacy_version, random
		return bad("short header")
	}
	if sid, ok := s.vec8(); !ok || len(sid) > 32 {
		return bad("session id")
	}
	if cs, ok := s.vec16(); !ok || len(cs) == 0 || len(cs)%2 != 0 {
		return bad("cipher suites")
	}
	if cm, ok := s.vec8(); !ok || len(cm) == 0 {
		return bad("compression methods")
	}
	h := &ClientHello{}
	if len(s) == 0 {
		return h, nil // no extensions: legal, if old
	}
	exts, ok := s.vec16()
	if !ok || len(s) != 0 {
		return bad("extensions length")
	}
	// One bit per extension type: a hello of thousands of empty extensions
	// costs linear time, not quadratic.
	var seen [1 << 16 / 64]uint64
	for len(exts) > 0 {
		r.steps++
		typ, ok1 := exts.u16()
		data, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return bad("extension")
		}
		word, bit := typ/64, uint64(1)<<(typ%64)
		if seen[word]&bit != 0 {
			return bad(fmt.Sprintf("duplicate extension %d", typ))
		}
		seen[word] |= bit
		var err error
		switch typ {
		case extServerName:
			h.ServerName, err = parseSNI(data, &r.steps)
		case extALPN:
			h.ALPN, err = parseALPN(data, &r.steps)
		}
		if err != nil {
			return nil, err
		}
	}
	return h, nil
}

// parseSNI reads the server_name extension; steps counts its entries.
func parseSNI(data cursor, steps *int) (string, error) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return "", fmt.Errorf("%w: server_name list", ErrMalformedHello)
	}
	var name string
	for len(list) > 0 {
		*steps++
		typ, ok1 := list.u8()
		v, ok2 := list.vec16()
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w: server_name entry", ErrMalformedHello)
		}
		if typ != sniHostName {
			continue // future name types: not ours to judge
		}
		if name != "" {
			return "", fmt.Errorf("%w: two host names", ErrMalformedHello)
		}
		if !hostname.ValidSNI(v) {
			return "", fmt.Errorf("%w: invalid host name", ErrMalformedHello)
		}
		name = strings.ToLower(string(v))
	}
	return name, nil
}

// parseALPN reads the ALPN extension; steps counts its entries.
func parseALPN(data cursor, steps *int) ([]string, error) {
	list, ok := data.vec16()
	if !ok || len(data) != 0 || len(list) == 0 {
		return nil, fmt.Errorf("%w: ALPN list", ErrMalformedHello)
	}
	var out []string
	for len(list) > 0 {
		*steps++
		p, ok := list.vec8()
		if !ok || len(p) == 0 {
			return nil, fmt.Errorf("%w: ALPN protocol", ErrMalformedHello)
		}
		out = append(out, string(p))
	}
	return out, nil
}

// cursor reads big-endian, length-prefixed TLS fields; every read reports
// whether enough bytes were left, so a truncated input can never panic.
type cursor []byte

func (c *cursor) bytes(n int) ([]byte, bool) {
	if n < 0 || len(*c) < n {
		return nil, false
	}
	v := (*c)[:n]
	*c = (*c)[n:]
	return v, true
}

func (c *cursor) u8() (uint8, bool) {
	v, ok := c.bytes(1)
	if !ok {
		return 0, false
	}
	return v[0], true
}

func (c *cursor) u16() (uint16, bool) {
	v, ok := c.bytes(2)
	if !ok {
		return 0, false
	}
	return uint16(v[0])<<8 | uint16(v[1]), true
}

func (c *cursor) vec8() (cursor, bool) {
	n, ok := c.u8()
	if !ok {
		return nil, false
	}
	v, ok := c.bytes(int(n))
	return cursor(v), ok
}

func (c *cursor) vec16() (cursor, bool) {
	n, ok := c.u16()
	if !ok {
		return nil, false
	}
	v, ok := c.bytes(int(n))
	return cursor(v), ok
}
