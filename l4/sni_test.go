package l4

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"math/bits"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/hostname"
)

func TestParseClientHello(t *testing.T) {
	modern := captureHello(t, &tls.Config{ServerName: "Auth.Example.Test", NextProtos: []string{"h2", "http/1.1"}})
	tls12 := captureHello(t, &tls.Config{ServerName: "a.example.test", MaxVersion: tls.VersionTLS12})
	noSNI := captureHello(t, &tls.Config{InsecureSkipVerify: true})
	ipOnly := captureHello(t, &tls.Config{ServerName: "127.0.0.1"}) // Go sends no SNI for an IP

	tests := []struct {
		name    string
		wire    []byte
		sni     string
		alpn    []string
		wantErr error
	}{
		{"tls13 with ALPN", modern, "auth.example.test", []string{"h2", "http/1.1"}, nil},
		{"tls12", tls12, "a.example.test", nil, nil},
		{"no SNI", noSNI, "", nil, nil},
		{"IP server name", ipOnly, "", nil, nil},
		{"split in 3 records", refragment(modern, len(modern)/3), "auth.example.test", []string{"h2", "http/1.1"}, nil},
		{"one byte per record", refragment(modern, 1), "auth.example.test", []string{"h2", "http/1.1"}, nil},
		{"trailing bytes ignored", append(slices.Clone(modern), 23, 3, 3, 0, 1, 0), "auth.example.test", []string{"h2", "http/1.1"}, nil},
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "", nil, ErrNotTLS},
		{"SSH", []byte("SSH-2.0-OpenSSH_9.6\r\n"), "", nil, ErrNotTLS},
		{"wrong major version", []byte{22, 4, 1, 0, 5}, "", nil, ErrNotTLS},
		{"truncated", modern[:len(modern)-1], "", nil, ErrIncompleteHello},
		{"header only", modern[:5], "", nil, ErrIncompleteHello},
		{"empty", nil, "", nil, ErrIncompleteHello},
		{"zero-length record", []byte{22, 3, 1, 0, 0}, "", nil, ErrMalformedHello},
		{"not a ClientHello", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0}, "", nil, ErrMalformedHello},
		{"alert inside hello", append(refragment(modern, 100)[:105], 21, 3, 3, 0, 2, 2, 40), "", nil, ErrMalformedHello},
		{"short body", []byte{22, 3, 1, 0, 6, 1, 0, 0, 2, 3, 3}, "", nil, ErrMalformedHello},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseClientHello(tt.wire)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.ServerName != tt.sni || !slices.Equal(h.ALPN, tt.alpn) {
				t.Errorf("got SNI %q ALPN %q, want %q %q", h.ServerName, h.ALPN, tt.sni, tt.alpn)
			}
		})
	}
}

