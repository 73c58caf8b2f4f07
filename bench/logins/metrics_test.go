package main

import (
	"math"
	"strings"
	"testing"
)

// page is a /metrics page as the node writes it, shortened.
const page = `# HELP iwalb_authnode_logins_total Login attempts at the SSO endpoint by outcome (success, failure) and reason.
# TYPE iwalb_authnode_logins_total counter
iwalb_authnode_logins_total{outcome="failure",reason="ldap_unavailable"} 12
iwalb_authnode_logins_total{outcome="success",reason="ok"} 100
# TYPE iwalb_authnode_ldap_seconds histogram
iwalb_authnode_ldap_seconds_bucket{op="lookup",result="ok",le="0.0005"} 0
iwalb_authnode_ldap_seconds_bucket{op="lookup",result="ok",le="+Inf"} 100
iwalb_authnode_ldap_seconds_sum{op="lookup",result="ok"} 2.5
iwalb_authnode_ldap_seconds_count{op="lookup",result="ok"} 100
iwalb_authnode_ldap_seconds_sum{op="time",result="ok"} 0.01
iwalb_authnode_ldap_seconds_count{op="time",result="ok"} 2
iwalb_authnode_kerberos_validation_seconds_sum 0.04
iwalb_authnode_kerberos_validation_seconds_count 112
odd_labels{ a = "x\"y" , b="back\\slash",c="new\nline",} NaN 1700000000000
go_gc_duration_seconds{quantile="1"} +Inf
`

func TestParseMetrics(t *testing.T) {
	s, err := parseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := s.sum(loginsMetric, nil); !ok || n != 112 {
		t.Fatalf("logins = %v, %v; want 112", n, ok)
	}
	fail, _ := s.sum(loginsMetric, func(l map[string]string) bool { return l["outcome"] == "failure" })
	if fail != 12 {
		t.Fatalf("failed logins = %v, want 12", fail)
	}
	if m := s.mean(ldapSecondsFam, func(l map[string]string) bool { return l["op"] == "lookup" }); m != 0.025 {
		t.Fatalf("mean lookup = %v, want 0.025", m)
	}
	odd := s[seriesKey("odd_labels", map[string]string{"a": `x"y`, "b": `back\slash`, "c": "new\nline"})]
	if odd.name != "odd_labels" || !math.IsNaN(odd.value) {
		t.Fatalf("escaped labels and a timestamp: got %+v", odd)
	}
	if v := s[`go_gc_duration_seconds{quantile="1"}`].value; !math.IsInf(v, 1) {
		t.Fatalf("+Inf parsed as %v", v)
	}
	if !math.IsNaN(s.mean("absent", nil)) {
		t.Fatal("mean of an absent family is not NaN")
	}
}

func TestParseMetricsRefusesMalformed(t *testing.T) {
	for _, bad := range []string{
		`{a="b"} 1`,
		`x{a="b} 1`,
		`x{a=b} 1`,
		`x{="b"} 1`,
		`x{a="b"}`,
		`x 1 2 3`,
		`x one`,
		"x " + strings.Repeat("1", maxMetricsLine+1),
	} {
		if _, err := parseMetrics(strings.NewReader(bad + "\n")); err == nil {
			t.Errorf("parseMetrics(%.40q) gave no error", bad)
		}
	}
	// A page past the size bound is refused, not read on without end.
	line := `x{a="` + strings.Repeat("a", 1000) + "\"} 1\n"
	big := strings.Repeat(line, maxMetricsBytes/len(line)+2)
	if _, err := parseMetrics(strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("oversized page: %v", err)
	}
}

func parsed(t *testing.T, text string) snapshot {
	t.Helper()
	s, err := parseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLDAPPerLoginFallsBackToLDAPSeconds(t *testing.T) {
	before := parsed(t, page)
	after := parsed(t, strings.NewReplacer(
		`reason="ok"} 100`, `reason="ok"} 300`,
		`result="ok"} 100`, `result="ok"} 300`,
		`op="time",result="ok"} 2`, `op="time",result="ok"} 4`,
	).Replace(page))
	src, err := pickLDAPSource(after, "")
	if err != nil || src.Name != "iwalb_authnode_ldap_seconds_count" || src.Histogram {
		t.Fatalf("source = %+v, %v", src, err)
	}
	total, by := ldapPerLogin(delta(before, after), src, 200)
	if !near(total, 1.01) || by["op=lookup,result=ok"] != 1 || !near(by["op=time,result=ok"], 0.01) {
		t.Fatalf("per login %v, by labels %v; want 1.01 = 1 lookup + 0.01 time", total, by)
	}
}

func TestLDAPPerLoginPrefersADedicatedMetric(t *testing.T) {
	hist := page + `iwalb_authnode_ldap_operations_per_login_sum{outcome="success"} 90
iwalb_authnode_ldap_operations_per_login_count{outcome="success"} 90
iwalb_authnode_ldap_operations_per_login_sum{outcome="failure"} 20
iwalb_authnode_ldap_operations_per_login_count{outcome="failure"} 10
iwalb_authnode_ldap_operations_total{op="search"} 5
`
	src, err := pickLDAPSource(parsed(t, hist), "")
	if err != nil || src.Name != "iwalb_authnode_ldap_operations_per_login" || !src.Histogram {
		t.Fatalf("source = %+v, %v; want the per-login histogram", src, err)
	}
	total, by := ldapPerLogin(parsed(t, hist), src, 1)
	if !near(total, 1.1) || by["outcome=success"] != 1 || by["outcome=failure"] != 2 {
		t.Fatalf("per login %v, by %v", total, by)
	}

	counter := page + `iwalb_authnode_ldap_searches_total{op="user"} 100
iwalb_authnode_ldap_searches_total{op="sids"} 7
`
	src, err = pickLDAPSource(parsed(t, counter), "")
	if err != nil || src.Name != "iwalb_authnode_ldap_searches_total" || src.Histogram {
		t.Fatalf("source = %+v, %v; want the searches counter", src, err)
	}
	if total, _ := ldapPerLogin(parsed(t, counter), src, 100); !near(total, 1.07) {
		t.Fatalf("searches per login %v, want 1.07", total)
	}
}

func TestLDAPSourceForcedAndMissing(t *testing.T) {
	s := parsed(t, page)
	src, err := pickLDAPSource(s, "iwalb_authnode_ldap_seconds")
	if err != nil || !src.Histogram {
		t.Fatalf("forced histogram family: %+v, %v", src, err)
	}
	if _, err := pickLDAPSource(s, "no_such_metric"); err == nil || !strings.Contains(err.Error(), "no_such_metric") {
		t.Fatalf("forced absent metric: %v", err)
	}
	if _, err := pickLDAPSource(parsed(t, "up 1\n"), ""); err == nil {
		t.Fatal("a page without LDAP metrics: no error")
	}
	if total, _ := ldapPerLogin(s, ldapSource{Name: "x"}, 0); !math.IsNaN(total) {
		t.Fatalf("per login with no logins = %v, want NaN", total)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
