package l7redirect

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

// benchHandler is a front door with one rule to a pool of one node that is
// up (no health checks run: a pool starts with its backends up), with the
// bound on request targets if maxTarget is given.
func benchHandler(b testing.TB, maxTarget ...int) *Handler {
	b.Helper()
	pool, err := lb.NewPool(lb.Config{
		Name:     "auth",
		Backends: []lb.BackendConfig{{Name: "auth1", Addr: "127.0.0.1:8443", FQDN: "auth1.example.test"}},
	}, lb.Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{Name: "sso", Rules: []Rule{{Host: "sso.example.test", Pool: pool}}}
	if len(maxTarget) > 0 {
		cfg.MaxRequestTarget = maxTarget[0]
	}
	h, err := New(cfg, Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

const benchWant = "https://auth1.example.test:8443/app?x=1"

// discardWriter is the least a handler can write to: the benchmark counts
// the handler's own work, not a recorder's.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkRedirect is one 302. "handler" calls ServeHTTP with a request
// parsed beforehand, as net/http hands it over: matching, picking the node,
// the headers, body and metrics. "http1" sends the request over a
// keep-alive HTTP/1.1 connection on loopback to Server.Serve (no TLS) and
// reads the answer, so net/http's parsing and writing count too; its
// client is in the same process and allocates nothing per request.
func BenchmarkRedirect(b *testing.B) {
	h := benchHandler(b)
	b.Run("handler", func(b *testing.B) {
		r := httptest.NewRequest("GET", "https://sso.example.test/app?x=1", nil)
		r.RemoteAddr = "192.0.2.10:50000"
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, r)
		if w.code != http.StatusFound || w.h.Get("Location") != benchWant {
			b.Fatalf("answered %d to %q, want 302 to %s", w.code, w.h.Get("Location"), benchWant)
		}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	})
	b.Run("http1", func(b *testing.B) {
		addr := serveBench(b, h)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		req := []byte("GET /app?x=1 HTTP/1.1\r\nHost: sso.example.test\r\nUser-Agent: bench\r\n\r\n")
		br := bufio.NewReaderSize(c, 4096)
		status, loc, err := readAnswer(c, br, req, true)
		if err != nil || status != "302" || loc != benchWant {
			b.Fatalf("answered %s to %q (%v), want 302 to %s", status, loc, err, benchWant)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := readAnswer(c, br, req, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// readAnswer writes req to c and reads one answer from br, its body by
// Content-Length. With check it returns the status code and Location; the
// benchmark loop passes false, and then nothing allocates.
func readAnswer(c net.Conn, br *bufio.Reader, req []byte, check bool) (status, location string, err error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		return "", "", err
	}
	length := 0
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", "", err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			_, err := br.Discard(length)
			return status, location, err
		case bytes.HasPrefix(line, []byte("Content-Length: ")):
			length = 0
			for _, d := range line[len("Content-Length: "):] {
				length = 10*length + int(d-'0')
			}
		case !check:
		case first:
			if f := bytes.Fields(line); len(f) > 1 {
				status = string(f[1])
			}
		case bytes.HasPrefix(line, []byte("Location: ")):
			location = string(line[len("Location: "):])
		}
	}
}

// serveBench serves h over plain HTTP on loopback until the benchmark ends.
func serveBench(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- (&Server{Logger: quietLogger()}).Serve(ctx, ln, h, nil) }()
	b.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			b.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// BenchmarkDotSegmentPath is the CPU time of one redirect for a path of
// "%2F../" segments, 6 and 48 KiB long, against a normal one: the time
// must grow with the path's length (a pass per segment cost seconds).
func BenchmarkDotSegmentPath(b *testing.B) {
	h := benchHandler(b, 64<<10)
	for _, bc := range []struct {
		name, target string
	}{
		{"normal", "/app?x=1"},
		{"6KiB", "/" + strings.Repeat("%2F../", 1<<10)},
		{"48KiB", "/" + strings.Repeat("%2F../", 8<<10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "https://sso.example.test"+bc.target, nil)
			w := &discardWriter{h: http.Header{}}
			b.SetBytes(int64(len(bc.target)))
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			if w.code/100 != 3 {
				b.Fatalf("answered %d, want a redirect", w.code)
			}
		})
	}
}
