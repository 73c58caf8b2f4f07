package l7redirect

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// bytesPerRequest is the memory h allocates to answer a GET of target,
// averaged over n requests parsed beforehand (as the HTTP server parses
// them before calling the handler). Memory, not time: it does not depend on
// the machine's load, and a pass over the path per dot segment, the defect
// this guards against, allocated a new path per pass.
func bytesPerRequest(t *testing.T, h http.Handler, target string, n int) uint64 {
	t.Helper()
	reqs := make([]*http.Request, n)
	recs := make([]*httptest.ResponseRecorder, n)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", target, nil)
		reqs[i].Host = "sso.example.test"
		recs[i] = httptest.NewRecorder()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i, r := range reqs {
		h.ServeHTTP(recs[i], r)
	}
	runtime.ReadMemStats(&after)
	for _, rec := range recs {
		if rec.Code/100 != 3 {
			t.Fatalf("GET %.40s… answered %d, want a redirect", target, rec.Code)
		}
	}
	return (after.TotalAlloc - before.TotalAlloc) / uint64(n)
}

// TestLongDotSegmentPathWork sends the request that once took seconds of
// CPU, a 48 KiB path of "%2F../" segments (which a raised bound lets
// through), to both handlers: the work must grow with the path's length,
// not with its square. The memory a request allocates is the measure (CPU
// time is in BenchmarkDotSegmentPath): eight times the path may cost about
// eight times the memory, where a pass per segment cost sixty-four times.
func TestLongDotSegmentPathWork(t *testing.T) {
	const bound = 64 << 10
	h := benchHandler(t, bound)
	plain, err := NewRedirect(RedirectConfig{Names: []string{"sso.example.test"}, MaxRequestTarget: bound}, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	short := "/" + strings.Repeat("%2F../", 1<<10) // 6 KiB
	long := "/" + strings.Repeat("%2F../", 8<<10)  // 48 KiB
	for _, tt := range []struct {
		name string
		h    http.Handler
	}{{"https handler", h}, {"http redirect", plain}} {
		t.Run(tt.name, func(t *testing.T) {
			bytesPerRequest(t, tt.h, "/warm", 1)
			s := bytesPerRequest(t, tt.h, short, 50)
			l := bytesPerRequest(t, tt.h, long, 50)
			ratio := float64(l) / float64(s)
			t.Logf("allocated per request: 6 KiB dot-segment path %d bytes, 48 KiB path %d bytes (%.1f×)", s, l, ratio)
			if ratio > 12 {
				t.Errorf("a path 8 times longer allocated %.1f times as much (%d bytes against %d); want at most 12", ratio, l, s)
			}
			if l > 16*uint64(len(long)) {
				t.Errorf("a %d-byte path allocated %d bytes; want at most 16 bytes per byte of path", len(long), l)
			}
		})
	}
}
