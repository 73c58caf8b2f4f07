package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// Fields after the name: state ppid pgrp session tty tpgid flags
	// minflt cminflt majflt cmajflt utime stime ...
	tests := []struct {
		name string
		line string
		want time.Duration
	}{
		{"plain", "1234 (iwalb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0", 3250 * time.Millisecond},
		// A name may hold spaces and parentheses; only the last ')' ends it.
		{"odd name", "77 (a) b (c) 9) R 1 77 77 0 -1 0 0 0 0 0 7 3 0 0", 100 * time.Millisecond},
		{"zero", "5 (x) S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0\n", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if err != nil || got != tc.want {
				t.Fatalf("parseStat(%q) = %v, %v; want %v", tc.line, got, err, tc.want)
			}
		})
	}
}

func TestParseStatRefusesMalformed(t *testing.T) {
	for _, line := range []string{
		"",
		"1234 iwalb S 1 2 3", // no parentheses
		"1234 (iwalb) S 1 1234 1234 0 -1 4194560 100 0 0 0 250",       // cut before stime
		"1234 (iwalb) S 1 1234 1234 0 -1 4194560 100 0 0 0 2x5 75 0",  // not a number
		"1234 (iwalb) S 1 1234 1234 0 -1 4194560 100 0 0 0 -250 75 0", // negative
		"1 (x) S 1 1 1 0 -1 0 0 0 0 0 99999999999999999999 0 0",       // overflows
	} {
		if d, err := parseStat([]byte(line)); err == nil {
			t.Errorf("parseStat(%q) = %v, want an error", line, d)
		}
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	// Burn some CPU, then this process's CPU time from /proc must have
	// grown by about as much as getrusage says (10 ms ticks).
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self0 := selfCPU()
	for x, end := 0, time.Now().Add(300*time.Millisecond); time.Now().Before(end); x++ {
		_ = strings.Repeat("x", x%64)
	}
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	self := selfCPU() - self0
	if got := after - before; got < self/2 || got > 2*self+100*time.Millisecond {
		t.Fatalf("/proc says %v of CPU, getrusage %v", got, self)
	}
	if _, err := procCPU(0x7ffffffe); err == nil {
		t.Fatal("procCPU of a PID that does not exist: no error")
	}
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond},
		{ms(1, 2), 51, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 75, 3 * time.Millisecond},
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 95, 95 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 99.5, 100 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		{hundred, 0.1, 1 * time.Millisecond},
	}
	for _, tc := range tests {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.sorted), tc.p, got, tc.want)
		}
	}
}

func TestSummariseSortsACopy(t *testing.T) {
	// 1,000 requests of which 20 slow ones: p99 is slow, p95 is not.
	d := make([]time.Duration, 1000)
	for i := range d {
		d[i] = 2 * time.Millisecond
		if i%50 == 0 {
			d[i] = 300 * time.Millisecond
		}
	}
	d[500] = time.Second
	l := summarise(d)
	if l.P50 != 2*time.Millisecond || l.P95 != 2*time.Millisecond || l.P99 != 300*time.Millisecond || l.Max != time.Second {
		t.Fatalf("summarise = %+v", l)
	}
	if d[0] != 300*time.Millisecond || d[500] != time.Second {
		t.Fatal("summarise reordered its input")
	}
}

func TestUsecClockNeverRepeats(t *testing.T) {
	var c usecClock
	now := time.Unix(1700000000, 999999000)
	a, b, x := c.next(now), c.next(now), c.next(now.Add(-time.Second))
	if !(a < b && b < x) || a != now.UnixMicro() {
		t.Fatalf("times %d %d %d from one instant (%d) and an earlier one", a, b, x, now.UnixMicro())
	}
	if later := c.next(now.Add(time.Second)); later != now.Add(time.Second).UnixMicro() {
		t.Fatalf("a later clock reading gives %d, want it as is", later)
	}
}
