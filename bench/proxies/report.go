package main

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// sectionTitle is the heading of the section of BENCHMARKS.md the report
// writes; a run replaces the previous one and leaves the rest alone.
const sectionTitle = "## Data plane: iwalb against HAProxy and nginx"

// targetNames are the targets in table order, with their display names.
var targetNames = []struct{ key, name string }{
	{"direct", "direct"}, {"haproxy", "HAProxy"}, {"nginx", "nginx"}, {"iwalb", "iwalb"},
}

func displayName(key string) string {
	for _, t := range targetNames {
		if t.key == key {
			return t.name
		}
	}
	return key
}

// meta is what the script knows about the run: "key: value" lines, in
// order; "note" may repeat.
type meta struct {
	keys   []string
	values map[string]string
	notes  []string
}

func parseMeta(r io.Reader) (meta, error) {
	m := meta{values: map[string]string{}}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		k, v, ok := strings.Cut(s, ":")
		if !ok {
			return m, fmt.Errorf("line %d: no \"key: value\"", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if k == "note" {
			m.notes = append(m.notes, v)
			continue
		}
		if _, dup := m.values[k]; !dup {
			m.keys = append(m.keys, k)
		}
		m.values[k] = v
	}
	return m, sc.Err()
}

// readRecords reads a results file and keeps the last record of each
// figure and target.
func readRecords(r io.Reader) (map[string]Record, []Record, error) {
	last := map[string]Record{}
	var all []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line, err)
		}
		last[rec.Figure+"/"+rec.Target] = rec
		all = append(all, rec)
	}
	return last, all, sc.Err()
}

// figure is one line of the report's table per target.
type figure struct {
	section string
	name    string
	unit    string
	higher  bool   // higher is better
	record  string // Record.Figure it reads
	targets []string
	// value is the figure of r; ok false when r cannot give it (no
	// requests). base is direct's record, for figures relative to it.
	value func(r, direct Record) (v float64, ok bool)
}

// Row is one cell of the table: a figure for a target and its ratios.
type Row struct {
	Section   string  `json:"section"`
	Figure    string  `json:"figure"`
	Unit      string  `json:"unit"`
	Higher    bool    `json:"higher_is_better"`
	Target    string  `json:"target"`
	Value     float64 `json:"value"`
	VsDirect  float64 `json:"vs_direct,omitempty"`
	VsHAProxy float64 `json:"vs_haproxy,omitempty"`
	Note      string  `json:"note,omitempty"`
}

func perOp(cpu float64, n int64) (float64, bool) {
	if n <= 0 {
		return 0, false
	}
	return 1e6 * cpu / float64(n), true
}

func rate(r Record) (float64, bool) {
	if r.Seconds <= 0 || r.Requests <= 0 {
		return 0, false
	}
	return float64(r.Requests) / r.Seconds, true
}

func p50(r, _ Record) (float64, bool) { return r.P50us, r.P50us > 0 }
func p99(r, _ Record) (float64, bool) { return r.P99us, r.P99us > 0 }
func rateOf(r, _ Record) (float64, bool) {
	return rate(r)
}
func proxyCPUPerOp(r, _ Record) (float64, bool) { return perOp(r.ProxyCPU, r.Requests) }

