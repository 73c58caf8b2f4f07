package testkit

import (
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestBufferConcurrentLoggers: lines logged from many goroutines all
// arrive whole, and Records finds them by message.
func TestBufferConcurrentLoggers(t *testing.T) {
	var b Buffer
	log := b.JSONLogger()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			log.Debug("hello", "i", i)
			log.Info("other")
		})
	}
	wg.Wait()
	hello := b.Records(t, "hello")
	seen := map[float64]bool{}
	for _, r := range hello {
		seen[r["i"].(float64)] = true
	}
	if len(hello) != 20 || len(seen) != 20 || len(b.Records(t, "other")) != 20 {
		t.Errorf("got %d hello records (%d distinct), want 20 of each:\n%s", len(hello), len(seen), b.String())
	}
}

func TestSamplesAndSum(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total", Help: "c"}, []string{"route", "reason"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g", Help: "g"})
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "h_seconds", Help: "h"}, []string{"status"})
	reg.MustRegister(c, g, h)
	c.WithLabelValues("a", "x").Add(1)
	c.WithLabelValues("a", "y").Add(2)
	c.WithLabelValues("b", "x").Add(4)
	g.Set(7)
	h.WithLabelValues("302").Observe(0.1)
	h.WithLabelValues("302").Observe(0.2)

	want := map[string]float64{"reason=x,route=a": 1, "reason=y,route=a": 2, "reason=x,route=b": 4}
	if got := Samples(t, reg, "c_total"); !maps.Equal(got, want) {
		t.Errorf("Samples(c_total) = %v, want %v", got, want)
	}
	if got := Samples(t, reg, "h_seconds"); got["status=302"] != 2 {
		t.Errorf("Samples(h_seconds) = %v, want 2 observations for status=302", got)
	}
	if got := Samples(t, reg, "absent"); len(got) != 0 {
		t.Errorf("Samples(absent) = %v, want none", got)
	}
	for _, tc := range []struct {
		name string
		want []string
		sum  float64
	}{
		{"c_total", nil, 7},
		{"c_total", []string{"route=a"}, 3},
		{"c_total", []string{"reason=x"}, 5},
		{"c_total", []string{"route=a", "reason=x"}, 1},
		{"c_total", []string{"route=c"}, 0},
		{"g", nil, 7},
		{"absent", nil, 0},
	} {
		if got := Sum(t, reg, tc.name, tc.want...); got != tc.sum {
			t.Errorf("Sum(%s, %v) = %v, want %v", tc.name, tc.want, got, tc.sum)
		}
	}
}

// TestFreePort: each address is on loopback, can be listened on, and is
// not given twice.
func TestFreePort(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr := FreePort(t)
		if seen[addr] {
			t.Fatalf("%s given twice", addr)
		}
		seen[addr] = true
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		ln.Close()
	}
}

func TestCloserStopsAndStartsOnTheSamePort(t *testing.T) {
	c := StartCloser(t)
	addr := c.Addr()
	dial := func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := dial(); err != nil {
		t.Fatalf("dial a started Closer: %v", err)
	}
	c.Stop()
	if err := dial(); err == nil {
		t.Fatal("dial a stopped Closer succeeded")
	}
	c.Start(t)
	if c.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", c.Addr(), addr)
	}
	if err := dial(); err != nil {
		t.Fatalf("dial a restarted Closer: %v", err)
	}
}
