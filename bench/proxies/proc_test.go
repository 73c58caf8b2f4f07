package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// statLine is a /proc/PID/stat line with the given fields of interest.
func statLine(pid int, comm string, ppid int, utime, stime, rss int64) string {
	// Fields 3..24, of which 4 (ppid), 14 (utime), 15 (stime) and 24 (rss)
	// matter; the others are filler.
	f := make([]string, 22)
	for i := range f {
		f[i] = "0"
	}
	f[0] = "S"
	f[4-3] = fmt.Sprint(ppid)
	f[14-3] = fmt.Sprint(utime)
	f[15-3] = fmt.Sprint(stime)
	f[24-3] = fmt.Sprint(rss)
	return fmt.Sprintf("%d (%s) %s 0 0 0\n", pid, comm, strings.Join(f, " "))
}

func TestParseStat(t *testing.T) {
	// A command name may hold spaces and parentheses.
	s, err := parseStat([]byte(statLine(42, "we(ird) (name", 7, 1234, 56, 789)))
	if err != nil {
		t.Fatal(err)
	}
	if s.pid != 42 || s.ppid != 7 || s.utime != 1234 || s.stime != 56 || s.rssPages != 789 {
		t.Fatalf("parsed %+v", s)
	}
}

func TestParseStatRejectsBadLines(t *testing.T) {
	for _, line := range []string{
		"",
		"42 no parentheses 0 0",
		"x (name) S 1 2 3",
		"42 (name) S 1 2 3", // too few fields
		strings.Replace(statLine(42, "n", 1, 2, 3, 4), " 2 3 ", " two 3 ", 1),
	} {
		if _, err := parseStat([]byte(line)); err == nil {
			t.Errorf("parseStat(%q) gave no error", line)
		}
	}
}

func TestTreeAndDelta(t *testing.T) {
	procs := map[int]procStat{
		1:  {pid: 1, ppid: 0, utime: 100},
		10: {pid: 10, ppid: 1, utime: 10, stime: 5},  // the proxy's master
		11: {pid: 11, ppid: 10, utime: 20, stime: 5}, // its worker
		12: {pid: 12, ppid: 11, utime: 1},            // the worker's child
		20: {pid: 20, ppid: 1, utime: 500},           // someone else
	}
	got := tree(procs, []int{10, 99}) // 99 does not exist
	if len(got) != 3 || !got[10] || !got[11] || !got[12] {
		t.Fatalf("tree(10) = %v, want 10, 11, 12", got)
	}
	after := map[int]procStat{
		10: {pid: 10, utime: 12, stime: 5},
		11: {pid: 11, utime: 60, stime: 15},
		// 12 ended: its time is not counted, not subtracted either
		20: {pid: 20, utime: 900},
	}
	if d := ticksDelta(procs, after, got); d != 2+50 {
		t.Fatalf("ticksDelta = %d, want 52", d)
	}
}

func TestParseProcStat(t *testing.T) {
	c, err := parseProcStat([]byte("cpu  10 1 20 300 4 0 6 7 0 0\ncpu0 5 0 10 150 2 0 3 3 0 0\nintr 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.busy() != 31 || c.softirq != 6 || c.steal != 7 || c.idle != 300 {
		t.Fatalf("parsed %+v", c)
	}
	if _, err := parseProcStat([]byte("intr 1\n")); err == nil {
		t.Fatal("no cpu line: no error")
	}
}

// fakeProc writes a /proc with the given processes and machine CPU line.
func fakeProc(t *testing.T, dir string, cpuLine string, lines map[int]string) procFS {
	t.Helper()
	for pid, l := range lines {
		d := filepath.Join(dir, fmt.Sprint(pid))
		if err := os.MkdirAll(filepath.Join(d, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(l), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(cpuLine), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loadavg"), []byte("0.50 0.40 0.30 1/100 999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return procFS{root: dir}
}

// TestAccountSplitsTheCPU: a window's machine CPU is split into the
// proxy's, the backend's, the kernel threads', the load tool's and the
// rest; the rest above the limit marks the run disturbed.
func TestAccountSplitsTheCPU(t *testing.T) {
	base := t.TempDir()
	snap := func(name, cpu string, proxyU, backendU, kworkerS, otherU int64) window {
		p := fakeProc(t, filepath.Join(base, name), cpu, map[int]string{
			2:   statLine(2, "kthreadd", 0, 0, 0, 0),
			3:   statLine(3, "ksoftirqd/1", 2, 0, kworkerS, 0),
			100: statLine(100, "haproxy", 1, proxyU, 0, 1000),
			200: statLine(200, "nginx", 1, 0, 0, 500),
			201: statLine(201, "nginx: worker", 200, backendU, 0, 1500),
			300: statLine(300, "make", 1, otherU, 0, 10),
		})
		w, err := p.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	// Over 5 s: proxy 200 ticks, backend 150, kernel threads 10, load
	// tool 1 s (100 ticks), and 40 ticks of other processes.
	before := snap("a", "cpu  1000 0 1000 5000 0 0 0 0 0 0\n", 100, 100, 0, 0)
	after := snap("b", "cpu  1400 0 1100 5500 0 0 30 10 0 0\n", 300, 250, 10, 40)
	after.at = before.at.Add(5e9)
	var r Record
	account(&r, before, after, watched{proxy: []int{100}, backend: []int{200}}, 1.0, limits{maxOther: 0.10, maxSteal: 0.05})
	want := Record{ProxyCPU: 2, BackendCPU: 1.5, KernelCPU: 0.1, LoadCPU: 1, OtherCPU: 0.4, SoftirqCPU: 0.3, StealCPU: 0.1, WallS: 5}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"proxy", r.ProxyCPU, want.ProxyCPU}, {"backend", r.BackendCPU, want.BackendCPU},
		{"kernel", r.KernelCPU, want.KernelCPU}, {"load", r.LoadCPU, want.LoadCPU},
		{"other", r.OtherCPU, want.OtherCPU}, {"softirq", r.SoftirqCPU, want.SoftirqCPU},
		{"steal", r.StealCPU, want.StealCPU}, {"wall", r.WallS, want.WallS},
	} {
		if d := c.got - c.want; d > 1e-9 || d < -1e-9 {
			t.Errorf("%s CPU = %v s, want %v", c.name, c.got, c.want)
		}
	}
	// 0.4 s of 5 s is 8% of a core: under 10%. Steal 0.1 s: 2%.
	if r.Disturbed != "" {
		t.Errorf("disturbed = %q, want clean", r.Disturbed)
	}
	account(&r, before, after, watched{proxy: []int{100}, backend: []int{200}}, 1.0, limits{maxOther: 0.05, maxSteal: 0.01})
	if !strings.Contains(r.Disturbed, "other processes used 8% of a core") || !strings.Contains(r.Disturbed, "steal 2%") {
		t.Errorf("disturbed = %q, want other 8%% and steal 2%%", r.Disturbed)
	}
	if got := rssBytes(after.procs, tree(after.procs, []int{200})); got != 2000*int64(os.Getpagesize()) {
		t.Errorf("backend RSS = %d, want 2000 pages", got)
	}
}

func TestParsePIDs(t *testing.T) {
	got, err := parsePIDs(" 12, 34,,")
	if err != nil || len(got) != 2 || got[0] != 12 || got[1] != 34 {
		t.Fatalf("parsePIDs = %v, %v", got, err)
	}
	for _, bad := range []string{"x", "-1", "0", "1,2a"} {
		if _, err := parsePIDs(bad); err == nil {
			t.Errorf("parsePIDs(%q): no error", bad)
		}
	}
}