// figures lists the table's lines; l4_idle_N lines are added for each N
// found in the results.
func figures(idle []int) []figure {
	l4 := []string{"direct", "haproxy", "nginx", "iwalb"}
	proxies := []string{"haproxy", "nginx", "iwalb"}
	fs := []figure{
		{"L4", "new TLS connections (full handshake, tiny request)", "/s", true, "l4_newconn", l4, rateOf},
		{"L4", "proxy CPU per new connection", "µs", false, "l4_newconn", proxies, proxyCPUPerOp},
		{"L4", "new TLS connections, wrk with Connection: close", "/s", true, "l4_newconn_wrk", l4, rateOf},
		{"L4", "proxy CPU per new connection, wrk", "µs", false, "l4_newconn_wrk", proxies, proxyCPUPerOp},
		{"L4", "1 MiB keep-alive throughput", "MB/s", true, "l4_bulk", l4, func(r, _ Record) (float64, bool) {
			return float64(r.Bytes) / r.Seconds / 1e6, r.Seconds > 0 && r.Bytes > 0
		}},
		{"L4", "proxy CPU per MiB relayed", "µs", false, "l4_bulk", proxies, func(r, _ Record) (float64, bool) {
			return 1e6 * r.ProxyCPU / (float64(r.Bytes) / (1 << 20)), r.Bytes > 0
		}},
		{"L4", "small keep-alive requests", "/s", true, "l4_small", l4, rateOf},
		{"L4", "small keep-alive p50", "µs", false, "l4_small", l4, p50},
		{"L4", "small keep-alive p99", "µs", false, "l4_small", l4, p99},
		{"L4", "proxy CPU per small request", "µs", false, "l4_small", proxies, proxyCPUPerOp},
		{"L4", "one request at a time: p50", "µs", false, "l4_latency", l4, p50},
		{"L4", "one request at a time: p99", "µs", false, "l4_latency", l4, p99},
		{"L4", "one request at a time: p50 added to direct's", "µs", false, "l4_latency", proxies, func(r, d Record) (float64, bool) {
			return r.P50us - d.P50us, r.P50us > 0 && d.P50us > 0
		}},
		{"L4", "one request at a time: p99 added to direct's", "µs", false, "l4_latency", proxies, func(r, d Record) (float64, bool) {
			return r.P99us - d.P99us, r.P99us > 0 && d.P99us > 0
		}},
	}
	for _, n := range idle {
		rec := "l4_idle_" + strconv.Itoa(n)
		fs = append(fs,
			figure{"L4", fmt.Sprintf("RSS per idle relayed TLS connection, %s held", thousands(float64(n))), "KiB", false, rec, proxies, func(r, _ Record) (float64, bool) {
				return float64(r.RSSAfter-r.RSSBefore) / float64(r.Conns) / 1024, r.Conns > 0
			}},
			figure{"L4", fmt.Sprintf("proxy RSS with %s idle connections held", thousands(float64(n))), "MiB", false, rec, proxies, func(r, _ Record) (float64, bool) {
				return float64(r.RSSAfter) / (1 << 20), r.Conns > 0
			}},
			figure{"L4", fmt.Sprintf("file descriptors per idle connection, %s held", thousands(float64(n))), "", false, rec, proxies, func(r, _ Record) (float64, bool) {
				return float64(r.FDsAfter-r.FDsBefore) / float64(r.Conns), r.Conns > 0 && r.FDsAfter > 0
			}},
		)
	}
	fs = append(fs,
		figure{"L7", "keep-alive 302s", "/s", true, "l7_keepalive", proxies, rateOf},
		figure{"L7", "keep-alive 302 p99", "µs", false, "l7_keepalive", proxies, p99},
		figure{"L7", "proxy CPU per keep-alive 302", "µs", false, "l7_keepalive", proxies, proxyCPUPerOp},
		figure{"L7", "302s on new TLS connections (wrk)", "/s", true, "l7_newconn", proxies, rateOf},
		figure{"L7", "proxy CPU per 302 on a new connection (wrk)", "µs", false, "l7_newconn", proxies, proxyCPUPerOp},
		figure{"L7", "302s on new TLS connections, client never resumes", "/s", true, "l7_newconn_noresume", proxies, rateOf},
		figure{"L7", "proxy CPU per 302 on a new connection, never resumed", "µs", false, "l7_newconn_noresume", proxies, proxyCPUPerOp},
	)
	return fs
}

