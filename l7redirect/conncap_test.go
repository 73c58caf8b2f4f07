package l7redirect

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/internal/testpki"
	"github.com/iwalb/iwalb/lb"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.x: each is another client to the limits).
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor waits, generously for a loaded machine, until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flood opens n connections to addr from src and sends nothing.
func flood(t *testing.T, src, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			// Refused so fast that the reset came before the dial
			// returned: it counts as reset.
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("dial %s from %s: %v", addr, src, err)
			}
			c = resetConn{}
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	return conns
}

// resetConn stands for a connection reset while it was being dialed.
type resetConn struct{ net.Conn }

func (resetConn) Close() error { return nil }

// resets counts the connections that the server reset without sending a
// byte; the others must still be open (silent, waiting for the client).
func resets(t *testing.T, conns []net.Conn) int {
	t.Helper()
	errs := make(chan error, len(conns))
	for _, c := range conns {
		if _, ok := c.(resetConn); ok {
			errs <- syscall.ECONNRESET
			continue
		}
		go func() {
			// Each its own deadline, set just before its read: a passed
			// deadline fails a read without looking for the reset.
			c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(make([]byte, 1))
			errs <- err
		}()
	}
	n := 0
	for range conns {
		err := <-errs
		var ne net.Error
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			n++
		case errors.As(err, &ne) && ne.Timeout():
			// held open
		default:
			t.Fatalf("a flood connection read %v, want a reset or nothing", err)
		}
	}
	return n
}

// request sends one GET over c (plain or TLS) and returns the status.
func request(t *testing.T, c net.Conn, connClose bool) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /app HTTP/1.1\r\nHost: sso.example.test\r\n"
	if connClose {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatalf("sending a request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestConnectionFlood floods each of a front door's listeners: one source
// gets MaxConnsPerSource connections and the rest are reset unread and
// counted, while a client from another address is served; more sources
// fill MaxConns, after which everyone is reset until connections close.
func TestConnectionFlood(t *testing.T) {
	node := startNode(t, "auth1")
	pool := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{node})
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: pool}}}, Options{Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewRedirect(RedirectConfig{Name: "sso", Names: []string{"sso.example.test"}}, Options{Logger: quietLogger(), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "iwalb l7redirect test CA")
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "sso.example.test").TLS()}}
	const maxConns, perSource = 10, 4
	var logBuf testkit.Buffer
	srv := &Server{Name: "sso", Logger: slog.New(slog.NewTextHandler(&logBuf, nil)), MaxConns: maxConns, MaxConnsPerSource: perSource, Metrics: m,
		// The flood's silent connections stay open for the whole test,
		// however slow the machine.
		ReadHeaderTimeout: time.Minute}
	httpsAddr := serveWith(t, srv, h, tlsConfig)
	httpAddr := serveWith(t, srv, plain, nil)

	for _, l := range []struct {
		name, addr string
		ok         int
		wrap       func(net.Conn) net.Conn
	}{
		{"https", httpsAddr, 302, func(c net.Conn) net.Conn {
			return tls.Client(c, &tls.Config{RootCAs: ca.Pool(), ServerName: "sso.example.test"})
		}},
		{"http", httpAddr, 301, func(c net.Conn) net.Conn { return c }},
	} {
		t.Run(l.name, func(t *testing.T) {
			metric := func(name, labels string) float64 {
				return testkit.Samples(t, reg, "iwalb_l7redirect_"+name)["frontdoor=sso,listener="+l.name+labels]
			}
			open := func() float64 { return metric("connections_open", "") }
			refused := func(reason string) float64 { return metric("connections_refused_total", ",reason="+reason) }
			client := func(src string) int {
				return request(t, l.wrap(dialFrom(t, src, l.addr)), true)
			}

			// One source floods: perSource connections are held, the
			// rest reset unread and counted.
			conns := flood(t, "127.0.0.2", l.addr, 3*perSource)
			waitFor(t, fmt.Sprintf("%d refused over the source limit", 2*perSource), func() bool {
				return refused("over_source_limit") == 2*perSource
			})
			if got := resets(t, conns); got != 2*perSource {
				t.Errorf("%d of the source's %d connections were reset, want %d", got, len(conns), 2*perSource)
			}
			if open() != perSource {
				t.Errorf("connections_open = %v, want %d", open(), perSource)
			}
			// During the flood, another address is served.
			if got := client("127.0.0.3"); got != l.ok {
				t.Fatalf("a client from another address during the flood: status %d, want %d", got, l.ok)
			}

			// Two more sources fill the listener: the last two
			// connections, and then anyone, are over the limit.
			waitFor(t, "the client's connection closed", func() bool { return open() == perSource })
			for _, src := range []string{"127.0.0.4", "127.0.0.5"} {
				conns = append(conns, flood(t, src, l.addr, perSource)...)
			}
			waitFor(t, "2 refused over the limit", func() bool { return refused("over_limit") == 2 })
			if open() != maxConns {
				t.Errorf("connections_open = %v, want max_conns %d", open(), maxConns)
			}
			if resets(t, flood(t, "127.0.0.6", l.addr, 1)) != 1 {
				t.Fatal("a connection over max_conns was not reset")
			}
			// The reset goes out before the count, so the count may lag.
			waitFor(t, "3 refused over the limit", func() bool { return refused("over_limit") == 3 })

			// Once the flood closes, everyone is served again.
			for _, c := range conns {
				c.Close()
			}
			waitFor(t, "the flood's connections closed", func() bool { return open() == 0 })
			if got := client("127.0.0.6"); got != l.ok {
				t.Errorf("after the flood: status %d, want %d", got, l.ok)
			}

			// Eleven refusals make a warning or two, not eleven lines.
			var warnings []string
			for _, line := range strings.Split(logBuf.String(), "\n") {
				if strings.Contains(line, "level=WARN") && strings.Contains(line, "listener="+l.name+" ") {
					warnings = append(warnings, line)
				}
			}
			if len(warnings) == 0 || len(warnings) > 2 || !strings.Contains(warnings[0], "connections refused") {
				t.Errorf("%d warnings about refused connections, want 1 or 2:\n%s", len(warnings), strings.Join(warnings, "\n"))
			}
		})
	}
}

