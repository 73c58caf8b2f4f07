package lb

import "github.com/prometheus/client_golang/prometheus"

// poolCollector exports a pool's state at scrape time from the counters and
// gauges kept on its backends, so there is no second copy to keep in sync.
// The pool name is a constant label, which lets many pools register on one
// registry.
type poolCollector struct{ p *Pool }

func (c *poolCollector) descs() (up, drained, active, picks, dialFail, checks, changes, none *prometheus.Desc) {
	cl := prometheus.Labels{"pool": c.p.name}
	up = prometheus.NewDesc("iwalb_lb_backend_up", "Whether the backend is up (1) or down (0).", []string{"backend"}, cl)
	drained = prometheus.NewDesc("iwalb_lb_backend_drained", "Whether the backend is drained (1).", []string{"backend"}, cl)
	active = prometheus.NewDesc("iwalb_lb_backend_active_connections", "Connections picked and not yet released.", []string{"backend"}, cl)
	picks = prometheus.NewDesc("iwalb_lb_backend_picks_total", "Connections assigned to the backend.", []string{"backend"}, cl)
	dialFail = prometheus.NewDesc("iwalb_lb_backend_dial_failures_total", "Dial failures reported by the front doors.", []string{"backend"}, cl)
	checks = prometheus.NewDesc("iwalb_lb_backend_health_checks_total", "Active health checks by result.", []string{"backend", "result"}, cl)
	changes = prometheus.NewDesc("iwalb_lb_backend_state_changes_total", "Health state changes by new state.", []string{"backend", "state"}, cl)
	none = prometheus.NewDesc("iwalb_lb_no_backend_total", "Picks that found no usable backend.", nil, cl)
	return
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	up, drained, active, picks, dialFail, checks, changes, none := c.descs()
	for _, d := range []*prometheus.Desc{up, drained, active, picks, dialFail, checks, changes, none} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	up, drained, active, picks, dialFail, checks, changes, none := c.descs()
	b2f := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	for _, b := range c.p.backends {
		ch <- prometheus.MustNewConstMetric(up, prometheus.GaugeValue, b2f(b.State() == StateUp), b.Name)
		ch <- prometheus.MustNewConstMetric(drained, prometheus.GaugeValue, b2f(b.Drained()), b.Name)
		ch <- prometheus.MustNewConstMetric(active, prometheus.GaugeValue, float64(b.Active()), b.Name)
		ch <- prometheus.MustNewConstMetric(picks, prometheus.CounterValue, float64(b.picks.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(dialFail, prometheus.CounterValue, float64(b.dialFailures.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(checks, prometheus.CounterValue, float64(b.checksOK.Load()), b.Name, "ok")
		ch <- prometheus.MustNewConstMetric(checks, prometheus.CounterValue, float64(b.checksFailed.Load()), b.Name, "failed")
		ch <- prometheus.MustNewConstMetric(changes, prometheus.CounterValue, float64(b.wentUp.Load()), b.Name, "up")
		ch <- prometheus.MustNewConstMetric(changes, prometheus.CounterValue, float64(b.wentDown.Load()), b.Name, "down")
	}
	ch <- prometheus.MustNewConstMetric(none, prometheus.CounterValue, float64(c.p.noneLeft.Load()))
}
