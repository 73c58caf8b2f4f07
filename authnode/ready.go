package authnode

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

// readiness holds the result of the latest background checks. Health
// checkers poll /readyz often; they read this snapshot and never wait on
// the KDC or the directory.
type readiness struct {
	last     atomic.Pointer[readyReport]
	draining atomic.Bool
}

// readyReport is the body of /readyz.
type readyReport struct {
	Ready     bool                   `json:"ready"`
	CheckedAt time.Time              `json:"checkedAt"`
	Checks    map[string]checkResult `json:"checks"`
	// ClockOffset is the domain controller's clock minus ours, in seconds.
	ClockOffset float64 `json:"clockOffsetSeconds"`
}

type checkResult struct {
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// checkLoop runs the readiness checks at once and then every
// SelfTestInterval until ctx ends. It also sweeps expired tokens.
func (n *Node) checkLoop(ctx context.Context) {
	t := time.NewTicker(n.cfg.SelfTestInterval)
	defer t.Stop()
	for {
		n.runChecks(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runChecks proves, in order, that the keytab is loaded, that the proxy
// account can bind, that our clock is within the allowed skew of the DC's,
// and that the KDC issues a ticket for our SPN that our keytab decrypts.
func (n *Node) runChecks(ctx context.Context) *readyReport {
	rep := &readyReport{Checks: map[string]checkResult{}}
	set := func(name string, err error, okDetail string) {
		r := checkResult{OK: err == nil, Detail: okDetail}
		if err != nil {
			r.Detail = err.Error()
		}
		rep.Checks[name] = r
		v := 0.0
		if r.OK {
			v = 1
		}
		n.metrics.ready.WithLabelValues(name).Set(v)
	}
	set("keytab", nil, fmt.Sprintf("%s loaded", n.cfg.Keytab))

	ldapCtx, cancel := context.WithTimeout(ctx, n.cfg.LDAP.Timeout)
	start := time.Now()
	err := n.dir.Check(ldapCtx)
	n.observeLDAP("check", start, err)
	set("ldap", err, "proxy bind works")
	if err == nil {
		start = time.Now()
		before := n.now()
		var dcTime time.Time
		dcTime, err = n.dir.ServerTime(ldapCtx)
		n.observeLDAP("time", start, err)
		if err == nil {
			// Take the midpoint of the request as our side of the clock.
			ours := before.Add(time.Since(start) / 2)
			off := dcTime.Sub(ours)
			rep.ClockOffset = off.Seconds()
			n.metrics.clockOffset.Set(off.Seconds())
			if off.Abs() > n.cfg.MaxClockSkew {
				err = fmt.Errorf("clock differs from the domain controller's by %s (allowed %s)", off.Round(time.Second), n.cfg.MaxClockSkew)
			}
		}
		set("clock", err, "within the allowed skew of the domain controller")
	} else {
		set("clock", fmt.Errorf("not checked: %w", err), "")
	}
	cancel()

	kdcCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = n.selfTest(kdcCtx)
	cancel()
	set("kdc_self_test", err, fmt.Sprintf("KDC issued a ticket for %s that the keytab decrypts", n.cfg.SelfTestSPN))

	rep.Ready = true
	for _, c := range rep.Checks {
		rep.Ready = rep.Ready && c.OK
	}
	rep.CheckedAt = time.Now().UTC()
	prev := n.ready.last.Swap(rep)
	v := 0.0
	if rep.Ready {
		v = 1
	}
	n.metrics.ready.WithLabelValues("overall").Set(v)
	if prev == nil || prev.Ready != rep.Ready {
		attrs := []any{"ready", rep.Ready}
		for name, c := range rep.Checks {
			if !c.OK {
				attrs = append(attrs, name, c.Detail)
			}
		}
		n.log.Info("readiness changed", attrs...)
	}
	return rep
}

func (n *Node) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	noStore(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 when the node can log users in, 503 otherwise
// (also while it shuts down, so balancers stop sending new clients).
func (n *Node) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	rep := n.ready.last.Load()
	if rep == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "detail": "first checks still running"})
		return
	}
	status := http.StatusOK
	if !rep.Ready || n.ready.draining.Load() {
		status = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(rep)
	if n.ready.draining.Load() {
		body, _ = json.Marshal(map[string]any{"ready": false, "detail": "shutting down"})
	}
	w.Header().Set("Content-Type", "application/json")
	noStore(w)
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort(), nil
	}
	return netip.ParseAddrPort(a.String())
}
