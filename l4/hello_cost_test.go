package l4

import (
	"crypto/tls"
	"net"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// TestHelloCostIsLinear sends, through a real listener, the ClientHellos
// that once cost seconds of CPU (one write of thousands of records of one
// byte each, each new record reassembling the hello from the first) and
// the largest hello allowed, and checks that each costs the process about
// as much CPU as an ordinary hello: a ratio, not a time, so that a loaded
// machine cannot fail it. Every hello names a server no route has, so each
// is read and parsed in full, then refused (or refused for its records).
func TestHelloCostIsLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 64 KiB hellos")
	}
	sni := append([]byte{0, 0, 0, 17, sniHostName, 0, 14}, "a.example.test"...)
	normal := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	// 2,730 records of one byte: 16,380 bytes, the hello that cost 13.4 s.
	small := refragment(helloOfLen(t, sni, 2730), 1)
	// The largest hello a 64 KiB limit lets through, as one-byte records
	// (the most records) and as full records of the parser's worst case,
	// empty extensions.
	maxRecords := refragment(helloOfLen(t, sni, 64<<10/6), 1)
	maxExtensions := helloWithExtensions(append([][]byte{sni}, emptyExtensions((64<<10-100)/4)...)...)
	for _, h := range [][]byte{small, maxRecords, maxExtensions} {
		if _, err := ParseClientHello(h); err != nil {
			t.Fatalf("test hello of %d bytes: %v", len(h), err)
		}
	}
	if len(small) != 16380 || len(maxRecords) > 64<<10 || len(maxRecords) < 64<<10-6 ||
		len(maxExtensions) > 64<<10 || len(maxExtensions) < 64<<10-16 {
		t.Fatalf("test hellos are %d, %d and %d bytes", len(small), len(maxRecords), len(maxExtensions))
	}

	tests := []struct {
		name   string
		cfg    Config
		hello  []byte
		reason string
	}{
		{"16 KiB in 2730 records, records allowed", Config{MaxHelloRecords: 1 << 20}, small, RejectNoRoute},
		{"16 KiB in 2730 records, default limit", Config{}, small, RejectTooManyRecords},
		{"64 KiB in 10922 records, records allowed", Config{MaxHelloSize: 64 << 10, MaxHelloRecords: 1 << 20}, maxRecords, RejectNoRoute},
		{"64 KiB in 10922 records, default limit", Config{MaxHelloSize: 64 << 10}, maxRecords, RejectTooManyRecords},
		{"64 KiB of extensions in 4 records", Config{MaxHelloSize: 64 << 10}, maxExtensions, RejectNoRoute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Router, _ = NewRouter([]Route{{Name: "b", ServerNames: []string{"b.example.test"},
				Pool: newPool(t, "p", "", lb.HealthCheck{}, "127.0.0.1:1")}}, nil)
			addr, reg := startServer(t, tt.cfg)
			send(t, addr, normal) // warm up the listener's first-use allocations
			// Interleaved, so that whatever else the machine does falls on
			// both alike; the medians drop a garbage collection that lands
			// on a few of them.
			const reps = 7
			var base, cost []time.Duration
			for range reps {
				base = append(base, send(t, addr, normal))
				cost = append(cost, send(t, addr, tt.hello))
			}
			b, c := median(base), median(cost)
			t.Logf("%d-byte hello: %v of CPU; %d-byte ordinary hello: %v (medians of %d)", len(tt.hello), c, len(normal), b, reps)
			// Linear work costs a few times an ordinary hello (up to ten
			// times under the race detector: the hello is up to 40 times
			// larger, while the accept, the goroutine and the sockets cost
			// the same); the quadratic assembly cost 10,000s of times.
			if c > 40*b {
				t.Errorf("the hello cost %v of CPU, %.0f times an ordinary one (%v); want at most 40", c, float64(c)/float64(b), b)
			}
			want := float64(reps)
			if tt.reason == RejectNoRoute {
				want += reps + 1 // the ordinary hellos
			}
			if got := testkit.Sum(t, reg, "iwalb_l4_rejected_total", "reason="+tt.reason); got != want {
				t.Errorf("%s rejects = %v, want %v", tt.reason, got, want)
			}
		})
	}
}

// send writes hello to the listener at addr in one write, waits until the
// listener closes the connection, and returns the CPU the process used
// meanwhile, client and listener alike.
func send(t *testing.T, addr string, hello []byte) time.Duration {
	t.Helper()
	before := processCPU(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || isTimeout(err) {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
	return processCPU(t) - before
}

// processCPU returns the CPU time, user and system, the process has used.
func processCPU(t testing.TB) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// helloOfLen returns a ClientHello in one record (or more, past 16 KiB)
// carrying exts, whose handshake message is msgLen bytes long: a padding
// extension makes up the rest.
func helloOfLen(t testing.TB, ext []byte, msgLen int) []byte {
	t.Helper()
	bare := helloWithExtensions(ext)
	pad := msgLen - (len(bare) - recordHeaderLen) - 4
	if pad < 0 {
		t.Fatalf("a %d-byte message cannot hold the extensions", msgLen)
	}
	h := helloWithExtensions(ext, append([]byte{0, 21}, make([]byte, pad)...))
	if n := 4 + (int(h[6])<<16 | int(h[7])<<8 | int(h[8])); n != msgLen {
		t.Fatalf("made a %d-byte message, want %d", n, msgLen)
	}
	return h
}
