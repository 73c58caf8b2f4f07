package main

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/lb"
)

// adminHandler is the operator's API on the admin listener (loopback only):
//
//	GET  /pools                                       the health view of every pool
//	POST /pools/{pool}/backends/{backend}/drain       no new connections; existing ones finish
//	POST /pools/{pool}/backends/{backend}/undrain     take new connections again
//	POST /reload                                      load the configuration file again (as SIGHUP)
//	GET  /status, /status.json                        the live status page and its data (status.go)
//
// Draining is how a node leaves for maintenance without cutting anyone
// off; it lasts across reloads. active returns the pools in use; reload
// reloads the process.
//
// The API has no authentication; it listens on loopback only, and refuses
// what a web page in a browser on the same host could send it: requests for
// another Host (DNS rebinding) and cross-origin POSTs (CSRF).
func adminHandler(active func() *lb.Set, reload func() (reloadResult, error), gather prometheus.Gatherer, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	newStatusPage(active, gather).register(mux)
	mux.HandleFunc("GET /pools", func(w http.ResponseWriter, _ *http.Request) {
		writeAdminJSON(w, http.StatusOK, poolsView(active().Status()))
	})
	drain := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			p := active().Pool(r.PathValue("pool"))
			if p == nil {
				writeAdminJSON(w, http.StatusNotFound, map[string]string{"error": "no pool " + r.PathValue("pool")})
				return
			}
			b := p.Backend(r.PathValue("backend"))
			if b == nil {
				writeAdminJSON(w, http.StatusNotFound, map[string]string{"error": "pool " + p.Name() + " has no backend " + r.PathValue("backend")})
				return
			}
			if b.Drained() != on {
				b.SetDrained(on)
				log.Info("backend drain changed", "pool", p.Name(), "backend", b.Name, "drained", on,
					"active", b.Active(), "client", r.RemoteAddr)
			}
			writeAdminJSON(w, http.StatusOK, backendView(b.Status()))
		}
	}
	mux.HandleFunc("POST /pools/{pool}/backends/{backend}/drain", drain(true))
	mux.HandleFunc("POST /pools/{pool}/backends/{backend}/undrain", drain(false))
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		log.Info("reload asked over the admin API", "client", r.RemoteAddr)
		res, err := reload()
		if err != nil {
			writeAdminJSON(w, http.StatusUnprocessableEntity, adminReload{reloadResult: res, Error: err.Error()})
			return
		}
		writeAdminJSON(w, http.StatusOK, adminReload{reloadResult: res})
	})
	return loopbackHostOnly(http.NewCrossOriginProtection().Handler(mux))
}

// adminReload is the answer to POST /reload: the configuration running
// afterwards and, when the reload was refused, why (FILE:LINE: reason
// lines).
type adminReload struct {
	reloadResult
	Error string `json:"error,omitempty"`
}

// loopbackHostOnly refuses requests whose Host is not a loopback name: a
// page that rebinds its own DNS name to 127.0.0.1 still sends that name.
func loopbackHostOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
		if host != "localhost" && (err != nil || !ip.IsLoopback()) {
			writeAdminJSON(w, http.StatusMisdirectedRequest, map[string]string{"error": "the admin API answers only to a loopback host name"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The admin API's JSON: lb's status with stable, snake_case names.
type adminPool struct {
	Name     string         `json:"name"`
	Policy   string         `json:"policy"`
	Healthy  int            `json:"healthy"`
	Backends []adminBackend `json:"backends"`
}

type adminBackend struct {
	Name      string     `json:"name"`
	Addr      string     `json:"addr"`
	FQDN      string     `json:"fqdn"`
	Weight    int        `json:"weight"`
	MaxConns  int        `json:"max_conns"`
	State     string     `json:"state"`
	Drained   bool       `json:"drained"`
	Active    int        `json:"active"`
	LastCheck *time.Time `json:"last_check,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	Since     time.Time  `json:"since"`
}

func poolsView(pools []lb.PoolStatus) []adminPool {
	out := make([]adminPool, 0, len(pools))
	for _, p := range pools {
		ap := adminPool{Name: p.Name, Policy: string(p.Policy), Healthy: p.Healthy()}
		for _, b := range p.Backends {
			ap.Backends = append(ap.Backends, backendView(b))
		}
		out = append(out, ap)
	}
	return out
}

func backendView(b lb.BackendStatus) adminBackend {
	v := adminBackend{Name: b.Name, Addr: b.Addr, FQDN: b.FQDN, Weight: b.Weight, MaxConns: b.MaxConns,
		State: b.State.String(), Drained: b.Drained, Active: b.Active, LastError: b.LastError, Since: b.Since}
	if !b.LastCheck.IsZero() {
		v.LastCheck = &b.LastCheck
	}
	return v
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