// TestParseAgreesWithCryptoTLS feeds every seed ClientHello to a real
// crypto/tls server and checks that it reads the same server name and ALPN.
func TestParseAgreesWithCryptoTLS(t *testing.T) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzParseClientHello/*")
	if len(files) == 0 {
		t.Fatal("no seed corpus")
	}
	checked := 0
	for _, f := range files {
		wire := readSeed(t, f)
		ours, err := ParseClientHello(wire)
		if err != nil {
			continue // invalid seeds are there for the fuzzer
		}
		theirs := tlsServerSees(t, wire)
		if theirs == nil {
			t.Errorf("%s: we parsed SNI %q but crypto/tls rejected the hello", f, ours.ServerName)
			continue
		}
		if ours.ServerName != strings.ToLower(theirs.ServerName) || !slices.Equal(ours.ALPN, theirs.SupportedProtos) {
			t.Errorf("%s: we read %q %q, crypto/tls read %q %q", f, ours.ServerName, ours.ALPN, theirs.ServerName, theirs.SupportedProtos)
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d valid seeds compared", checked)
	}
}

// tlsServerSees runs a crypto/tls server over the given first flight and
// returns the ClientHelloInfo it saw, or nil if it rejected it.
func tlsServerSees(t *testing.T, wire []byte) *tls.ClientHelloInfo {
	var got *tls.ClientHelloInfo
	conf := &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got = h
		return nil, errors.New("stop here")
	}}
	c := &scriptedConn{r: bytes.NewReader(wire)}
	tls.Server(c, conf).Handshake()
	return got
}

// readSeed decodes a "go test fuzz v1" corpus file holding one []byte.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(b), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a fuzz corpus file", path)
	}
	v := strings.TrimSpace(lines[1])
	v = strings.TrimSuffix(strings.TrimPrefix(v, "[]byte("), ")")
	s, err := strconv.Unquote(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestPeekRecordLimit: PeekClientHello takes a hello in up to
// DefaultMaxHelloRecords records, however its bytes arrive, and refuses one
// that needs more as soon as that is certain; ParseClientHello has no such
// limit.
func TestPeekRecordLimit(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "auth.example.test"})
	msgLen := len(hello) - recordHeaderLen
	inRecords := func(n int) []byte {
		wire := refragment(hello, (msgLen+n-1)/n)
		if got := countRecords(wire); got != n {
			t.Fatalf("made %d records, want %d", got, n)
		}
		return wire
	}
	tests := []struct {
		name  string
		wire  []byte
		chunk int // bytes per read
		want  error
	}{
		{"one record", hello, len(hello), nil},
		{"two records, a byte at a time", inRecords(2), 1, nil},
		{"the most records allowed", inRecords(DefaultMaxHelloRecords), 3, nil},
		{"one record more", inRecords(DefaultMaxHelloRecords + 1), len(hello), ErrTooManyRecords},
		{"one record more, a byte at a time", inRecords(DefaultMaxHelloRecords + 1), 1, ErrTooManyRecords},
		{"a byte per record", refragment(hello, 1), 1 << 20, ErrTooManyRecords},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The limit is known after the last record allowed: a client
			// that sent just that much and waits is refused, not waited for.
			wire := tt.wire
			if tt.want != nil {
				wire = wire[:recordEnd(wire, DefaultMaxHelloRecords)]
			}
			cr := &chunkReader{b: wire, chunk: tt.chunk}
			br := bufio.NewReaderSize(cr, 16<<10)
			h, err := PeekClientHello(br, 16<<10)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if cr.pastEnd > 0 {
				t.Error("the peek waited for bytes after the ones it needed")
			}
			if err == nil && h.ServerName != "auth.example.test" {
				t.Errorf("server name %q", h.ServerName)
			}
			if all, _ := io.ReadAll(br); !bytes.Equal(all, wire) {
				t.Error("peek consumed bytes")
			}
			if h, err := ParseClientHello(tt.wire); err != nil || h.ServerName != "auth.example.test" {
				t.Errorf("ParseClientHello: %+v, %v; want no record limit", h, err)
			}
		})
	}
}

// countRecords counts the records of well-formed wire.
func countRecords(wire []byte) int {
	n := 0
	for off := 0; off < len(wire); off = recordEnd(wire[off:], 1) + off {
		n++
	}
	return n
}

// recordEnd returns where the first n records of well-formed wire end.
func recordEnd(wire []byte, n int) int {
	off := 0
	for range n {
		off += recordHeaderLen + (int(wire[off+3])<<8 | int(wire[off+4]))
	}
	return off
}

// FuzzParseClientHello checks ParseClientHello and PeekClientHello on any
// bytes: no panic, the same verdict both ways, nothing consumed by the
// peek, and work (steps, allocations) within a budget linear in the input,
// so that a quadratic assembly or parse fails here rather than in
// production.
func FuzzParseClientHello(f *testing.F) {
	hello := captureHello(f, &tls.Config{ServerName: "auth.example.test", NextProtos: []string{"h2"}})
	f.Add(hello)
	f.Add(refragment(hello, 1)) // the most records
	f.Fuzz(func(t *testing.T, wire []byte) {
		r := helloReader{maxWire: 1 << 24} // as ParseClientHello
		h, err := r.parseWire(wire)
		checkSteps(t, "parse", r.steps, len(wire))
		if err == nil {
			if h.WireLen > len(wire) || h.WireLen < 5 {
				t.Fatalf("WireLen %d of %d bytes", h.WireLen, len(wire))
			}
			if h.ServerName != strings.ToLower(h.ServerName) || (h.ServerName != "" && !hostname.ValidSNI(h.ServerName)) {
				t.Fatalf("bad server name %q", h.ServerName)
			}
		} else if !errors.Is(err, ErrNotTLS) && !errors.Is(err, ErrMalformedHello) && !errors.Is(err, ErrIncompleteHello) && !errors.Is(err, ErrHelloTooLarge) {
			t.Fatalf("unclassified error %v", err)
		}
		// Assembling allocates the message buffer as it grows by doubling,
		// and an error: not once per record.
		allocs := testing.AllocsPerRun(1, func() {
			r := helloReader{maxWire: 1 << 24}
			r.assemble(wire)
		})
		if limit := 2*bits.Len(uint(len(wire))) + 4; allocs > float64(limit) {
			t.Fatalf("assembling %d bytes (%d records) took %v allocations, budget %d", len(wire), r.records, allocs, limit)
		}

		// Peeking through a reader, without a record limit, must reach the
		// same verdict and consume nothing. The peek's size limit is
		// smaller, and an incomplete hello shows up as the reader's EOF.
		const max = 16 << 10
		pr := helloReader{maxWire: max}
		br := bufio.NewReaderSize(bytes.NewReader(wire), max)
		ph, perr := pr.peek(br)
		checkSteps(t, "peek", pr.steps, len(wire))
		pc, kc := errClass(err), errClass(perr)
		if pc != kc && kc != "too_large" && (pc != "incomplete" || kc != "eof") {
			t.Fatalf("parse: %v; peek: %v", err, perr)
		}
		if err == nil && perr == nil && (ph.ServerName != h.ServerName || !slices.Equal(ph.ALPN, h.ALPN) || ph.WireLen != h.WireLen) {
			t.Fatalf("peek %+v, parse %+v", ph, h)
		}
		all, _ := io.ReadAll(br)
		if !bytes.Equal(all, wire) {
			t.Fatal("peek consumed bytes")
		}

		// PeekClientHello's record limit changes only the verdict on
		// hellos that need more records than it allows.
		lh, lerr := PeekClientHello(bufio.NewReaderSize(bytes.NewReader(wire), max), max)
		if errors.Is(lerr, ErrTooManyRecords) {
			if pr.records < DefaultMaxHelloRecords || (perr == nil && pr.records == DefaultMaxHelloRecords) {
				t.Fatalf("refused as too many records; without a limit: %d records, %v", pr.records, perr)
			}
		} else if errClass(lerr) != kc || (lerr == nil && (lh.ServerName != ph.ServerName || lh.WireLen != ph.WireLen)) {
			t.Fatalf("with the record limit: %v; without: %v", lerr, perr)
		}
	})
}

// FuzzPeekClientHello feeds PeekClientHello's reader the client's bytes in
// chunks of any size, after bytes already consumed from its buffer (as a
// PROXY header is), so that the assembly resumes across many peeks over a
// buffer that moves. It must agree with ParseClientHello, consume nothing,
// respect the record limit, and work within a linear budget.
func FuzzPeekClientHello(f *testing.F) {
	hello := captureHello(f, &tls.Config{ServerName: "auth.example.test", NextProtos: []string{"h2"}})
	f.Add(hello, uint8(0), uint8(0), uint8(0))
	f.Add(refragment(hello, 200), uint8(7), uint8(16), uint8(8))
	f.Add(refragment(hello, 1), uint8(1), uint8(3), uint8(0))
	f.Add(refragment(hello, 1), uint8(63), uint8(0), uint8(8))
	f.Fuzz(func(t *testing.T, wire []byte, chunk, skip, maxRecords uint8) {
		const max = 16 << 10
		in := append(bytes.Repeat([]byte{'P'}, int(skip)), wire...)
		br := bufio.NewReaderSize(&chunkReader{b: in, chunk: int(chunk%64) + 1}, max)
		if _, err := br.Discard(int(skip)); err != nil {
			t.Fatal(err)
		}
		r := helloReader{maxWire: max, maxRecords: int(maxRecords)}
		h, err := r.peek(br)
		checkSteps(t, "peek", r.steps, len(wire))
		all, _ := io.ReadAll(br)
		if !bytes.Equal(all, wire) {
			t.Fatal("peek consumed bytes")
		}
		if errors.Is(err, ErrTooManyRecords) {
			if maxRecords == 0 || r.records != int(maxRecords) {
				t.Fatalf("%v after %d records with a limit of %d", err, r.records, maxRecords)
			}
			return
		}
		if maxRecords != 0 && r.records > int(maxRecords) {
			t.Fatalf("took %d records, limit %d", r.records, maxRecords)
		}
		ph, perr := ParseClientHello(wire)
		pc, kc := errClass(perr), errClass(err)
		if pc != kc && kc != "too_large" && (pc != "incomplete" || kc != "eof") {
			t.Fatalf("parse: %v; peek: %v", perr, err)
		}
		if err == nil && perr == nil && (h.ServerName != ph.ServerName || !slices.Equal(h.ALPN, ph.ALPN) || h.WireLen != ph.WireLen) {
			t.Fatalf("peek %+v, parse %+v", h, ph)
		}
	})
}

// checkSteps fails when reading n bytes took more than a linear budget of
// steps. Each byte is copied once at most, each record header and each
// extension looked at once, and each peek resumes where the last one
// stopped: about 1.5 steps a byte.
func checkSteps(t *testing.T, what string, steps, n int) {
	t.Helper()
	if limit := 2*n + 8; steps > limit {
		t.Fatalf("%s of %d bytes took %d steps, budget %d", what, n, steps, limit)
	}
}

// chunkReader returns at most chunk bytes per Read, as a client's bytes
// arrive in TCP segments. It counts the reads past the end: a client would
// have kept the reader waiting there.
type chunkReader struct {
	b       []byte
	chunk   int
	pastEnd int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		c.pastEnd++
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.chunk)], c.b)
	c.b = c.b[n:]
	return n, nil
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotTLS):
		return "not_tls"
	case errors.Is(err, ErrMalformedHello):
		return "malformed"
	case errors.Is(err, ErrIncompleteHello):
		return "incomplete"
	case errors.Is(err, ErrHelloTooLarge):
		return "too_large"
	case errors.Is(err, ErrTooManyRecords):
		return "too_many_records"
	case errors.Is(err, io.EOF):
		return "eof"
	}
	return err.Error()
}

func BenchmarkParseClientHello(b *testing.B) {
	hello := captureHello(b, &tls.Config{ServerName: "auth.example.test", NextProtos: []string{"h2", "http/1.1"}})
	b.SetBytes(int64(len(hello)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseClientHello(hello); err != nil {
			b.Fatal(err)
		}
	}
}

// scriptedConn is a net.Conn that reads from r and discards writes.
type scriptedConn struct {
	r io.Reader
}

func (c *scriptedConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptedConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptedConn) Close() error                     { return nil }
func (c *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// helloWithExtensions builds a ClientHello carrying exts, each a type
// followed by its data, fragmented into records of at most 16 KiB.
func helloWithExtensions(exts ...[]byte) []byte {
	var ext []byte
	for _, e := range exts {
		ext = append(ext, e[0], e[1], byte((len(e)-2)>>8), byte(len(e)-2))
		ext = append(ext, e[2:]...)
	}
	body := []byte{3, 3}
	body = append(body, make([]byte, 32)...)               // random
	body = append(body, 0)                                 // session id
	body = append(body, 0, 2, 0x13, 0x01)                  // cipher suites
	body = append(body, 1, 0)                              // compression methods
	body = append(body, byte(len(ext)>>8), byte(len(ext))) // extensions
	body = append(body, ext...)
	msg := append([]byte{handshakeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
	return refragment(append([]byte{recordTypeHandshake, 3, 1, 0, 0}, msg...), 16<<10)
}

// emptyExtensions returns n empty extensions of distinct types, skipping
// the ones whose empty form is malformed (server_name, ALPN).
func emptyExtensions(n int) [][]byte {
	var out [][]byte
	for typ := 1; len(out) < n; typ++ {
		if typ == extALPN {
			continue
		}
		out = append(out, []byte{byte(typ >> 8), byte(typ)})
	}
	return out
}

func TestDuplicateExtensions(t *testing.T) {
	sni := append([]byte{0, 0, 0, 17, sniHostName, 0, 14}, "a.example.test"...) // type, list, entry
	many := emptyExtensions(3000)
	tests := []struct {
		name string
		exts [][]byte
		ok   bool
	}{
		{"distinct", append([][]byte{sni}, many...), true},
		{"duplicate server_name", [][]byte{sni, {0, 5}, sni}, false},
		{"duplicate at the end of many", append(append([][]byte{sni}, many...), many[2999]), false},
		{"duplicate highest type", [][]byte{{0xff, 0xff}, sni, {0xff, 0xff}}, false},
		{"highest and lowest types", [][]byte{{0xff, 0xff}, sni, {0xff, 0xfe}, {0, 1}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseClientHello(helloWithExtensions(tt.exts...))
			if tt.ok {
				if err != nil || h.ServerName != "a.example.test" {
					t.Fatalf("got %+v, %v; want a.example.test", h, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformedHello) || !strings.Contains(err.Error(), "duplicate extension") {
				t.Fatalf("err = %v, want a duplicate extension", err)
			}
		})
	}
}

// BenchmarkParseManyExtensions is the worst case for duplicate detection:
// a hello as large as allowed, made of empty extensions of distinct types.
func BenchmarkParseManyExtensions(b *testing.B) {
	for _, size := range []int{16 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			hello := helloWithExtensions(emptyExtensions((size - 200) / 4)...)
			if len(hello) > size {
				b.Fatalf("hello is %d bytes, want at most %d", len(hello), size)
			}
			b.SetBytes(int64(len(hello)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseClientHello(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseOneByteRecords is the worst case for assembly: the largest
// hellos a 16 KiB and a 64 KiB limit allow, one byte per record.
func BenchmarkParseOneByteRecords(b *testing.B) {
	sni := append([]byte{0, 0, 0, 17, sniHostName, 0, 14}, "a.example.test"...)
	for _, size := range []int{16 << 10, 64 << 10} {
		b.Run(strconv.Itoa(size>>10)+"KiB", func(b *testing.B) {
			hello := refragment(helloOfLen(b, sni, size/6), 1)
			b.SetBytes(int64(len(hello)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseClientHello(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
