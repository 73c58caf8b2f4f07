package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Bounds of the flags: every run is finite.
const (
	maxConcurrency = 1024
	maxDuration    = 5 * time.Minute
	maxHeld        = 100_000
	maxRequests    = 10_000_000
)

// target is where a client connects: a loopback address and the server
// name it sends, with the path it asks for.
type target struct {
	addr, sni, path string
}

func (t *target) register(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "addr", "", "host:port to dial (required)")
	fs.StringVar(&t.sni, "sni", "", "TLS server name, also the Host header (required)")
	fs.StringVar(&t.path, "path", "/", "path to GET")
}

func (t *target) check() error {
	if t.addr == "" || t.sni == "" {
		return errors.New("-addr and -sni are required")
	}
	return nil
}

// tlsConfig never resumes a session (no ClientSessionCache) and sends an
// X25519 key share only, as wrk's OpenSSL 3.0 does, so the servers do the
// same key exchange for both clients. P-256 is listed after it, never used
// for the exchange while a server takes X25519, because a TLS 1.2 server
// (OpenSSL's) serves an ECDSA P-256 certificate (--key ecdsa) only to a
// client that lists P-256 among its groups. Certificates are not checked:
// the benchmark made them a moment ago, and checking would only add client
// CPU.
func (t *target) tlsConfig() *tls.Config {
	return &tls.Config{
		ServerName:         t.sni,
		InsecureSkipVerify: true,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
		NextProtos:         []string{"http/1.1"},
	}
}

// request is an HTTP/1.1 GET of the target's path.
func (t *target) request(keepAlive bool) []byte {
	conn := "keep-alive"
	if !keepAlive {
		conn = "close"
	}
	return []byte("GET " + t.path + " HTTP/1.1\r\nHost: " + t.sni + "\r\nUser-Agent: proxies\r\nConnection: " + conn + "\r\n\r\n")
}

// roundTrip sends req on c and reads the whole answer.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (status int, n int64, err error) {
	if _, err := c.Write(req); err != nil {
		return 0, 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, 0, err
	}
	n, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, n, err
}