// TestHandedConnectionsNotCounted: the connections L4 hands over are
// capped by L4, so the front door's caps do not count them again.
func TestHandedConnectionsNotCounted(t *testing.T) {
	node := startNode(t, "auth1")
	pool := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{node})
	reg := prometheus.NewRegistry()
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: pool}}}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ca := testpki.NewCA(t, "iwalb l7redirect test CA")
	cl := newHandedListener()
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	srv := &Server{Name: "sso", Logger: quietLogger(), MaxConns: 1, MaxConnsPerSource: 1, Metrics: m}
	go func() {
		served <- srv.ServeHanded(ctx, cl, h, &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "sso.example.test").TLS()}})
	}()
	t.Cleanup(func() { cancel(); <-served })
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go cl.hand(c)
		}
	}()
	// Three connections from one address, all held open at once.
	for i := range 3 {
		c := tls.Client(dialFrom(t, "127.0.0.2", tcp.Addr().String()), &tls.Config{RootCAs: ca.Pool(), ServerName: "sso.example.test"})
		if got := request(t, c, false); got != 302 {
			t.Fatalf("handed connection %d: status %d, want 302", i+1, got)
		}
	}
	for name, v := range testkit.Samples(t, reg, "iwalb_l7redirect_connections_refused_total") {
		if v != 0 {
			t.Errorf("connections_refused_total{%s} = %v for handed connections", name, v)
		}
	}
	if got := testkit.Samples(t, reg, "iwalb_l7redirect_connections_open"); len(got) != 0 {
		t.Errorf("connections_open %v for handed connections, want no series", got)
	}
}

