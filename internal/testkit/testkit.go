// Package testkit holds the small helpers that the tests of several
// packages share: a buffer that loggers, child processes and the test use
// at once; a metric family's samples by label; loopback ports for
// processes a test starts later; and the allocation budget of fuzz targets. Certificates are in internal/testpki;
// single series are read with prometheus/testutil.
//
// It is test support only: nothing outside _test.go files should import it.
package testkit

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Buffer is a bytes.Buffer that loggers on server goroutines, a child
// process's output and the test may use at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// JSONLogger returns a logger that writes everything, debug included, to b
// as JSON lines, for Records.
func (b *Buffer) JSONLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Records decodes the JSON lines written so far and returns those whose
// msg is msg; a line that is not JSON fails the test.
func (b *Buffer) Records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line is not JSON: %v: %q", err, line)
		}
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

// Samples returns every sample of the metric family name in g as
// "label=value,..." (labels sorted by name) → value: a counter's or gauge's
// value, a histogram's sample count.
func Samples(t testing.TB, g prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	each(t, g, name, func(labels []string, v float64) { out[strings.Join(labels, ",")] = v })
	return out
}

// Sum adds up the samples of the metric family name in g whose labels
// include every one of want ("label=value"); with no want, all of them.
func Sum(t testing.TB, g prometheus.Gatherer, name string, want ...string) float64 {
	t.Helper()
	var sum float64
	each(t, g, name, func(labels []string, v float64) {
		if !slices.ContainsFunc(want, func(w string) bool { return !slices.Contains(labels, w) }) {
			sum += v
		}
	})
	return sum
}

// each gathers g and calls fn with the sorted "label=value" pairs and the
// value of every sample of the family name.
func each(t testing.TB, g prometheus.Gatherer, name string, fn func(labels []string, v float64)) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Histogram != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			fn(labels, v)
		}
	}
}

// FreePort returns a loopback address that was free a moment ago, for a
// process the test starts later. It is taken below the kernel's ephemeral
// range (32768 and up), where the ":0" listeners of tests running in
// parallel cannot take it first, and never twice in one test binary.
func FreePort(t testing.TB) string {
	t.Helper()
	ports.mu.Lock()
	defer ports.mu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		ports.given[p] = true
		return ln.Addr().String()
	}
	t.Fatal("no free port between 20000 and 32000")
	return ""
}

// ports are those FreePort gave in this test binary: the one state that
// must be process-wide, as every test of the binary draws from one range.
var ports = struct {
	mu    sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// Closer is a TCP listener on loopback that accepts connections and closes
// them at once: a backend for TCP health checks that a test stops and starts
// again on the same port.
type Closer struct {
	mu   sync.Mutex
	addr string
	ln   net.Listener
}

// StartCloser starts a Closer on a port of the kernel's choosing; it stops
// when the test ends.
func StartCloser(t testing.TB) *Closer {
	t.Helper()
	c := &Closer{addr: "127.0.0.1:0"}
	c.Start(t)
	t.Cleanup(c.Stop)
	return c
}

// Addr is the listener's address, the same across a Stop and a Start.
func (c *Closer) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// Start listens again on the Closer's address. It fails the test when the
// address cannot be taken.
func (c *Closer) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		t.Fatalf("testkit.Closer %s: already listening", c.addr)
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		t.Fatalf("testkit.Closer: %v", err)
	}
	c.ln, c.addr = ln, ln.Addr().String()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
}

// Stop closes the listener; connections to its address are refused until
// the next Start.
func (c *Closer) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
}

// TLSSession is a TLS client that keeps its sessions, to see whether a
// server resumes them. It speaks TLS 1.2, where the ticket is part of the
// handshake (TLS 1.3 sends it afterwards, to a client that reads).
type TLSSession struct {
	addr string
	c    *tls.Config
}

// NewTLSSession returns a client of addr with c's roots and server name.
func NewTLSSession(addr string, c *tls.Config) *TLSSession {
	c = c.Clone()
	c.MaxVersion = tls.VersionTLS12
	c.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	return &TLSSession{addr: addr, c: c}
}

// Dial makes one connection, closes it, and says whether it resumed a
// session of the client's earlier connections.
func (s *TLSSession) Dial(t testing.TB) (resumed bool) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, s.c)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", s.addr, err)
	}
	defer c.Close()
	return c.ConnectionState().DidResume
}

// ServeTCP serves each connection to a loopback listener with serve, in a
// goroutine of its own, until the test ends; then it closes the listener
// and waits for every serve to return (serve must return once its
// connection is closed or its deadline passes). It returns the address.
func ServeTCP(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}