// selfCPU is this process's CPU time so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// runNewConns opens one TLS connection per request, never resuming, for a
// fixed time at a fixed concurrency: wrk cannot be told not to resume, and
// a server that cannot turn resumption off would be measured on resumed
// handshakes.
func runNewConns(args []string) error {
	fs := flag.NewFlagSet("newconns", flag.ContinueOnError)
	var c common
	var t target
	c.register(fs)
	t.register(fs)
	conc := fs.Int("c", 16, "concurrent connections")
	dur := fs.Duration("d", 5*time.Second, "measured time")
	limit := fs.Int("max", 1_000_000, "most requests")
	if err := fs.Parse(args); err != nil {
		return err
	}
	w, err := c.check(true)
	if err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	if *conc < 1 || *conc > maxConcurrency || *dur <= 0 || *dur > maxDuration || *limit < 1 || *limit > maxRequests {
		return fmt.Errorf("-c 1..%d, -d up to %v and -max 1..%d", maxConcurrency, maxDuration, maxRequests)
	}
	conf := t.tlsConfig()
	req := t.request(false)
	var (
		mu       sync.Mutex
		lat      []time.Duration
		bytes    int64
		errs     = map[string]int64{}
		sent     int
		deadline = time.Now().Add(*dur)
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if sent >= *limit || time.Now().After(deadline) {
			return false
		}
		sent++
		return true
	}
	one := func() (int, int64, error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		raw, err := d.Dial("tcp", t.addr)
		if err != nil {
			return 0, 0, fmt.Errorf("connect: %w", err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(raw, conf)
		if err := tc.Handshake(); err != nil {
			return 0, 0, fmt.Errorf("handshake: %w", err)
		}
		if tc.ConnectionState().DidResume {
			return 0, 0, errors.New("resumed") // cannot happen without a session cache
		}
		return roundTrip(tc, bufio.NewReader(tc), req)
	}
	before, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	cpu0 := selfCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for take() {
				t0 := time.Now()
				status, n, err := one()
				took := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil:
					errs[errKind(err)]++
				case status >= 400:
					errs["status "+strconv.Itoa(status)]++
				default:
					lat = append(lat, took)
					bytes += n
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	load := selfCPU() - cpu0
	after, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	r := c.record()
	r.Tool = "proxies newconns"
	r.Seconds = elapsed.Seconds()
	r.Requests, r.Bytes = int64(len(lat)), bytes
	r.P50us, r.P99us = percentileUS(lat, 50), percentileUS(lat, 99)
	r.Errors, r.ErrorsBy = sumErrors(errs)
	account(&r, before, after, w, load, c.limits())
	return c.save(r)
}

// errKind names an error briefly for the error counts.
func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	s := err.Error()
	if i := len(s); i > 60 {
		s = s[:60]
	}
	return s
}

// percentileUS is the p-th percentile of d by nearest rank, in µs.
func percentileUS(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / 1e3
}

// runHold opens n TLS connections through the proxy, makes one keep-alive
// request on each so that each is relayed end to end, then holds them all
// idle and reads the proxy's resident set.
func runHold(args []string) error {
	fs := flag.NewFlagSet("hold", flag.ContinueOnError)
	var c common
	var t target
	c.register(fs)
	t.register(fs)
	n := fs.Int("n", 3000, "connections to hold")
	conc := fs.Int("c", 32, "connections opened at once")
	settle := fs.Duration("settle", 2*time.Second, "wait after the last one opened, before reading RSS")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up opening after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	w, err := c.check(true)
	if err != nil {
		return err
	}
	if err := t.check(); err != nil {
		return err
	}
	if *n < 1 || *n > maxHeld || *conc < 1 || *conc > maxConcurrency || *timeout > maxDuration || *settle > time.Minute {
		return fmt.Errorf("-n 1..%d, -c 1..%d, -timeout up to %v, -settle up to 1m", maxHeld, maxConcurrency, maxDuration)
	}
	proxyRoots := w.proxy
	rss := func(win window) int64 { return rssBytes(win.procs, tree(win.procs, proxyRoots)) }

	before, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	fdsBefore := hostProc.openFDs(tree(before.procs, proxyRoots))
	cpu0 := selfCPU()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	conf := t.tlsConfig()
	req := t.request(true)
	var (
		mu    sync.Mutex
		held  []net.Conn
		errs  = map[string]int64{}
		next  int
		wg    sync.WaitGroup
		dials = func() bool {
			mu.Lock()
			defer mu.Unlock()
			if next >= *n || ctx.Err() != nil {
				return false
			}
			next++
			return true
		}
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range *conc {
		wg.Go(func() {
			for dials() {
				d := net.Dialer{Timeout: 10 * time.Second}
				raw, err := d.DialContext(ctx, "tcp", t.addr)
				if err == nil {
					raw.SetDeadline(time.Now().Add(10 * time.Second))
					tc := tls.Client(raw, conf)
					var status int
					if status, _, err = roundTrip(tc, bufio.NewReader(tc), req); err == nil && status >= 400 {
						err = fmt.Errorf("status %d", status)
					}
					raw.SetDeadline(time.Time{})
					if err == nil {
						mu.Lock()
						held = append(held, tc)
						mu.Unlock()
						continue
					}
					raw.Close()
				}
				mu.Lock()
				errs[errKind(err)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	time.Sleep(*settle)
	after, err := hostProc.snapshot()
	if err != nil {
		return err
	}
	r := c.record()
	r.Tool = "proxies hold"
	r.Conns = len(held)
	r.RSSBefore, r.RSSAfter = rss(before), rss(after)
	r.FDsBefore, r.FDsAfter = fdsBefore, hostProc.openFDs(tree(after.procs, proxyRoots))
	r.Errors, r.ErrorsBy = sumErrors(errs)
	account(&r, before, after, w, selfCPU()-cpu0, c.limits())
	// Opening them is a burst of handshakes: only the held state counts
	// here, so other processes matter only if they pressed on memory.
	r.Disturbed = ""
	if len(held) < *n {
		fmt.Fprintf(os.Stderr, "proxies hold: %d of %d connections open\n", len(held), *n)
	}
	return c.save(r)
}

// runResumes connects twice with one session cache, for TLS 1.3 and for
// TLS 1.2, and records whether the second connection resumed the first
// one's session: with resumption off on a target, neither does.
func runResumes(args []string) error {
	fs := flag.NewFlagSet("resumes", flag.ContinueOnError)
	var c common
	var t target
	c.register(fs)
	t.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.results == "" || c.target == "" {
		return errors.New("-results and -target are required")
	}
	if err := t.check(); err != nil {
		return err
	}
	r := c.record()
	r.Figure = "resumption"
	r.Tool = "proxies resumes"
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		resumed, err := resumes(t, v)
		if err != nil {
			return fmt.Errorf("%s, %s: %w", t.addr, tls.VersionName(v), err)
		}
		if v == tls.VersionTLS13 {
			r.Resumed13 = &resumed
		} else {
			r.Resumed12 = &resumed
		}
	}
	r.Time = time.Now().UTC().Format(time.RFC3339)
	return c.save(r)
}

// resumes makes two connections of TLS version v sharing a session cache;
// the first makes a request and reads its answer, which is when a TLS 1.3
// server's tickets arrive.
func resumes(t target, v uint16) (bool, error) {
	conf := t.tlsConfig()
	conf.MinVersion, conf.MaxVersion = v, v
	conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	var resumed bool
	for i := range 2 {
		raw, err := net.DialTimeout("tcp", t.addr, 10*time.Second)
		if err != nil {
			return false, err
		}
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(raw, conf)
		_, _, err = roundTrip(tc, bufio.NewReader(tc), t.request(false))
		resumed = tc.ConnectionState().DidResume
		raw.Close()
		if err != nil {
			return false, fmt.Errorf("connection %d: %w", i+1, err)
		}
	}
	return resumed, nil
}
