package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testpki"
)

// startHTTPS serves a tiny answer over TLS on loopback, with session
// tickets on or off, until the test ends.
func startHTTPS(t *testing.T, tickets bool) string {
	t.Helper()
	ca := testpki.NewCA(t, "proxies test CA")
	conf := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "backend.bench.test").TLS()}, SessionTicketsDisabled: !tickets}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func readResults(t *testing.T, path string) []Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, all, err := readRecords(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// TestResumesTellsTicketsFromNone: the check that marks a target "not
// comparable" must see resumption where the server allows it, and none
// where it does not.
func TestResumesTellsTicketsFromNone(t *testing.T) {
	res := filepath.Join(t.TempDir(), "r.jsonl")
	for _, tickets := range []bool{true, false} {
		addr := startHTTPS(t, tickets)
		if err := runResumes([]string{"-results", res, "-target", "t" + strconv.FormatBool(tickets), "-addr", addr, "-sni", "backend.bench.test", "-path", "/tiny"}); err != nil {
			t.Fatal(err)
		}
	}
	all := readResults(t, res)
	if len(all) != 2 {
		t.Fatalf("%d records, want 2", len(all))
	}
	for i, want := range []bool{true, false} {
		r := all[i]
		if r.Figure != "resumption" || r.Resumed13 == nil || r.Resumed12 == nil || *r.Resumed13 != want || *r.Resumed12 != want {
			t.Errorf("tickets %v: record %+v, want resumed %v for TLS 1.3 and 1.2", want, r, want)
		}
	}
}

// TestNewConnsNeverResumes: against a server that offers tickets, every
// connection still makes a full handshake (the client would count a
// resumed one as an error), and the answers are counted.
func TestNewConnsNeverResumes(t *testing.T) {
	addr := startHTTPS(t, true)
	res := filepath.Join(t.TempDir(), "r.jsonl")
	err := runNewConns([]string{"-results", res, "-figure", "f", "-target", "x", "-addr", addr, "-sni", "backend.bench.test",
		"-path", "/tiny", "-c", "2", "-d", "10s", "-max", "40", "-max-other", "100"})
	if err != nil {
		t.Fatal(err)
	}
	all := readResults(t, res)
	if len(all) != 1 {
		t.Fatalf("%d records", len(all))
	}
	r := all[0]
	if r.Requests != 40 || r.Errors != 0 || r.Bytes != 40*3 || r.P50us <= 0 || r.P99us < r.P50us {
		t.Fatalf("record %+v: want 40 answers of 3 bytes, no error", r)
	}
}

// TestHoldCountsTheProxysMemory holds connections to a server in this
// process, standing in for the proxy: its RSS and descriptors are read.
func TestHoldCountsTheProxysMemory(t *testing.T) {
	addr := startHTTPS(t, false)
	res := filepath.Join(t.TempDir(), "r.jsonl")
	err := runHold([]string{"-results", res, "-figure", "l4_idle_50", "-target", "x", "-addr", addr, "-sni", "backend.bench.test",
		"-path", "/tiny", "-n", "50", "-settle", "10ms", "-proxy", strconv.Itoa(os.Getpid())})
	if err != nil {
		t.Fatal(err)
	}
	r := readResults(t, res)[0]
	// Both ends are in this process: at least a descriptor per side.
	if r.Conns != 50 || r.Errors != 0 || r.RSSAfter <= 0 || r.FDsAfter-r.FDsBefore < 100 {
		t.Fatalf("record %+v: want 50 held, RSS read, 100 more descriptors", r)
	}
}

func TestFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"-figure", "f", "-target", "x"}, // no -results
		{"-results", "r", "-figure", "f", "-target", "x", "-addr", "a", "-sni", "s", "-c", "0"},
		{"-results", "r", "-figure", "f", "-target", "x", "-addr", "a", "-sni", "s", "-d", "1h"},
		{"-results", "r", "-figure", "f", "-target", "x", "-sni", "s"},
		{"-results", "r", "-figure", "f", "-target", "x", "-addr", "a", "-sni", "s", "-proxy", "x"},
	} {
		if err := runNewConns(args); err == nil {
			t.Errorf("newconns %q: no error", args)
		}
	}
	if err := runHold([]string{"-results", "r", "-figure", "f", "-target", "x", "-addr", "a", "-sni", "s", "-n", "1000000"}); err == nil {
		t.Error("hold -n 1000000: no error")
	}
	if err := runWrk([]string{"-results", "r", "-figure", "f", "-target", "x"}); err == nil {
		t.Error("wrk without a command: no error")
	}
}

// TestWrkRecordsTheCommandsFigures runs a stand-in for wrk that writes
// what wrk.lua's done() writes.
func TestWrkRecordsTheCommandsFigures(t *testing.T) {
	dir := t.TempDir()
	res := filepath.Join(dir, "r.jsonl")
	out, _ := json.Marshal(wrkOut{Requests: 500, Bytes: 5000, DurationUS: 2e6, Status: 3, LatP50US: 100, LatP99US: 900})
	script := "printf '%s' '" + string(out) + "' > \"$PB_OUT\""
	if err := runWrk([]string{"-results", res, "-figure", "l4_small", "-target", "nginx", "-max-other", "100", "--", "sh", "-c", script}); err != nil {
		t.Fatal(err)
	}
	r := readResults(t, res)[0]
	if r.Tool != "wrk" || r.Requests != 500 || r.Bytes != 5000 || r.Seconds != 2 || r.Errors != 3 || r.ErrorsBy != "status>=400 3" || r.P99us != 900 {
		t.Fatalf("record %+v", r)
	}
	if err := runWrk([]string{"-results", res, "-figure", "f", "-target", "x", "--", "sh", "-c", "exit 7"}); err == nil {
		t.Fatal("a failing command: no error")
	}
}

// TestClientOffersP256: with --key ecdsa, an OpenSSL server (HAProxy,
// nginx) serves its P-256 certificate over TLS 1.2 only to a client that
// lists P-256 among its groups; the key share stays X25519 alone.
func TestClientOffersP256(t *testing.T) {
	prefs := (&target{sni: "sso.bench.test"}).tlsConfig().CurvePreferences
	if len(prefs) != 2 || prefs[0] != tls.X25519 || prefs[1] != tls.CurveP256 {
		t.Fatalf("curve preferences %v, want [X25519 P-256]", prefs)
	}
}
