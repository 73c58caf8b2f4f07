package main

import (
	"embed"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/iwalb/iwalb/lb"
)

// The status page's files: HTML, script and style, no external resource.
//
//go:embed statuspage
var statusFiles embed.FS

// statusWindow is how far back "recent" login failures reach.
const statusWindow = 15 * time.Minute

// statusPage is the admin listener's live view of the process, for a person
// at a browser on the node:
//
//	GET /status         the page (HTML; statuspage/status.js refreshes it every 2 s)
//	GET /status.json    what it shows: the configuration generation, pools,
//	                    backends with health and the last failed check's reason,
//	                    open connections, and login failures by reason
//
// Everything comes from the pools in use and the process's own metrics, so
// the page shows what /metrics and GET /pools show.
type statusPage struct {
	active func() *lb.Set
	gather prometheus.Gatherer
	now    func() time.Time

	mu      sync.Mutex
	samples []failureSample // oldest first, at most one per statusSampleEvery
}

// failureSample is the login failure counts by reason at one time.
type failureSample struct {
	at     time.Time
	counts map[string]float64
}

// statusSampleEvery spaces the samples "recent" failures are counted from.
const statusSampleEvery = 10 * time.Second

func newStatusPage(active func() *lb.Set, gather prometheus.Gatherer) *statusPage {
	return &statusPage{active: active, gather: gather, now: time.Now}
}

// statusView is GET /status.json.
type statusView struct {
	Time        time.Time            `json:"time"`
	Generation  int                  `json:"generation"`
	ConfigHash  string               `json:"config_hash"`
	Pools       []adminPool          `json:"pools"`
	Connections []statusConns        `json:"connections"`
	Failures    []statusFailure      `json:"login_failures"`
	Window      statusFailuresWindow `json:"login_failures_window"`
}

// statusConns is the open connections of one front-door listener.
type statusConns struct {
	Role     string `json:"role"` // l4, l7redirect, authnode
	Listener string `json:"listener"`
	Open     int    `json:"open"`
}

// statusFailure is one reason logins failed for: since the process
// started, and within the window.
type statusFailure struct {
	Reason string `json:"reason"`
	Total  int    `json:"total"`
	Recent int    `json:"recent"`
}

// statusFailuresWindow says what "recent" covers: from Since (the window's
// start, or the first time the page was asked for, if later) to the view's
// time.
type statusFailuresWindow struct {
	Since   time.Time `json:"since"`
	Seconds int       `json:"seconds"`
}

func (s *statusPage) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		s.file(w, "statuspage/status.html", "text/html; charset=utf-8")
	})
	mux.HandleFunc("GET /status.js", func(w http.ResponseWriter, r *http.Request) {
		s.file(w, "statuspage/status.js", "text/javascript; charset=utf-8")
	})
	mux.HandleFunc("GET /status.css", func(w http.ResponseWriter, r *http.Request) {
		s.file(w, "statuspage/status.css", "text/css; charset=utf-8")
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		v, err := s.view()
		if err != nil {
			writeAdminJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeAdminJSON(w, http.StatusOK, v)
	})
}

// file writes one of the page's files with headers that let it run only
// its own script and style, never framed.
func (s *statusPage) file(w http.ResponseWriter, name, contentType string) {
	b, err := statusFiles.ReadFile(name)
	if err != nil { // embedded: only a build without the folder gets here
		http.Error(w, "status page missing from this build", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(b)
}

// view gathers the process's metrics once and makes the page's data.
func (s *statusPage) view() (statusView, error) {
	mfs, err := s.gather.Gather()
	if err != nil {
		return statusView{}, err
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	now := s.now()
	v := statusView{Time: now, Pools: poolsView(s.active().Status())}
	if mf := byName["iwalb_config_generation"]; mf != nil && len(mf.Metric) == 1 {
		v.Generation = int(mf.Metric[0].GetGauge().GetValue())
	}
	if mf := byName["iwalb_config_info"]; mf != nil {
		for _, m := range mf.Metric {
			if m.GetGauge().GetValue() == 1 {
				v.ConfigHash = label(m, "hash")
			}
		}
	}
	for _, c := range []struct{ role, metric, label string }{
		{"l4", "iwalb_l4_connections_open", "listener"},
		{"l7redirect", "iwalb_l7redirect_connections_open", "frontdoor"},
		{"authnode", "iwalb_authnode_connections_open", ""},
	} {
		if mf := byName[c.metric]; mf != nil {
			for _, m := range mf.Metric {
				name := c.role
				if c.label != "" {
					name = label(m, c.label)
					if l := label(m, "listener"); c.role == "l7redirect" && l != "" {
						name += " (" + l + ")"
					}
				}
				v.Connections = append(v.Connections, statusConns{Role: c.role, Listener: name, Open: int(m.GetGauge().GetValue())})
			}
		}
	}
	counts := map[string]float64{}
	if mf := byName["iwalb_authnode_logins_total"]; mf != nil {
		for _, m := range mf.Metric {
			if label(m, "outcome") == "failure" {
				counts[label(m, "reason")] += m.GetCounter().GetValue()
			}
		}
	}
	base := s.sample(now, counts)
	v.Window = statusFailuresWindow{Since: base.at, Seconds: int(now.Sub(base.at).Seconds())}
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		total := counts[reason]
		if total == 0 {
			continue
		}
		v.Failures = append(v.Failures, statusFailure{Reason: reason, Total: int(total), Recent: int(total - base.counts[reason])})
	}
	return v, nil
}

// sample records counts as seen at now (at most one sample per
// statusSampleEvery, none older than statusWindow kept) and returns the
// oldest sample within the window, which recent failures are counted from.
func (s *statusPage) sample(now time.Time, counts map[string]float64) failureSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	drop := 0
	for drop < len(s.samples) && now.Sub(s.samples[drop].at) > statusWindow {
		drop++
	}
	s.samples = s.samples[drop:]
	if len(s.samples) == 0 || now.Sub(s.samples[len(s.samples)-1].at) >= statusSampleEvery {
		s.samples = append(s.samples, failureSample{at: now, counts: maps.Clone(counts)})
	}
	return s.samples[0]
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
