package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/l7redirect"
	"github.com/iwalb/iwalb/lb"
)

// descRecorder is a Registerer that keeps the descriptions of what is
// registered with it: every metric name and its labels, including the
// vectors that have no series yet (a scrape would not show those).
type descRecorder struct{ metrics map[string][]string }

var descPattern = regexp.MustCompile(`fqName: "([^"]+)".*constLabels: \{([^}]*)\}, variableLabels: \{([^}]*)\}`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("cannot read %s", d)
		}
		var labels []string
		for _, l := range strings.Split(m[2], ",") {
			if name, _, ok := strings.Cut(l, "="); ok {
				labels = append(labels, name)
			}
		}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.TrimSuffix(strings.TrimPrefix(l, "c("), ")"); l != "" {
				labels = append(labels, l)
			}
		}
		r.metrics[m[1]] = labels
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return true }

// exportedMetrics are the series names iwalb can export, with their
// labels: every role's metrics, registered as `iwalb run` registers them
// (the auth node's from a node built from a valid file). A histogram's
// name also stands for its _bucket (with le), _sum and _count.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	rec := &descRecorder{metrics: map[string][]string{}}
	if _, err := l4.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := l7redirect.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	newPrivateMetrics(rec)
	newConfigMetrics(rec)
	rec.MustRegister(lb.NewRegistry(), buildInfo())
	valid, _ := validConfig(t)
	f, err := config.Load(valid)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := f.AuthNode()
	if _, err := authnode.New(cfg, authnode.Options{Registerer: rec, Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for name, labels := range rec.metrics {
		out[name] = labels
		out[name+"_sum"] = labels
		out[name+"_count"] = labels
		out[name+"_bucket"] = append(slices.Clone(labels), "le")
	}
	return out
}

var (
	metricRef   = regexp.MustCompile(`\b(iwalb_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	grouping    = regexp.MustCompile(`\b(?:by|on|ignoring|without)\s*\(([^)]*)\)`)
)

// checkQuery says what in expr is not something iwalb exports: a metric
// name, a label in a metric's matchers, or a label grouped by that none of
// the expression's metrics has.
func checkQuery(expr string, exported map[string][]string) []string {
	var bad []string
	var all []string
	refs := metricRef.FindAllStringSubmatch(expr, -1)
	if len(refs) == 0 {
		bad = append(bad, "uses no iwalb series")
	}
	for _, ref := range refs {
		labels, ok := exported[ref[1]]
		if !ok {
			bad = append(bad, "no metric "+ref[1])
			continue
		}
		all = append(all, labels...)
		for _, m := range matcherName.FindAllStringSubmatch(ref[2], -1) {
			if l := m[1]; l != "instance" && l != "job" && !slices.Contains(labels, l) {
				bad = append(bad, fmt.Sprintf("%s has no label %s", ref[1], l))
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			l = strings.TrimSpace(l)
			if l != "" && l != "instance" && l != "job" && !slices.Contains(all, l) {
				bad = append(bad, "no series here has the label "+l)
			}
		}
	}
	return bad
}

// TestDashboardAndAlertsUseExportedMetrics: every query of the Grafana
// dashboard and every alert rule names only metrics and labels iwalb
// exports, and (with promtool) every one is valid PromQL.
func TestDashboardAndAlertsUseExportedMetrics(t *testing.T) {
	exported := exportedMetrics(t)
	if _, ok := exported["iwalb_authnode_logins_total"]; !ok {
		t.Fatalf("the auth node's metrics were not collected: %v", exported)
	}

	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("configs/grafana-dashboard.json: %v", err)
	}
	type query struct{ where, expr string }
	var queries []query
	for _, p := range dash.Panels {
		if p.Title == "" || p.Type == "" || len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q (%s) has no title, type or query", p.Title, p.Type)
		}
		for _, tg := range p.Targets {
			// Grafana's variables, as Grafana fills them in.
			e := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(tg.Expr)
			queries = append(queries, query{"dashboard panel " + p.Title, e})
		}
	}
	if len(queries) < 15 {
		t.Errorf("the dashboard has %d queries; want its panels (connections, bytes, backends, logins, redirects, redemptions, latencies)", len(queries))
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	b, err = os.ReadFile("../../configs/prometheus-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("configs/prometheus-alerts.yml: %v", err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			queries = append(queries, query{"alert " + r.Alert, r.Expr})
		}
	}
	for _, want := range []string{"IwalbBackendDown", "IwalbNoHealthyBackend", "IwalbLoginFailures", "IwalbKeytabKVNOMismatch", "IwalbDCClockOffset", "IwalbCertificateExpiresSoon"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s in configs/prometheus-alerts.yml", want)
		}
	}

	for _, q := range queries {
		if bad := checkQuery(q.expr, exported); len(bad) > 0 {
			t.Errorf("%s: %s\n  %s", q.where, strings.Join(bad, "; "), q.expr)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool (Debian prometheus) is not installed: PromQL syntax not checked")
		return
	}
	// Each query as a recording rule, which promtool parses.
	var doc strings.Builder
	doc.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range queries {
		fmt.Fprintf(&doc, "      - record: q%d\n        expr: %q\n", i, q.expr)
	}
	path := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(path, []byte(doc.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{path, "../../configs/prometheus-alerts.yml"} {
		out, err := exec.Command(promtool, "check", "rules", file).CombinedOutput()
		if err != nil {
			t.Errorf("promtool check rules %s: %v\n%s", file, err, out)
		}
	}
}

// TestCheckQuery: the checker above catches what it is for.
func TestCheckQuery(t *testing.T) {
	exported := map[string][]string{"iwalb_x_total": {"pool"}, "iwalb_x_total_sum": {"pool"}}
	for expr, want := range map[string]string{
		`sum by (pool) (rate(iwalb_x_total[5m]))`:    "",
		`sum by (pool) (rate(iwalb_y_total[5m]))`:    "no metric iwalb_y_total; no series here has the label pool",
		`rate(iwalb_x_total{pol="a"}[5m])`:           "iwalb_x_total has no label pol",
		`sum by (backend) (rate(iwalb_x_total[5m]))`: "no series here has the label backend",
		`rate(up[5m])`: "uses no iwalb series",
		`iwalb_x_total{instance=~".*",pool!="a"} > 0`: "",
	} {
		got := strings.Join(checkQuery(expr, exported), "; ")
		if got != want {
			t.Errorf("checkQuery(%s) = %q, want %q", expr, got, want)
		}
	}
}
