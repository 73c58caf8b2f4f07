package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLimiterCounts(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	lim := New(Limits{MaxConns: 3, MaxPerSource: 2})

	r1, _, ok1 := lim.Acquire(a)
	r2, _, ok2 := lim.Acquire(a)
	if !ok1 || !ok2 {
		t.Fatal("the first two connections from one source were refused")
	}
	if _, reason, ok := lim.Acquire(a); ok || reason != OverSourceLimit {
		t.Fatalf("third from one source: ok=%v reason=%q, want over_source_limit", ok, reason)
	}
	rb, _, ok := lim.Acquire(b)
	if !ok {
		t.Fatal("another source was refused while the listener had room")
	}
	if _, reason, ok := lim.Acquire(netip.MustParseAddr("192.0.2.3")); ok || reason != OverLimit {
		t.Fatalf("fourth connection: ok=%v reason=%q, want over_limit", ok, reason)
	}
	if lim.Open() != 3 || lim.Sources() != 2 {
		t.Fatalf("open=%d sources=%d, want 3 and 2", lim.Open(), lim.Sources())
	}

	r1()
	r1() // a second release must not free a second slot
	if lim.Open() != 2 {
		t.Fatalf("open after one release (twice) = %d, want 2", lim.Open())
	}
	r3, _, ok := lim.Acquire(a)
	if !ok {
		t.Fatal("a source under its limit again was refused")
	}
	for _, r := range []func(){r2, r3, rb} {
		r()
	}
	if lim.Open() != 0 || lim.Sources() != 0 {
		t.Fatalf("after every release: open=%d sources=%d, want 0 and 0 (no entry left per source)", lim.Open(), lim.Sources())
	}
}

func TestLimiterSourceKeys(t *testing.T) {
	lim := New(Limits{MaxPerSource: 1, Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	if _, _, ok := lim.Acquire(netip.MustParseAddr("2001:db8:1:2::1")); !ok {
		t.Fatal("first IPv6 connection refused")
	}
	// Another address of the same /64 is the same host.
	if _, _, ok := lim.Acquire(netip.MustParseAddr("2001:db8:1:2:ffff::9")); ok {
		t.Fatal("a second address in the same IPv6 /64 was not counted with the first")
	}
	if _, _, ok := lim.Acquire(netip.MustParseAddr("2001:db8:1:3::1")); !ok {
		t.Fatal("another /64 was refused")
	}
	// An IPv4-mapped address is the IPv4 address.
	if _, _, ok := lim.Acquire(netip.MustParseAddr("192.0.2.7")); !ok {
		t.Fatal("first IPv4 connection refused")
	}
	if _, _, ok := lim.Acquire(netip.MustParseAddr("::ffff:192.0.2.7")); ok {
		t.Fatal("the IPv4-mapped form of a source was counted apart from it")
	}
	// Exempt sources are bounded only by MaxConns (none here).
	for i := range 10 {
		if _, _, ok := lim.Acquire(netip.MustParseAddr("10.1.2.3")); !ok {
			t.Fatalf("exempt source refused at its connection %d", i+1)
		}
	}
	// A peer that is not an IP address is counted only in the total.
	if _, _, ok := lim.Acquire(netip.Addr{}); !ok {
		t.Fatal("a non-IP peer was refused with no total limit")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	lim := New(Limits{MaxConns: 50, MaxPerSource: 5})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			src := netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 20)})
			for range 100 {
				if release, _, ok := lim.Acquire(src); ok {
					release()
				}
			}
		})
	}
	wg.Wait()
	if lim.Open() != 0 || lim.Sources() != 0 {
		t.Fatalf("open=%d sources=%d after all released", lim.Open(), lim.Sources())
	}
}

// TestListenerResetsOverLimit opens real TCP connections: those over the
// cap are reset before the server sees them, and a closed connection frees
// its slot.
func TestListenerResetsOverLimit(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	refused := map[Reason]int{}
	ln := NewListener(tcp, New(Limits{MaxConns: 4, MaxPerSource: 3}), func(r Reason, _ net.Addr) {
		mu.Lock()
		refused[r]++
		mu.Unlock()
	})
	defer ln.Close()
	served := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(served)
				return
			}
			served <- c
		}
	}()
	dialErr := func(local string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", tcp.Addr().String())
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	dial := func(local string) net.Conn {
		t.Helper()
		c, err := dialErr(local)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// refusedByServer reports whether the server reset a connection from
	// local without serving it: the reset may already end the dial.
	refusedByServer := func(local string) bool {
		c, err := dialErr(local)
		if err != nil {
			return errors.Is(err, syscall.ECONNRESET)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}

	var kept []net.Conn
	for range 3 {
		dial("127.0.0.1")
		kept = append(kept, <-served)
	}
	if !refusedByServer("127.0.0.1") {
		t.Fatal("a fourth connection from one address was not refused (per-source cap 3)")
	}
	dial("127.0.0.2")
	kept = append(kept, <-served)
	if !refusedByServer("127.0.0.3") {
		t.Fatal("a fifth connection was not refused (cap 4)")
	}
	// The client may see the reset before the accept loop has reported it.
	counted := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return refused[OverSourceLimit], refused[OverLimit]
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if src, all := counted(); src == 1 && all == 1 {
			break
		}
	}
	if src, all := counted(); src != 1 || all != 1 {
		t.Fatalf("refusals counted: %d over the source limit, %d over the limit; want one of each", src, all)
	}

	// Closing a served connection frees its slot for a new client.
	kept[0].Close()
	c := dial("127.0.0.3")
	got := <-served
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	got.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(got, buf); err != nil || buf[0] != 'x' {
		t.Fatalf("the connection admitted after a close does not carry data: %v", err)
	}
	if _, ok := got.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn); !ok {
		t.Fatal("NetConn does not give the TCP connection")
	}
}

// TestSetLimits: new limits apply to the next connections; the open ones
// keep their slots and free them as before.
func TestSetLimits(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.1")
	lim := New(Limits{MaxConns: 2, MaxPerSource: 2})
	r1, _, _ := lim.Acquire(a)
	r2, _, _ := lim.Acquire(a)
	if _, reason, ok := lim.Acquire(netip.MustParseAddr("192.0.2.2")); ok || reason != OverLimit {
		t.Fatalf("a third connection under MaxConns 2: ok=%v %q", ok, reason)
	}
	lim.SetLimits(Limits{MaxConns: 4, MaxPerSource: 3})
	r3, _, ok := lim.Acquire(a)
	if !ok {
		t.Fatal("the raised limits did not admit a third connection from one source")
	}
	if _, reason, ok := lim.Acquire(a); ok || reason != OverSourceLimit {
		t.Fatalf("a fourth connection from one source under the new per-source limit 3: ok=%v %q", ok, reason)
	}
	lim.SetLimits(Limits{MaxConns: 1})
	if _, reason, ok := lim.Acquire(netip.MustParseAddr("192.0.2.3")); ok || reason != OverLimit {
		t.Fatalf("a connection over a lowered MaxConns: ok=%v %q", ok, reason)
	}
	for _, r := range []func(){r1, r2, r3} {
		r()
	}
	if lim.Open() != 0 || lim.Sources() != 0 {
		t.Fatalf("open = %d, sources = %d after every release", lim.Open(), lim.Sources())
	}
}
