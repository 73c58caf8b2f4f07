//go:build linux

package l7redirect

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iwalb/iwalb/lb"
)

// threadCPU is the CPU time the calling OS thread has used. Its caller
// holds runtime.LockOSThread, so that only its own work counts, not other
// goroutines' (the pool's health checks, the garbage collector's workers).
func threadCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerRequest is the CPU time h takes to answer a GET of target, averaged
// over n requests; the requests are parsed before the clock starts, as the
// HTTP server parses them before calling the handler.
func cpuPerRequest(t *testing.T, h http.Handler, target string, n int) time.Duration {
	t.Helper()
	reqs := make([]*http.Request, n)
	recs := make([]*httptest.ResponseRecorder, n)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", target, nil)
		reqs[i].Host = "sso.example.test"
		recs[i] = httptest.NewRecorder()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU(t)
	for i, r := range reqs {
		h.ServeHTTP(recs[i], r)
	}
	used := threadCPU(t) - start
	for _, rec := range recs {
		if rec.Code/100 != 3 {
			t.Fatalf("GET %.40s… answered %d, want a redirect", target, rec.Code)
		}
	}
	return used / time.Duration(n)
}

// TestLongDotSegmentPathCPU sends the request that once took seconds of
// CPU, a 48 KB path of "%2F../" segments (which a raised bound lets
// through), to both handlers, and requires it to cost no more than a
// thousand normal requests (about 150 here, a millisecond); a pass over
// the path per segment cost some three hundred thousand. CPU time of this
// thread, not wall time, and a ratio, not a duration: a loaded machine
// slows both alike.
func TestLongDotSegmentPathCPU(t *testing.T) {
	node := startNode(t, "auth1")
	pool := newPool(t, "auth", lb.PolicyRoundRobin, []*testNode{node})
	waitState(t, pool, "auth1", lb.StateUp)
	const bound = 64 << 10
	h, err := New(Config{Name: "sso", Rules: []Rule{{Pool: pool}}, MaxRequestTarget: bound}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewRedirect(RedirectConfig{Names: []string{"sso.example.test"}, MaxRequestTarget: bound}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	long := "/" + strings.Repeat("%2F../", 8<<10) // 48 KiB
	const maxRatio = 1000
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{{"https handler", h}, {"http redirect", plain}} {
		t.Run(tt.name, func(t *testing.T) {
			normal := cpuPerRequest(t, tt.h, "/app/x?y=1", 500)
			big := cpuPerRequest(t, tt.h, long, 20)
			ratio := float64(big) / float64(max(normal, time.Microsecond))
			t.Logf("CPU per request: normal %v, 48 KiB dot-segment path %v (%.0f×)", normal, big, ratio)
			if ratio > maxRatio {
				t.Errorf("the 48 KiB dot-segment path cost %v of CPU, %.0f times a normal request's %v; want at most %d times",
					big, ratio, normal, maxRatio)
			}
		})
	}
}
