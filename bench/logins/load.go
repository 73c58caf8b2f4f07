package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of one answer: the node's pages are a few KiB.
const (
	maxBodyRead = 1 << 20 // read (and drop) at most this much, to reuse the connection
	maxReasons  = 64      // distinct failure keys kept; the rest count as "other"
)

// reasonRe finds the reason the node's failure page names:
// "Reason: <code>ldap_unavailable</code> (HTTP 503)" (authnode/page.go).
var reasonRe = regexp.MustCompile(`Reason: <code>([a-z0-9_]{1,64})</code>`)

// headerMaker makes the Authorization header of one login.
type headerMaker interface {
	header() (string, error)
}

// worker sends logins on one keep-alive HTTPS connection.
type worker struct {
	hc    *http.Client
	url   string
	blobs headerMaker
	// newConns counts connections opened (1 when keep-alive held).
	newConns atomic.Int64
}

// tally is what one worker saw in one phase.
type tally struct {
	sent, ok  int
	latencies []time.Duration // of every request that got an answer or an error
	failures  map[string]int  // "503 ldap_unavailable", "error: timeout"
	examples  map[string]string
	blobTime  time.Duration // spent making Negotiate headers
}

func newTally() *tally {
	return &tally{failures: make(map[string]int), examples: make(map[string]string)}
}

func (t *tally) fail(key, example string) {
	if _, ok := t.failures[key]; !ok && len(t.failures) >= maxReasons {
		key = "other"
	}
	t.failures[key]++
	if _, ok := t.examples[key]; !ok && example != "" {
		t.examples[key] = clipString(example, 300)
	}
}

func (t *tally) merge(o *tally) {
	t.sent += o.sent
	t.ok += o.ok
	t.latencies = append(t.latencies, o.latencies...)
	t.blobTime += o.blobTime
	for k, n := range o.failures {
		if _, ok := t.failures[k]; !ok && len(t.failures) >= maxReasons {
			k = "other"
		}
		t.failures[k] += n
		if _, ok := t.examples[k]; !ok {
			t.examples[k] = o.examples[k]
		}
	}
}

// newHTTPClient returns a client with a transport of its own that holds
// one HTTP/1.1 keep-alive connection, dialled to connect (host:port), with
// TLS checked against roots for the URL's host name. It follows no
// redirects: the node's 302 is the answer.
func newHTTPClient(connect, serverName string, roots *x509.CertPool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: min(timeout, 10*time.Second)}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", connect)
			},
			TLSClientConfig:     &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: min(timeout, 10*time.Second),
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// run sends logins until the deadline, until ctx ends, or until budget
// (shared by all workers) runs out, whichever comes first.
func (w *worker) run(ctx context.Context, deadline time.Time, budget *atomic.Int64) *tally {
	t := newTally()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			w.newConns.Add(1)
		}
	}}
	ctx = httptrace.WithClientTrace(ctx, trace)
	for ctx.Err() == nil && time.Now().Before(deadline) && budget.Add(-1) >= 0 {
		gstart := time.Now()
		h, err := w.blobs.header()
		t.blobTime += time.Since(gstart)
		t.sent++
		if err != nil {
			t.fail("client: negotiate token", err.Error())
			continue
		}
		start := time.Now()
		status, reason, err := w.login(ctx, h)
		t.latencies = append(t.latencies, time.Since(start))
		switch {
		case err != nil:
			if ctx.Err() != nil {
				// Interrupted: not the node's failure.
				t.sent--
				t.latencies = t.latencies[:len(t.latencies)-1]
				return t
			}
			t.fail("error: "+errClass(err), err.Error())
		case status == http.StatusFound:
			t.ok++
		default:
			t.fail(strconv.Itoa(status)+" "+reason, "")
		}
	}
	return t
}

// login sends one GET with the Negotiate header h and returns the status
// and, for a failure page, the reason it names ("-" when none).
func (w *worker) login(ctx context.Context, h string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return 0, "", err
	}
	if h != "" {
		req.Header.Set("Authorization", h)
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	reason := "-"
	if resp.StatusCode != http.StatusFound {
		page, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if m := reasonRe.FindSubmatch(page); m != nil {
			reason = string(m[1])
		}
	}
	// Drain what is left so that the connection is kept.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBodyRead)); err != nil {
		return 0, "", err
	}
	return resp.StatusCode, reason, nil
}

// errClass names a transport error in a few words, so that failures can be
// counted by kind.
func errClass(err error) string {
	var nerr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	var cerr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	if errors.As(err, &cerr) || errors.As(err, &rerr) {
		return "tls"
	}
	return "other"
}

// phase runs all workers at once until the deadline or the budget, and
// returns what they saw together.
func phase(ctx context.Context, workers []*worker, d time.Duration, budget *atomic.Int64) (*tally, time.Duration) {
	start := time.Now()
	deadline := start.Add(d)
	tallies := make([]*tally, len(workers))
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Go(func() { tallies[i] = w.run(ctx, deadline, budget) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := newTally()
	for _, t := range tallies {
		all.merge(t)
	}
	return all, elapsed
}

// loadRoots returns the CA certificates of a PEM file, or the system's
// when file is "".
func loadRoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return x509.SystemCertPool()
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", file)
	}
	return p, nil
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