// idleCounts are the N of the l4_idle_N figures in recs, in ascending order.
func idleCounts(recs map[string]Record) []int {
	seen := map[int]bool{}
	for _, r := range recs {
		if n, ok := strings.CutPrefix(r.Figure, "l4_idle_"); ok {
			if v, err := strconv.Atoi(n); err == nil && !seen[v] {
				seen[v] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// buildRows computes every figure for every target that has a record.
func buildRows(recs map[string]Record) []Row {
	var rows []Row
	for _, f := range figures(idleCounts(recs)) {
		direct, hasDirect := recs[f.record+"/direct"]
		value := func(target string) (float64, Record, bool) {
			r, ok := recs[f.record+"/"+target]
			if !ok {
				return 0, r, false
			}
			v, ok := f.value(r, direct)
			return v, r, ok
		}
		hv, hrec, hok := value("haproxy")
		dv, _, dok := value("direct")
		for _, t := range f.targets {
			v, r, ok := value(t)
			if !ok {
				continue
			}
			row := Row{Section: f.section, Figure: f.name, Unit: f.unit, Higher: f.higher, Target: t, Value: v}
			// Ratios of positive figures only: an added latency can be
			// negative, within the noise.
			if hasDirect && dok && slices.Contains(f.targets, "direct") && dv > 0 && v > 0 {
				row.VsDirect = v / dv
			}
			if hok && hv > 0 && v > 0 && hrec.NotComparable == "" && r.NotComparable == "" {
				row.VsHAProxy = v / hv
			}
			row.Note = noteOf(r)
			rows = append(rows, row)
		}
	}
	return rows
}

// saturated is the share of its core above which the load generator, not
// the target, bounds a run's rate.
const saturated = 0.95

func noteOf(r Record) string {
	var n []string
	if r.NotComparable != "" {
		n = append(n, "not comparable: "+r.NotComparable)
	}
	if r.Disturbed != "" {
		n = append(n, "disturbed: "+r.Disturbed)
	}
	if r.WallS > 0 && r.LoadCPU/r.WallS > saturated {
		n = append(n, "client-bound: the load generator used its whole core")
	}
	if r.Errors > 0 {
		n = append(n, fmt.Sprintf("%d errors (%s)", r.Errors, r.ErrorsBy))
	}
	return strings.Join(n, "; ")
}

// Goal is one of issue 10's targets for iwalb, checked against the run.
type Goal struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      *bool  `json:"met,omitempty"` // nil: not measured
	Short    string `json:"short_by,omitempty"`
}

// goals checks issue 10's targets. Ratios are iwalb's over HAProxy's.
func goals(rows []Row) []Goal {
	get := func(fig, target string) (Row, bool) {
		for _, r := range rows {
			if r.Figure == fig && r.Target == target {
				return r, true
			}
		}
		return Row{}, false
	}
	// ratio: iwalb's figure against HAProxy's, at most (lower) or at
	// least (higher) want.
	ratio := func(goal, fig string, want float64) Goal {
		g := Goal{Goal: goal}
		r, ok := get(fig, "iwalb")
		if !ok || r.VsHAProxy == 0 {
			g.Measured = "not measured"
			if ok && r.Note != "" {
				g.Measured += " (" + r.Note + ")"
			}
			return g
		}
		met := r.VsHAProxy >= want
		if !r.Higher {
			met = r.VsHAProxy <= want
		}
		g.Met = &met
		g.Measured = fmt.Sprintf("%.2f× HAProxy (%s %s against %s)", r.VsHAProxy, fmtValue(r.Value), r.Unit, fmtValue(r.Value/r.VsHAProxy))
		if !met {
			if r.Higher {
				g.Short = fmt.Sprintf("%.0f%% short", 100*(1-r.VsHAProxy/want))
			} else {
				g.Short = fmt.Sprintf("%.0f%% over", 100*(r.VsHAProxy/want-1))
			}
		}
		return g
	}
	// absolute: iwalb's figure at most limit.
	absolute := func(goal, fig string, limit float64) Goal {
		g := Goal{Goal: goal}
		r, ok := get(fig, "iwalb")
		if !ok {
			g.Measured = "not measured"
			return g
		}
		met := r.Value <= limit
		g.Met = &met
		g.Measured = fmt.Sprintf("%s %s", fmtValue(r.Value), r.Unit)
		if !met {
			g.Short = fmt.Sprintf("%.0f%% over", 100*(r.Value/limit-1))
		}
		return g
	}
	gs := []Goal{
		ratio("L4 proxy CPU per new connection ≤ 1.0× HAProxy", "proxy CPU per new connection", 1),
		ratio("L4 small keep-alive requests/s ≥ 1.0× HAProxy", "small keep-alive requests", 1),
		ratio("L4 proxy CPU per small request ≤ 1.0× HAProxy", "proxy CPU per small request", 1),
		ratio("L4 1 MiB throughput ≥ 1.0× HAProxy", "1 MiB keep-alive throughput", 1),
	}
	// Idle connections: each N measured, and 10,000 held, measured or
	// else estimated from the largest N.
	var largest Row
	largestN := 0
	for _, r := range rows {
		n, ok := heldCount(r.Figure, "RSS per idle relayed TLS connection, ")
		if r.Target != "iwalb" || !ok {
			continue
		}
		gs = append(gs, absolute("L4 "+r.Figure+" ≤ 8 KiB", r.Figure, 8))
		if n > largestN {
			largest, largestN = r, n
		}
	}
	const tenK = "proxy RSS with 10,000 idle connections held"
	if _, ok := get(tenK, "iwalb"); ok || largestN == 0 {
		gs = append(gs, absolute("L4 10,000 idle connections held under 100 MiB", tenK, 100))
	} else if total, ok := get("proxy RSS with "+thousands(float64(largestN))+" idle connections held", "iwalb"); ok {
		est := total.Value + largest.Value*float64(10000-largestN)/1024
		met := est <= 100
		g := Goal{Goal: "L4 10,000 idle connections held under 100 MiB", Met: &met,
			Measured: fmt.Sprintf("≈ %s MiB, estimated from %s held (%s KiB each)", fmtValue(est), thousands(float64(largestN)), fmtValue(largest.Value))}
		if !met {
			g.Short = fmt.Sprintf("%.0f%% over", 100*(est/100-1))
		}
		gs = append(gs, g)
	}
	gs = append(gs,
		ratio("L7 keep-alive 302s/s ≥ 1.0× HAProxy", "keep-alive 302s", 1),
		ratio("L7 302s/s on new TLS connections (no resumption) ≥ 1.0× HAProxy (wrk)", "302s on new TLS connections (wrk)", 1),
		ratio("L7 302s/s on new TLS connections, client never resumes ≥ 1.0× HAProxy", "302s on new TLS connections, client never resumes", 1),
		absolute("L4 p99 added < 100 µs (one request at a time)", "one request at a time: p99 added to direct's", 100),
	)
	return gs
}

// heldCount reads N from a figure named prefix+"N held".
func heldCount(fig, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(fig, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.ReplaceAll(strings.TrimSuffix(rest, " held"), ",", ""))
	return n, err == nil
}

// fmtValue prints v with about three significant digits, and thousands
// separators from 1,000 on.
func fmtValue(v float64) string {
	a := math.Abs(v)
	switch {
	case math.Round(a) >= 1000:
		return thousands(v)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func thousands(v float64) string {
	s := strconv.FormatFloat(math.Abs(math.Round(v)), 'f', 0, 64)
	var b strings.Builder
	if v < 0 && s != "0" {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtRatio(r float64) string {
	if r == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f×", r)
}

// table renders rows as a Markdown table, padded so that it also reads in
// a terminal.
func table(rows []Row) string {
	cells := [][]string{{"figure", "target", "value", "÷ direct", "÷ HAProxy", "note"}}
	prev := ""
	for _, r := range rows {
		fig := ""
		if key := r.Section + " " + r.Figure; key != prev {
			arrow := "↓"
			if r.Higher {
				arrow = "↑"
			}
			unit := ""
			if r.Unit != "" {
				unit = " (" + r.Unit + ")"
			}
			fig = fmt.Sprintf("%s %s%s %s", r.Section, r.Figure, unit, arrow)
			prev = key
		}
		cells = append(cells, []string{fig, displayName(r.Target), fmtValue(r.Value), fmtRatio(r.VsDirect), fmtRatio(r.VsHAProxy), r.Note})
	}
	return renderTable(cells)
}

func goalTable(gs []Goal) string {
	cells := [][]string{{"target (issue 10)", "iwalb measured", "met", "by how much"}}
	for _, g := range gs {
		met := "not measured"
		if g.Met != nil {
			met = map[bool]string{true: "yes", false: "no"}[*g.Met]
		}
		cells = append(cells, []string{g.Goal, g.Measured, met, g.Short})
	}
	return renderTable(cells)
}

func renderTable(cells [][]string) string {
	width := make([]int, len(cells[0]))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	line := func(row []string) {
		b.WriteString("|")
		for i, c := range row {
			fmt.Fprintf(&b, " %s%s |", c, strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)))
		}
		b.WriteString("\n")
	}
	line(cells[0])
	sep := make([]string, len(width))
	for i, w := range width {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, row := range cells[1:] {
		line(row)
	}
	return b.String()
}

// section is the Markdown section of BENCHMARKS.md for the run.
func section(m meta, rows []Row, gs []Goal) string {
	var b strings.Builder
	b.WriteString(sectionTitle + "\n\n")
	b.WriteString("Written by [`bench/proxies/run`](bench/proxies/run), which replaces this section with each run and\n" +
		"leaves the rest of the file alone; [bench/proxies/README.md](bench/proxies/README.md) says what each\n" +
		"figure is and how it is measured. Each target relays to (or, for L7, answers instead of) one nginx TLS\n" +
		"backend on loopback; the load generator runs on core 0, the proxy and the backend on core 1; TLS\n" +
		"resumption is off everywhere it can be turned off. Ratios are the figure over direct's and over\n" +
		"HAProxy's, from one run on one machine: ↑ higher is better, ↓ lower is better.\n\n")
	for _, k := range m.keys {
		fmt.Fprintf(&b, "- **%s**: %s\n", k, m.values[k])
	}
	b.WriteString("\n")
	b.WriteString(table(rows))
	b.WriteString("\n### Against the issue's targets\n\n")
	b.WriteString(goalTable(gs))
	var notes []string
	notes = append(notes, m.notes...)
	for _, r := range rows {
		if strings.Contains(r.Note, "disturbed") {
			notes = append(notes, "Rows marked disturbed ran while other processes used more than 10% of a core (or the hypervisor stole more than 5%): their rates are low, their CPU per operation still holds.")
			break
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n### Notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\nReproduce (as root): `bench/proxies/run`; raw records in `bench/proxies/results/` (not committed).\n")
	return b.String()
}

// replaceSection puts sec in place of doc's section titled sectionTitle
// (up to the next "## " heading), or appends it.
func replaceSection(doc, sec string) string {
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if start < 0 {
			if strings.HasPrefix(t, sectionTitle) {
				start = i
			}
			continue
		}
		if strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	sec = strings.TrimRight(sec, "\n") + "\n"
	if start < 0 {
		doc = strings.TrimRight(doc, "\n")
		if doc == "" {
			return sec
		}
		return doc + "\n\n" + sec
	}
	before := strings.Join(lines[:start], "")
	after := strings.Join(lines[end:], "")
	if after != "" {
		sec += "\n"
	}
	return before + sec + after
}

// runReport prints the table and writes the JSON, the CSV and the section
// of BENCHMARKS.md.
func runReport(args []string) error { return report(args, os.Stdout) }

func report(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	results := fs.String("results", "", "JSON-lines records (required)")
	metaFile := fs.String("meta", "", "\"key: value\" lines about the run")
	outDir := fs.String("out", "", "folder for STAMP.json and STAMP.csv")
	stamp := fs.String("stamp", "latest", "file name stem in -out")
	benchmarks := fs.String("benchmarks", "", "BENCHMARKS.md to write the section into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *results == "" {
		return errors.New("-results is required")
	}
	f, err := os.Open(*results)
	if err != nil {
		return err
	}
	recs, all, err := readRecords(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *results, err)
	}
	m := meta{values: map[string]string{}}
	if *metaFile != "" {
		mf, err := os.Open(*metaFile)
		if err != nil {
			return err
		}
		m, err = parseMeta(mf)
		mf.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *metaFile, err)
		}
	}
	rows := buildRows(recs)
	gs := goals(rows)
	sec := section(m, rows, gs)
	fmt.Fprintln(stdout, sec)
	if *outDir != "" {
		if err := writeOutputs(*outDir, *stamp, m, all, rows, gs); err != nil {
			return err
		}
	}
	if *benchmarks != "" {
		old, err := os.ReadFile(*benchmarks)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := os.WriteFile(*benchmarks, []byte(replaceSection(string(old), sec)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeOutputs(dir, stamp string, m meta, all []Record, rows []Row, gs []Goal) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	info := map[string]any{}
	for k, v := range m.values {
		info[k] = v
	}
	info["notes"] = m.notes
	j, err := json.MarshalIndent(map[string]any{"run": info, "records": all, "table": rows, "goals": gs}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, stamp+".json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"section", "figure", "unit", "higher_is_better", "target", "value", "vs_direct", "vs_haproxy", "note"})
	for _, r := range rows {
		w.Write([]string{r.Section, r.Figure, r.Unit, strconv.FormatBool(r.Higher), r.Target,
			strconv.FormatFloat(r.Value, 'g', 6, 64), strconv.FormatFloat(r.VsDirect, 'g', 4, 64),
			strconv.FormatFloat(r.VsHAProxy, 'g', 4, 64), r.Note})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, stamp+".csv"), b.Bytes(), 0o644)
}