// TestConnectionCapsBehindProxy: behind a trusted balancer that sends
// PROXY headers, the balancer's address is exempt from the per-source cap
// (it carries many clients), other peers are not, and a balancer
// connection whose header has not come yet holds up no one else.
func TestConnectionCapsBehindProxy(t *testing.T) {
	var logBuf testkit.Buffer
	balancer := netip.MustParsePrefix("127.0.0.1/32")
	plain, err := NewRedirect(RedirectConfig{Name: "sso", Names: []string{"sso.example.test"}},
		Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	const perSource = 2
	srv := &Server{
		Name: "sso", Logger: quietLogger(), MaxConnsPerSource: perSource, Metrics: m,
		ExemptSources: []netip.Prefix{balancer},
		WrapListener: func(ln net.Listener) net.Listener {
			policy := func(o proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) {
				if ap, err := netip.ParseAddrPort(o.Upstream.String()); err == nil && balancer.Contains(ap.Addr()) {
					return proxyproto.USE, nil
				}
				return proxyproto.REJECT, nil
			}
			// Far longer than the client's patience below: a header read
			// in the accept loop would show.
			return &proxyproto.Listener{Listener: ln, ConnPolicy: policy, ReadHeaderTimeout: 30 * time.Second}
		},
	}
	addr := serveWith(t, srv, plain, nil)

	// The balancer's first connection sends nothing yet.
	dialFrom(t, "127.0.0.1", addr)
	for i := range 3 * perSource {
		c := dialFrom(t, "127.0.0.1", addr)
		client := &net.TCPAddr{IP: net.IPv4(192, 0, 2, byte(10+i)), Port: 40000}
		if _, err := proxyproto.HeaderProxyFromAddrs(2, client, c.RemoteAddr()).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if got := request(t, c, false); got != 301 {
			t.Fatalf("connection %d through the balancer: status %d, want 301", i+1, got)
		}
	}
	for i := range 3 * perSource {
		if want := fmt.Sprintf("client=192.0.2.%d", 10+i); !strings.Contains(logBuf.String(), want) {
			t.Errorf("the access log lacks %s (the PROXY header's client):\n%s", want, logBuf.String())
		}
	}

	other := flood(t, "127.0.0.2", addr, perSource+1)
	refused := func() float64 {
		return testkit.Samples(t, reg, "iwalb_l7redirect_connections_refused_total")["frontdoor=sso,listener=http,reason=over_source_limit"]
	}
	waitFor(t, "one connection from the untrusted peer refused", func() bool { return refused() == 1 })
	if got := resets(t, other); got != 1 {
		t.Errorf("%d of the untrusted peer's %d connections reset, want 1", got, len(other))
	}
}

// TestIdleKeepAliveClosed: a keep-alive connection that goes quiet after
// its requests is closed by the server once IdleTimeout has passed.
func TestIdleKeepAliveClosed(t *testing.T) {
	plain, err := NewHTTPSRedirect([]string{"sso.example.test"}, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	const idle = time.Second
	addr := serveWith(t, &Server{Logger: quietLogger(), IdleTimeout: idle}, plain, nil)
	c := dialFrom(t, "127.0.0.1", addr)
	br := bufio.NewReader(c)
	var start time.Time
	for i := range 2 {
		// The idle time starts after the last answer, so after this.
		start = time.Now()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: sso.example.test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on the keep-alive connection: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.Close {
			t.Fatalf("request %d: the server closes a keep-alive connection right away", i+1)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("reading the idle connection: %d bytes, %v; want EOF once it is idle %v", n, err, idle)
	}
	if waited := time.Since(start); waited < idle-50*time.Millisecond {
		t.Errorf("closed after %v of idleness, before the idle timeout %v", waited, idle)
	}
}

// TestSetLimits lowers and raises the caps of a listener being served: the
// connections open keep their slots and are served, the ones accepted next
// meet the new caps, and a listener served later starts under them.
func TestSetLimits(t *testing.T) {
	plain, err := NewHTTPSRedirect([]string{"sso.example.test"}, 0, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Name: "sso", Logger: quietLogger(), Metrics: m, MaxConns: 2, MaxConnsPerSource: 2,
		// Silent connections stay open however slow the machine.
		ReadHeaderTimeout: time.Minute}
	addr := serveWith(t, srv, plain, nil)
	metric := func(name, labels string) float64 {
		return testkit.Samples(t, reg, "iwalb_l7redirect_"+name)["frontdoor=sso,listener=http"+labels]
	}
	open := func() float64 { return metric("connections_open", "") }
	refused := func(reason string) float64 { return metric("connections_refused_total", ",reason="+reason) }

	first := flood(t, "127.0.0.2", addr, 3)
	waitFor(t, "one connection over max_conns 2 refused", func() bool { return refused("over_limit") == 1 })
	if got := resets(t, first); got != 1 {
		t.Fatalf("%d of 3 connections reset under max_conns 2, want 1", got)
	}

	// Raised: two more are held, the one after them refused.
	srv.SetLimits(4, 4, nil)
	more := flood(t, "127.0.0.2", addr, 2)
	waitFor(t, "4 connections open under max_conns 4", func() bool { return open() == 4 })
	if got := resets(t, more); got != 0 {
		t.Fatalf("%d connections reset under the raised max_conns 4, want none", got)
	}
	if got := resets(t, flood(t, "127.0.0.3", addr, 1)); got != 1 {
		t.Fatalf("the fifth connection under max_conns 4: %d reset, want 1", got)
	}
	// The reset goes out before the count, so the count may lag.
	waitFor(t, "2 refused over the limit", func() bool { return refused("over_limit") == 2 })

	// Lowered below what is open: the open ones are still served, no new
	// one is let in until enough have closed.
	srv.SetLimits(1, 1, nil)
	if got := request(t, more[0], false); got != 301 {
		t.Fatalf("an open connection after the cap was lowered: status %d, want 301", got)
	}
	if got := resets(t, flood(t, "127.0.0.3", addr, 1)); got != 1 {
		t.Fatal("a new connection was let in over the lowered max_conns 1")
	}
	for _, c := range append(first, more...) {
		c.Close()
	}
	waitFor(t, "every connection closed", func() bool { return open() == 0 })
	kept := dialFrom(t, "127.0.0.3", addr)
	if got := request(t, kept, false); got != 301 {
		t.Fatalf("under max_conns 1 with none open: status %d, want 301", got)
	}
	if got := resets(t, flood(t, "127.0.0.4", addr, 1)); got != 1 {
		t.Fatal("a second connection was let in under max_conns 1")
	}

	// The per-source cap and its exemptions change too.
	srv.SetLimits(10, 1, nil)
	if got := resets(t, flood(t, "127.0.0.3", addr, 1)); got != 1 {
		t.Fatal("a second connection from one source was let in under max_conns_per_source 1")
	}
	waitFor(t, "1 refused over the source limit", func() bool { return refused("over_source_limit") == 1 })
	srv.SetLimits(10, 1, []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")})
	exempt := flood(t, "127.0.0.3", addr, 2)
	waitFor(t, "the exempt source's connections open", func() bool { return open() == 3 })
	if got := resets(t, exempt); got != 0 || refused("over_source_limit") != 1 {
		t.Errorf("an exempt source: %d connections reset (over_source_limit %v, was 1), want none", got, refused("over_source_limit"))
	}

	// A listener served from now on starts under the current caps.
	addr2 := serveWith(t, srv, plain, nil)
	if got := resets(t, flood(t, "127.0.0.5", addr2, 2)); got != 1 {
		t.Errorf("a listener served after SetLimits: %d of 2 connections from one source reset, want 1 (max_conns_per_source 1)", got)
	}
}
