package l4

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// TestRelayedConnectionLogLine: every relayed connection ends with one
// info line naming the listener, the real client (from a trusted PROXY
// header), the server name, route, backend, the bytes each way (equal to
// what the backend received and sent, the PROXY header and the ClientHello
// included), the duration and how it ended; and none of the payload.
func TestRelayedConnectionLogLine(t *testing.T) {
	const secret = "PAYLOAD-MUST-NOT-BE-LOGGED"
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	upstream := &proxyproto.Header{
		Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 40123},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 443},
	}
	upstreamHeader, err := upstream.Format()
	if err != nil {
		t.Fatal(err)
	}

	// readHello reads the PROXY v1 header the balancer sends and the
	// ClientHello after it, so the backend knows where the client's bytes
	// begin.
	readHello := func(c net.Conn) (int, bool) {
		h := make([]byte, 0, 128)
		one := make([]byte, 1)
		for !strings.HasSuffix(string(h), "\r\n") {
			if _, err := c.Read(one); err != nil {
				return len(h), false
			}
			h = append(h, one[0])
		}
		n, err := io.ReadFull(c, make([]byte, len(hello)))
		return len(h) + n, err == nil
	}

	tests := []struct {
		name string
		end  string
		idle time.Duration
		// backend plays the node's part and returns what it received and
		// sent; client plays the browser's after its ClientHello.
		backend  func(c net.Conn) (received, sent int)
		client   func(t *testing.T, c net.Conn, stop func())
		checkErr []string // for EndError, parts of err
	}{
		{
			name: "the client closes first",
			end:  EndClientClosed,
			backend: func(c net.Conn) (int, int) {
				b, _ := io.ReadAll(c) // up to the client's half-close
				n, _ := io.WriteString(c, strings.Repeat("answer ", 1000))
				return len(b), n
			},
			client: func(t *testing.T, c net.Conn, _ func()) {
				io.WriteString(c, secret)
				c.(*countingConn).CloseWrite()
				io.Copy(io.Discard, c)
			},
		},
		{
			name: "the backend closes first",
			end:  EndBackendClosed,
			backend: func(c net.Conn) (int, int) {
				got, _ := readHello(c)
				n, _ := io.WriteString(c, "bye")
				c.(*net.TCPConn).CloseWrite()
				rest, _ := io.ReadAll(c)
				return got + len(rest), n
			},
			client: func(t *testing.T, c net.Conn, _ func()) {
				io.Copy(io.Discard, c) // to the backend's half-close
				io.WriteString(c, secret)
				c.Close()
			},
		},
		{
			name: "both sides go quiet",
			end:  EndIdleTimeout,
			idle: 200 * time.Millisecond,
			backend: func(c net.Conn) (int, int) {
				got, _ := readHello(c)
				n, _ := io.WriteString(c, "hello")
				rest, _ := io.ReadAll(c) // until the balancer closes
				return got + len(rest), n
			},
			client: func(t *testing.T, c net.Conn, _ func()) {
				io.WriteString(c, secret)
				io.Copy(io.Discard, c) // until the balancer closes
			},
		},
		{
			// Half-closed, then quiet: the balancer closes it at the idle
			// timeout (with parking, the parked connection's timer does).
			name: "the client half-closes, then both sides go quiet",
			end:  EndIdleTimeout,
			idle: 200 * time.Millisecond,
			backend: func(c net.Conn) (int, int) {
				b, _ := io.ReadAll(c) // up to the client's half-close
				n, _ := io.WriteString(c, "answer")
				// Then silent, well past the idle timeout (its reads
				// would only see the end again).
				time.Sleep(time.Second)
				return len(b), n
			},
			client: func(t *testing.T, c net.Conn, _ func()) {
				io.WriteString(c, secret)
				c.(*countingConn).CloseWrite()
				io.Copy(io.Discard, c) // until the balancer closes
			},
		},
		{
			name: "the listener shuts down",
			end:  EndShutdown,
			backend: func(c net.Conn) (int, int) {
				got, _ := readHello(c)
				rest, _ := io.ReadAll(c)
				return got + len(rest), 0
			},
			client: func(t *testing.T, c net.Conn, stop func()) {
				io.WriteString(c, secret)
				time.Sleep(100 * time.Millisecond) // relayed by now
				stop()
			},
		},
		{
			name: "the backend resets",
			end:  EndError,
			backend: func(c net.Conn) (int, int) {
				got, _ := readHello(c)
				c.(*net.TCPConn).SetLinger(0)
				return got, 0
			},
			client: func(t *testing.T, c net.Conn, _ func()) {
				io.Copy(io.Discard, c)
			},
			checkErr: []string{"backend_to_client: ", "connection reset by peer"}, // which copy failed, and why
		},
	}
	// Each case twice: waiting in the relay's goroutines, and parked
	// (a direction quiet for 10ms waits in the parker, without one).
	for _, tt := range tests {
		for _, parkAfter := range []time.Duration{-1, 10 * time.Millisecond} {
			name := tt.name
			if parkAfter > 0 {
				name += ", parked"
			}
			t.Run(name, func(t *testing.T) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				type counts struct{ received, sent int }
				backendDone := make(chan counts, 1)
				go func() {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					r, s := tt.backend(c)
					backendDone <- counts{r, s}
				}()
				router, _ := NewRouter([]Route{{Name: "auth", ServerNames: []string{"a.example.test"}, ProxyProtocol: 1,
					Pool: newPool(t, "p", "", lb.HealthCheck{}, ln.Addr().String())}}, nil)
				var logs testkit.Buffer
				addr, _, stop := runServer(t, Config{Name: "public", Router: router, IdleTimeout: tt.idle, parkAfter: parkAfter,
					TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, logs.JSONLogger())

				start := time.Now() // before the balancer can accept
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(append(clone(upstreamHeader), hello...)); err != nil {
					t.Fatal(err)
				}
				clientGot := make(chan int64, 1)
				counted := &countingConn{Conn: c}
				go func() {
					tt.client(t, counted, stop)
					clientGot <- counted.read
				}()
				var be counts
				select {
				case be = <-backendDone:
				case <-time.After(10 * time.Second):
					t.Fatal("the backend never finished")
				}
				received := <-clientGot
				waitFor(t, "the log line", 5*time.Second, func() bool { return len(logs.Records(t, "connection relayed")) > 0 })
				took := time.Since(start)

				lines := logs.Records(t, "connection relayed")
				if len(lines) != 1 {
					t.Fatalf("%d log lines for one connection, want 1", len(lines))
				}
				l := lines[0]
				bytes, _ := l["bytes"].(map[string]any)
				want := map[string]any{
					"level":    "INFO",
					"listener": "public",
					"client":   "203.0.113.7:40123",
					"sni":      "a.example.test",
					"route":    "auth",
					"backend":  "p-1",
					"end":      tt.end,
				}
				for k, v := range want {
					if l[k] != v {
						t.Errorf("%s = %v, want %v", k, l[k], v)
					}
				}
				if got := bytes["client_to_backend"]; got != float64(be.received) {
					t.Errorf("bytes.client_to_backend = %v, the backend received %d", got, be.received)
				}
				if got := bytes["backend_to_client"]; got != float64(be.sent) {
					t.Errorf("bytes.backend_to_client = %v, the backend sent %d", got, be.sent)
				}
				if tt.end != EndError && received != int64(be.sent) {
					t.Errorf("the client received %d bytes, the backend sent %d", received, be.sent)
				}
				if d, ok := l["duration"].(float64); !ok || d <= 0 || time.Duration(d) > took {
					t.Errorf("duration = %v ns, want more than 0 and at most the %s the test took", l["duration"], took)
				}
				errText, _ := l["err"].(string)
				if tt.checkErr == nil && l["err"] != nil {
					t.Errorf("err = %v, want none", l["err"])
				}
				for _, part := range tt.checkErr {
					if !strings.Contains(errText, part) {
						t.Errorf("err = %q, want it to mention %q", errText, part)
					}
				}
				if strings.Contains(logs.String(), secret) {
					t.Error("the log holds the client's payload")
				}
			})
		}
	}
}

// countingConn counts the bytes read through it.
type countingConn struct {
	net.Conn
	read int64
}

func (c *countingConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read += int64(n)
	return n, err
}
