package l4

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
)

// BenchmarkIdleConns holds idleConns relayed connections open and idle
// through an l4.Server, and reports the Go memory each one holds: its
// goroutines' stacks and its heap, after a GC. The client and backend
// sockets are in the same process but hold no goroutine and no buffer;
// their share is the two netFDs. "waiting": the relays wait in their
// goroutines (as for their first second of quiet); "parked": they have
// parked. bench/proxies/run measures the same thing as RSS, with real TLS
// sessions, against HAProxy and nginx.
func BenchmarkIdleConns(b *testing.B) {
	b.Run("waiting", func(b *testing.B) { benchIdleConns(b, -1) })
	if parkable {
		b.Run("parked", func(b *testing.B) { benchIdleConns(b, 20*time.Millisecond) })
	}
}

func benchIdleConns(b *testing.B, parkAfter time.Duration) {
	const idleConns = 2000
	hello := captureHello(b, &tls.Config{ServerName: "a.example.test"})
	var mu sync.Mutex
	var held []net.Conn
	backend := startRelayBackend(b, func(c net.Conn) {
		// The hello, then nothing: the relay sits idle both ways.
		if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
			c.Close()
			return
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
	})
	addr, reg := relayServer(b, backend, parkAfter)
	b.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})

	var stack, heap, goroutines float64
	for b.Loop() {
		before, g0 := memNow(), runtime.NumGoroutine()
		clients := make([]net.Conn, 0, idleConns)
		for range idleConns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Write(hello); err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(held)
			mu.Unlock()
			if n >= idleConns {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d connections reached the backend", n, idleConns)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // the relays block in their reads
		if parkAfter > 0 {
			waitFor(b, "every relay parked", 30*time.Second, func() bool {
				return testkit.Sum(b, reg, "iwalb_l4_relay_directions_parked") == 2*idleConns
			})
		}
		after := memNow()
		goroutines = float64(runtime.NumGoroutine()-g0) / idleConns
		// Signed: stacks freed by goroutines that parked may leave less
		// than before.
		stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / idleConns
		heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / idleConns
		b.StopTimer()
		for _, c := range clients {
			c.Close()
		}
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		held = held[:0]
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		b.StartTimer()
	}
	b.ReportMetric(stack, "stack-B/conn")
	b.ReportMetric(heap, "heap-B/conn")
	b.ReportMetric(stack+heap, "B/conn")
	b.ReportMetric(goroutines, "goroutines/conn")
}

func memNow() runtime.MemStats {
	for range 6 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// BenchmarkParkedRoundTrip is one small message each way over a relayed
// connection that has been quiet for 10ms before each: "parked" (after
// 1ms of quiet) wakes both directions from the parker every time,
// "waiting" (never parking) has the same pauses. cpu-µs/op is the
// process's CPU time (client and backend included) over the whole loop,
// pauses and parking included, per round trip: the difference is what
// parking and waking cost.
func BenchmarkParkedRoundTrip(b *testing.B) {
	if !parkable {
		b.Skip("relays park on Linux only")
	}
	const parkAfter, pause = time.Millisecond, 10 * time.Millisecond
	hello := captureHello(b, &tls.Config{ServerName: "a.example.test"})
	backend := startRelayBackend(b, echoMessages(len(hello), 64))
	for _, park := range []time.Duration{-1, parkAfter} {
		name := "waiting"
		if park > 0 {
			name = "parked"
		}
		b.Run(name, func(b *testing.B) {
			addr, reg := relayServer(b, backend, park)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(hello); err != nil {
				b.Fatal(err)
			}
			msg, buf := make([]byte, 64), make([]byte, 64)
			c0 := processCPU(b)
			for b.Loop() {
				time.Sleep(pause)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((processCPU(b)-c0).Microseconds())/float64(b.N), "cpu-µs/op")
			time.Sleep(pause)
			if parked := testkit.Sum(b, reg, "iwalb_l4_relay_directions_parked"); park > 0 && parked != 2 {
				b.Fatalf("%v directions parked after a pause, want 2", parked)
			}
		})
	}
}
