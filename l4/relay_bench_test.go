package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/lb"
)

// The relay benchmarks below run each case twice: "direct" from the client
// to the backend, and "l4" through an l4.Server on loopback. The client and
// the stand-in backend are in the same process, so ns/op and allocs/op
// include their work too: the balancer's cost is l4 minus direct. They
// carry a captured ClientHello and then plain bytes, not a real TLS
// session, so that the crypto of the two ends does not hide the relay's
// cost (bench/proxies/run measures whole TLS connections).

// relayReply is the backend's answer in BenchmarkRelayConn: about a small
// HTTP response.
var relayReply = bytes.Repeat([]byte{'r'}, 200)

// BenchmarkRelayConn is one short connection end to end: dial, send a
// ClientHello and a small request, read the backend's small answer, and
// read EOF once the backend closes. Through l4 that is accept, peek and
// parse the hello, route, pick, dial the backend, relay both ways, and the
// closes.
func BenchmarkRelayConn(b *testing.B) {
	hello := captureHello(b, &tls.Config{ServerName: "a.example.test"})
	req := append(append([]byte(nil), hello...), bytes.Repeat([]byte{'q'}, 100)...)
	backend := startRelayBackend(b, func(c net.Conn) {
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, len(req))); err != nil {
			return
		}
		c.Write(relayReply)
	})
	for _, target := range relayTargets(b, backend) {
		b.Run(target.name, func(b *testing.B) {
			buf := make([]byte, 2*len(relayReply))
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n, err := io.ReadAtLeast(c, buf, len(relayReply))
				if err != nil || n != len(relayReply) {
					b.Fatalf("read %d bytes of the answer, want %d: %v", n, len(relayReply), err)
				}
				// The backend closes after its answer; so must the relay.
				if n, err := c.Read(buf); n != 0 || !errors.Is(err, io.EOF) {
					b.Fatalf("after the answer: %d bytes, %v; want EOF", n, err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkRelayRoundTrip is one small message each way over a connection
// already relayed: the per-request cost of a keep-alive connection.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, size := range []int{64, 1024} {
		hello := captureHello(b, &tls.Config{ServerName: "a.example.test"})
		backend := startRelayBackend(b, echoMessages(len(hello), size))
		for _, target := range relayTargets(b, backend) {
			b.Run(fmt.Sprintf("%s/%dB", target.name, size), func(b *testing.B) {
				c, err := net.Dial("tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				if _, err := c.Write(hello); err != nil {
					b.Fatal(err)
				}
				msg := bytes.Repeat([]byte{'m'}, size)
				buf := make([]byte, size)
				b.SetBytes(int64(2 * size))
				b.ReportAllocs()
				for b.Loop() {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// echoMessages is a backend that reads the hello (helloLen bytes), then
// sends back each message of size bytes.
func echoMessages(helloLen, size int) func(net.Conn) {
	return func(c net.Conn) {
		defer c.Close()
		if _, err := io.ReadFull(c, make([]byte, helloLen)); err != nil {
			return
		}
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

type relayTarget struct{ name, addr string }

// relayTargets are the backend itself and an l4.Server in front of it.
func relayTargets(b *testing.B, backend string) []relayTarget {
	b.Helper()
	addr, _ := relayServer(b, backend, 0)
	return []relayTarget{{"direct", backend}, {"l4", addr}}
}

// relayServer is an l4.Server that relays a.example.test to backend, its
// relays parking after parkAfter (0: the default).
func relayServer(b *testing.B, backend string, parkAfter time.Duration) (string, *prometheus.Registry) {
	b.Helper()
	router, err := NewRouter([]Route{
		{Name: "a", ServerNames: []string{"a.example.test"}, Pool: newPool(b, "p", "", lb.HealthCheck{}, backend)},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return startServer(b, Config{Router: router, MaxConns: 1 << 20, parkAfter: parkAfter})
}

// startRelayBackend serves each connection with serve on a loopback
// listener until the benchmark ends.
func startRelayBackend(b *testing.B, serve func(net.Conn)) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
