package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Series of the node's /metrics page the report reads.
const (
	loginsMetric   = "iwalb_authnode_logins_total"                // {outcome, reason, mechanism}
	ldapSecondsFam = "iwalb_authnode_ldap_seconds"                // histogram {op, result}
	kerberosFam    = "iwalb_authnode_kerberos_validation_seconds" // histogram
)

// Bounds of one /metrics page: a node's page is some tens of KiB.
const (
	maxMetricsBytes = 4 << 20
	maxMetricsLine  = 64 << 10
)

// series is one sample of a Prometheus text exposition.
type series struct {
	name   string
	labels map[string]string
	value  float64
}

// snapshot is a /metrics page, by series key (name and sorted labels).
type snapshot map[string]series

// seriesKey is name{a="x",b="y"} with the labels sorted by name.
func seriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	names := make([]string, 0, len(labels))
	for k := range labels {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, k := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

var metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*`)

// parseMetrics reads a Prometheus text exposition (format 0.0.4): one
// sample a line, "name{label="value",...} value [timestamp]"; comments and
// blank lines are skipped. It reads at most maxMetricsBytes, in lines of at
// most maxMetricsLine, each parsed in one pass.
func parseMetrics(r io.Reader) (snapshot, error) {
	lr := &io.LimitedReader{R: r, N: maxMetricsBytes + 1}
	sc := bufio.NewScanner(lr)
	sc.Buffer(make([]byte, 0, 4096), maxMetricsLine)
	snap := make(snapshot)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil && lr.N <= 0 {
			break // a line cut at the size bound
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		snap[seriesKey(s.name, s.labels)] = s
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line longer than %d bytes", maxMetricsLine)
		}
		return nil, err
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("page larger than %d bytes", maxMetricsBytes)
	}
	return snap, nil
}

func parseSample(line string) (series, error) {
	s := series{name: metricName.FindString(line)}
	if s.name == "" {
		return s, fmt.Errorf("no metric name in %.60q", line)
	}
	rest := line[len(s.name):]
	if strings.HasPrefix(rest, "{") {
		var err error
		if s.labels, rest, err = parseLabels(rest[1:]); err != nil {
			return s, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	fields := strings.Fields(rest)
	if len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("%s: want a value and an optional timestamp after the name, got %.60q", s.name, rest)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("%s: value %.40q is not a number", s.name, fields[0])
	}
	s.value = v
	return s, nil
}

// parseLabels parses `a="x",b="y"}` (after the opening brace) and returns
// the labels and what follows the closing brace.
func parseLabels(in string) (map[string]string, string, error) {
	labels := make(map[string]string)
	i := 0
	for {
		for i < len(in) && (in[i] == ' ' || in[i] == ',') {
			i++
		}
		if i < len(in) && in[i] == '}' {
			return labels, in[i+1:], nil
		}
		start := i
		for i < len(in) && (in[i] == '_' || in[i] >= 'a' && in[i] <= 'z' || in[i] >= 'A' && in[i] <= 'Z' || i > start && in[i] >= '0' && in[i] <= '9') {
			i++
		}
		name := in[start:i]
		for i < len(in) && in[i] == ' ' {
			i++
		}
		if name == "" || i >= len(in) || in[i] != '=' {
			return nil, "", fmt.Errorf("malformed label at byte %d", i)
		}
		for i++; i < len(in) && in[i] == ' '; i++ {
		}
		if i >= len(in) || in[i] != '"' {
			return nil, "", fmt.Errorf("label %s: value not in quotes", name)
		}
		i++
		var v strings.Builder
		for {
			if i >= len(in) {
				return nil, "", fmt.Errorf("unterminated value of label %s", name)
			}
			c := in[i]
			i++
			if c == '"' {
				break
			}
			if c == '\\' && i < len(in) {
				switch in[i] {
				case 'n':
					c = '\n'
				default: // \\ and \"
					c = in[i]
				}
				i++
			}
			v.WriteByte(c)
		}
		labels[name] = v.String()
	}
}

// fetchMetrics reads the node's /metrics page.
func fetchMetrics(ctx context.Context, hc *http.Client, url string) (snapshot, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	snap, err := parseMetrics(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return snap, nil
}

// delta returns after minus before, series by series: what the counters
// counted in between. A series absent before counts from zero.
func delta(before, after snapshot) snapshot {
	d := make(snapshot, len(after))
	for k, s := range after {
		s.value -= before[k].value
		d[k] = s
	}
	return d
}

// sum adds the series called name whose labels satisfy match (nil: all).
// found is false when there is no such series.
func (s snapshot) sum(name string, match func(map[string]string) bool) (total float64, found bool) {
	for _, x := range s {
		if x.name == name && (match == nil || match(x.labels)) {
			total += x.value
			found = true
		}
	}
	return total, found
}

// mean is a histogram's or summary's mean: sum over count, NaN when it
// observed nothing.
func (s snapshot) mean(family string, match func(map[string]string) bool) float64 {
	sum, _ := s.sum(family+"_sum", match)
	n, _ := s.sum(family+"_count", match)
	if n <= 0 {
		return math.NaN()
	}
	return sum / n
}

func (s snapshot) has(name string) bool {
	_, ok := s.sum(name, nil)
	return ok
}

// ldapSource says where the LDAP operations per login come from.
type ldapSource struct {
	// Name is the series read: a counter (summed over its labels and
	// divided by the logins) or, when Histogram, a family observed once per
	// login with its count of operations (Name_sum over Name_count).
	Name      string `json:"name"`
	Histogram bool   `json:"histogram"`
	// Note tells what the figure counts.
	Note string `json:"note"`
}

// perLoginMetric matches the names a dedicated per-login LDAP metric may
// have: iwalb_authnode_ldap_operations_per_login,
// iwalb_authnode_login_ldap_searches_total and the like.
var perLoginMetric = regexp.MustCompile(`ldap.*(per_login|operations|searches)|(operations|searches).*ldap`)

// pickLDAPSource chooses the series that counts LDAP operations: forced
// when given, else a dedicated per-login metric (a histogram first, then a
// counter), else the count of iwalb_authnode_ldap_seconds, which times
// each directory call (one call may be several searches).
func pickLDAPSource(s snapshot, forced string) (ldapSource, error) {
	if forced != "" {
		switch {
		case s.has(forced+"_sum") && s.has(forced+"_count"):
			return ldapSource{Name: forced, Histogram: true, Note: "given with -ldap-metric: mean of _sum over _count"}, nil
		case s.has(forced):
			return ldapSource{Name: forced, Note: "given with -ldap-metric: counter summed over its labels, per login"}, nil
		}
		return ldapSource{}, fmt.Errorf("-ldap-metric %s: no such series (nor %s_sum and _count) on the node's /metrics page", forced, forced)
	}
	var hists, counters []string
	for _, x := range s {
		n := x.name
		if !perLoginMetric.MatchString(n) || strings.Contains(n, "seconds") || strings.HasSuffix(n, "_bucket") {
			continue
		}
		switch {
		case strings.HasSuffix(n, "_sum") && s.has(strings.TrimSuffix(n, "_sum")+"_count"):
			hists = append(hists, strings.TrimSuffix(n, "_sum"))
		case strings.HasSuffix(n, "_total"):
			counters = append(counters, n)
		}
	}
	// A name saying "per_login" first, then by name, so that the choice
	// does not depend on map order.
	byPreference := func(a, b string) int {
		pa, pb := strings.Contains(a, "per_login"), strings.Contains(b, "per_login")
		if pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	}
	slices.SortFunc(hists, byPreference)
	slices.SortFunc(counters, byPreference)
	switch {
	case len(hists) > 0:
		return ldapSource{Name: hists[0], Histogram: true, Note: "per-login LDAP metric: mean of _sum over _count"}, nil
	case len(counters) > 0:
		return ldapSource{Name: counters[0], Note: "LDAP operations counter, summed over its labels, per login"}, nil
	case s.has(ldapSecondsFam + "_count"):
		return ldapSource{Name: ldapSecondsFam + "_count",
			Note: "directory calls timed by ldap_seconds, all ops; one call may be several LDAP searches"}, nil
	}
	return ldapSource{}, errors.New("no LDAP metric on the node's /metrics page")
}

// ldapPerLogin returns the LDAP operations per login in the window d (a
// delta), with the per-label-set break-down; logins divides a counter.
func ldapPerLogin(d snapshot, src ldapSource, logins float64) (total float64, byLabels map[string]float64) {
	byLabels = make(map[string]float64)
	if src.Histogram {
		for _, x := range d {
			if x.name == src.Name+"_sum" {
				byLabels[labelText(x.labels)] = d.mean(src.Name, sameLabels(x.labels))
			}
		}
		return d.mean(src.Name, nil), byLabels
	}
	if logins <= 0 {
		return math.NaN(), byLabels
	}
	for _, x := range d {
		if x.name == src.Name && x.value != 0 {
			byLabels[labelText(x.labels)] += x.value / logins
			total += x.value / logins
		}
	}
	return total, byLabels
}

func sameLabels(want map[string]string) func(map[string]string) bool {
	return func(l map[string]string) bool {
		if len(l) != len(want) {
			return false
		}
		for k, v := range want {
			if l[k] != v {
				return false
			}
		}
		return true
	}
}

// labelText is a label set as "op=lookup,result=ok" (sorted), or "-".
func labelText(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(l))
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
