package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// TestParkedConnections: connections that go quiet hold no goroutine of
// the balancer's, wake on bytes from either side as often as they come,
// pass a half-close on, and end at shutdown with their log lines.
func TestParkedConnections(t *testing.T) {
	if !parkable {
		t.Skip("relays park on Linux only")
	}
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, echoBackend(t))})
	var logs testkit.Buffer
	addr, reg, stop := runServer(t, Config{Router: router, parkAfter: 20 * time.Millisecond}, logs.JSONLogger())
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})

	const n = 100
	base := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		conns[i] = c
	}
	// echo sends msg on every connection at once and reads it back.
	echo := func(msg []byte) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, c := range conns {
			wg.Go(func() {
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("echo of %d bytes: %q, %v", len(msg), got[:min(len(got), 16)], err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// allParked waits until every direction of every connection parked,
	// and checks that the relays then hold no goroutine: what is left is
	// the echo backend's one a connection, and the parker's.
	allParked := func(round string, conns int) {
		t.Helper()
		waitFor(t, round+": every direction parked", 10*time.Second, func() bool {
			return testkit.Sum(t, reg, "iwalb_l4_relay_directions_parked") == float64(2*conns)
		})
		waitFor(t, round+": the relays' goroutines gone", 5*time.Second, func() bool {
			return runtime.NumGoroutine() <= base+conns+2
		})
	}

	echo(append(clone(hello), "first"...))
	allParked("after the hello", n)
	for round := range 3 {
		// A message of 1 byte, and one that takes a splice burst.
		echo([]byte{byte('a' + round)})
		echo(bytes.Repeat([]byte{byte('A' + round)}, 200<<10))
		allParked(fmt.Sprintf("round %d", round), n)
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_connections_active"); got != n {
		t.Fatalf("%v connections active, want all %d", got, n)
	}

	// Half of them half-close: the echo backend sees the end, closes, and
	// the client reads the end in turn.
	for _, c := range conns[:n/2] {
		c.(*net.TCPConn).CloseWrite()
	}
	for _, c := range conns[:n/2] {
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("after half-close: %q, %v; want the end of stream", b, err)
		}
	}
	waitFor(t, "the half-closed connections ended", 5*time.Second, func() bool {
		return testkit.Sum(t, reg, "iwalb_l4_connections_active") == n/2
	})

	// Shutdown ends the others, parked as they are.
	allParked("before shutdown", n/2)
	stop()
	for _, c := range conns[n/2:] {
		if _, err := io.ReadAll(c); err != nil && !isReset(err) {
			t.Fatalf("after shutdown: %v; want the end of stream or a reset", err)
		}
	}
	ends := map[string]int{}
	for _, l := range logs.Records(t, "connection relayed") {
		end, _ := l["end"].(string)
		ends[end]++
	}
	if want := map[string]int{EndClientClosed: n / 2, EndShutdown: n / 2}; fmt.Sprint(ends) != fmt.Sprint(want) {
		t.Fatalf("log lines by end: %v, want %v", ends, want)
	}
	if got := testkit.Sum(t, reg, "iwalb_l4_relay_directions_parked"); got != 0 {
		t.Fatalf("%v directions still counted as parked", got)
	}
	// With nothing parked, the parker stops too (after 10 times parkAfter).
	waitFor(t, "the parker's goroutine to end", 5*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("l4.(*parker).wait"))
	})
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
