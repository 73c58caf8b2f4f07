package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func records(t *testing.T, rs ...Record) map[string]Record {
	t.Helper()
	var b bytes.Buffer
	for _, r := range rs {
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(j, '\n'))
	}
	last, all, err := readRecords(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(rs) {
		t.Fatalf("read %d records, want %d", len(all), len(rs))
	}
	return last
}

func find(t *testing.T, rows []Row, fig, target string) Row {
	t.Helper()
	for _, r := range rows {
		if r.Figure == fig && r.Target == target {
			return r
		}
	}
	t.Fatalf("no row %q for %s", fig, target)
	return Row{}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9*math.Max(1, math.Abs(b)) }

func TestRowsAndRatios(t *testing.T) {
	recs := records(t,
		Record{Figure: "l4_small", Target: "direct", Seconds: 2, Requests: 100000, P50us: 100, P99us: 400},
		// A first, disturbed run of HAProxy is replaced by the second.
		Record{Figure: "l4_small", Target: "haproxy", Seconds: 2, Requests: 10, Disturbed: "x"},
		Record{Figure: "l4_small", Target: "haproxy", Seconds: 2, Requests: 50000, ProxyCPU: 1, P50us: 150, P99us: 500},
		Record{Figure: "l4_small", Target: "iwalb", Seconds: 2, Requests: 40000, ProxyCPU: 1, P50us: 200, P99us: 900, Disturbed: "other processes used 20% of a core"},
		Record{Figure: "l4_latency", Target: "direct", Seconds: 1, Requests: 1, P50us: 100, P99us: 300},
		Record{Figure: "l4_latency", Target: "haproxy", Seconds: 1, Requests: 1, P50us: 120, P99us: 280},
		Record{Figure: "l4_latency", Target: "iwalb", Seconds: 1, Requests: 1, P50us: 150, P99us: 390},
		Record{Figure: "l7_newconn", Target: "haproxy", Seconds: 1, Requests: 1000, ProxyCPU: 0.8},
		Record{Figure: "l7_newconn", Target: "iwalb", Seconds: 1, Requests: 3000, ProxyCPU: 0.9, NotComparable: "resumes"},
		Record{Figure: "l4_idle_3000", Target: "haproxy", Conns: 3000, RSSBefore: 10 << 20, RSSAfter: 10<<20 + 3000*3*1024, FDsBefore: 10, FDsAfter: 6010},
		Record{Figure: "l4_idle_3000", Target: "iwalb", Conns: 3000, RSSBefore: 10 << 20, RSSAfter: 10<<20 + 3000*27*1024, FDsBefore: 10, FDsAfter: 18010},
	)
	rows := buildRows(recs)

	r := find(t, rows, "small keep-alive requests", "haproxy")
	if !near(r.Value, 25000) || !near(r.VsDirect, 0.5) || !near(r.VsHAProxy, 1) || r.Note != "" {
		t.Errorf("HAProxy small requests: %+v", r)
	}
	r = find(t, rows, "small keep-alive requests", "iwalb")
	if !near(r.VsHAProxy, 0.8) || !near(r.VsDirect, 0.4) || !strings.Contains(r.Note, "disturbed: other processes used 20%") {
		t.Errorf("iwalb small requests: %+v", r)
	}
	r = find(t, rows, "proxy CPU per small request", "iwalb")
	if !near(r.Value, 25) || !near(r.VsHAProxy, 1.25) || r.VsDirect != 0 {
		t.Errorf("iwalb CPU per request: %+v (no ratio to direct: direct has no proxy)", r)
	}
	// Added latency: HAProxy's p99 is below direct's (noise): its figure
	// is negative and takes no ratio, nor does anything over it.
	r = find(t, rows, "one request at a time: p99 added to direct's", "haproxy")
	if !near(r.Value, -20) || r.VsHAProxy != 0 {
		t.Errorf("HAProxy added p99: %+v", r)
	}
	r = find(t, rows, "one request at a time: p99 added to direct's", "iwalb")
	if !near(r.Value, 90) || r.VsHAProxy != 0 {
		t.Errorf("iwalb added p99: %+v", r)
	}
	r = find(t, rows, "one request at a time: p50 added to direct's", "iwalb")
	if !near(r.Value, 50) || !near(r.VsHAProxy, 2.5) {
		t.Errorf("iwalb added p50: %+v", r)
	}
	// Not comparable: shown, with its reason, without a ratio.
	r = find(t, rows, "302s on new TLS connections (wrk)", "iwalb")
	if r.VsHAProxy != 0 || !strings.Contains(r.Note, "not comparable: resumes") {
		t.Errorf("iwalb wrk new connections: %+v", r)
	}
	r = find(t, rows, "RSS per idle relayed TLS connection, 3,000 held", "iwalb")
	if !near(r.Value, 27) || !near(r.VsHAProxy, 9) {
		t.Errorf("iwalb idle RSS: %+v", r)
	}
	r = find(t, rows, "file descriptors per idle connection, 3,000 held", "iwalb")
	if !near(r.Value, 6) {
		t.Errorf("iwalb descriptors: %+v", r)
	}

	gs := goals(rows)
	goal := func(prefix string) Goal {
		for _, g := range gs {
			if strings.HasPrefix(g.Goal, prefix) {
				return g
			}
		}
		t.Fatalf("no goal %q in %+v", prefix, gs)
		return Goal{}
	}
	if g := goal("L4 small keep-alive requests/s"); g.Met == nil || *g.Met || g.Short != "20% short" {
		t.Errorf("small requests goal: %+v", g)
	}
	if g := goal("L4 proxy CPU per small request"); g.Met == nil || *g.Met || g.Short != "25% over" {
		t.Errorf("CPU per request goal: %+v", g)
	}
	if g := goal("L4 p99 added"); g.Met == nil || !*g.Met {
		t.Errorf("added p99 goal (90 µs): %+v", g)
	}
	if g := goal("L4 RSS per idle"); g.Met == nil || *g.Met || g.Short != "238% over" {
		t.Errorf("idle RSS goal: %+v", g)
	}
	// 10,000 not measured: estimated from 3,000.
	want := float64(10<<20+3000*27*1024)/(1<<20) + 27*7000.0/1024
	if g := goal("L4 10,000 idle"); g.Met == nil || *g.Met || !strings.Contains(g.Measured, "≈ "+fmtValue(want)+" MiB, estimated from 3,000 held") {
		t.Errorf("10,000 goal: %+v, want ≈ %s MiB", g, fmtValue(want))
	}
	if g := goal("L7 302s/s on new TLS connections (no resumption)"); g.Met != nil || !strings.Contains(g.Measured, "not comparable") {
		t.Errorf("a not comparable goal must say so, not pass or fail: %+v", g)
	}
	if g := goal("L7 keep-alive"); g.Met != nil || g.Measured != "not measured" {
		t.Errorf("a figure not run: %+v", g)
	}

	tab := table(rows)
	if !strings.Contains(tab, "| L4 small keep-alive requests (/s) ↑") || !strings.Contains(tab, "| 25,000 ") || !strings.Contains(tab, "| 0.80× ") {
		t.Errorf("table:\n%s", tab)
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\nIntro.\n\n## Login throughput\n\nlogins\n\n" + sectionTitle + "\n\nold figures\n\n### Against\n\nold\n\n## Validate\n\nvalidate\n"
	sec := sectionTitle + "\n\nnew figures\n"
	got := replaceSection(doc, sec)
	want := "# Benchmarks\n\nIntro.\n\n## Login throughput\n\nlogins\n\n" + sectionTitle + "\n\nnew figures\n\n## Validate\n\nvalidate\n"
	if got != want {
		t.Fatalf("replaced:\n%s\nwant:\n%s", got, want)
	}
	if again := replaceSection(got, sec); again != got {
		t.Fatalf("a second run changed the file:\n%s", again)
	}
	// Last in the file, and absent.
	last := "# B\n\n" + sectionTitle + "\n\nold\n"
	if got := replaceSection(last, sec); got != "# B\n\n"+sec {
		t.Errorf("last section: %q", got)
	}
	if got := replaceSection("# B\n\n## Other\n\ntext\n", sec); got != "# B\n\n## Other\n\ntext\n\n"+sec {
		t.Errorf("appended: %q", got)
	}
	if got := replaceSection("", sec); got != sec {
		t.Errorf("new file: %q", got)
	}
}

func TestParseMeta(t *testing.T) {
	m, err := parseMeta(strings.NewReader("run: today, commit abc\n# comment\n\nnote: one: with a colon\nmachine: x\nnote: two\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.keys, ",") != "run,machine" || m.values["run"] != "today, commit abc" || strings.Join(m.notes, "|") != "one: with a colon|two" {
		t.Fatalf("parsed %+v", m)
	}
	if _, err := parseMeta(strings.NewReader("no colon\n")); err == nil {
		t.Fatal("a line without a colon: no error")
	}
}

func TestFormat(t *testing.T) {
	for v, want := range map[float64]string{1234567: "1,234,567", 1000: "1,000", 999.6: "1,000", 123.4: "123", 12.34: "12.3", 1.234: "1.23", -1500: "-1,500", -12.5: "-12.5"} {
		if got := fmtValue(v); got != want {
			t.Errorf("fmtValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(101-i)*time.Microsecond)
	}
	if p := percentileUS(d, 50); p != 50 {
		t.Errorf("p50 = %v", p)
	}
	if p := percentileUS(d, 99); p != 99 {
		t.Errorf("p99 = %v", p)
	}
	if p := percentileUS(nil, 99); p != 0 {
		t.Errorf("p99 of nothing = %v", p)
	}
}

// TestReportWritesFiles runs the report command on a small results file.
func TestReportWritesFiles(t *testing.T) {
	dir := t.TempDir()
	res := filepath.Join(dir, "r.jsonl")
	for _, r := range []Record{
		{Figure: "l7_keepalive", Target: "haproxy", Seconds: 1, Requests: 1000, ProxyCPU: 0.5},
		{Figure: "l7_keepalive", Target: "iwalb", Seconds: 1, Requests: 800, ProxyCPU: 0.5},
	} {
		if err := appendRecord(res, r); err != nil {
			t.Fatal(err)
		}
	}
	meta := filepath.Join(dir, "meta.txt")
	os.WriteFile(meta, []byte("run: test\nnote: a note\n"), 0o644)
	bm := filepath.Join(dir, "BENCHMARKS.md")
	os.WriteFile(bm, []byte("# Benchmarks\n\n## Other\n\nkept\n"), 0o644)
	if err := report([]string{"-results", res, "-meta", meta, "-out", filepath.Join(dir, "out"), "-stamp", "s", "-benchmarks", bm}, io.Discard); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(bm)
	for _, want := range []string{"## Other\n\nkept\n", sectionTitle, "- **run**: test", "| L7 keep-alive 302s (/s) ↑", "0.80×", "- a note"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("BENCHMARKS.md lacks %q:\n%s", want, b)
		}
	}
	var out struct {
		Records []Record
		Table   []Row
	}
	j, err := os.ReadFile(filepath.Join(dir, "out", "s.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &out); err != nil || len(out.Records) != 2 || len(out.Table) == 0 {
		t.Fatalf("s.json: %v, %d records, %d rows", err, len(out.Records), len(out.Table))
	}
	c, err := os.ReadFile(filepath.Join(dir, "out", "s.csv"))
	if err != nil || !strings.HasPrefix(string(c), "section,figure,unit,") || !strings.Contains(string(c), "L7,keep-alive 302s,/s,true,iwalb,800,0,0.8,") {
		t.Fatalf("s.csv: %v\n%s", err, c)
	}
}
