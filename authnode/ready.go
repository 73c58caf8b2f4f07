package authnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
)

// readiness holds the result of the latest background checks. Health
// checkers poll /readyz often; they read this snapshot and never wait on
// the KDC or the directory.
type readiness struct {
	last atomic.Pointer[readyReport]
	// store is the latest check of a shared store, made more often than
	// the others (storeCheckInterval); nil without one.
	store    atomic.Pointer[checkResult]
	draining atomic.Bool
}

// storeCheckInterval is how often a shared store is pinged: a node whose
// Redis is gone fails every login, so balancers must learn it within
// seconds, not at the next round of the KDC self-test.
const storeCheckInterval = 2 * time.Second

// readyReport is the result of one round of readiness checks. Its details
// name servers, accounts and keytab entries, so they go to the log; /readyz
// shows only which checks pass.
type readyReport struct {
	Ready     bool
	CheckedAt time.Time
	Checks    map[string]checkResult
	// ClockOffset is the domain controller's clock minus ours.
	ClockOffset time.Duration
}

type checkResult struct {
	OK     bool
	Detail string
	Err    error // the failure, for Diagnose
}

// readyView is the body of /readyz.
type readyView struct {
	Ready       bool            `json:"ready"`
	CheckedAt   time.Time       `json:"checkedAt"`
	Checks      map[string]bool `json:"checks"`
	ClockOffset float64         `json:"clockOffsetSeconds"`
	Detail      string          `json:"detail,omitempty"`
}

// checkLoop runs the readiness checks at once and then every
// SelfTestInterval (every notReadyRecheck at most while the node is not
// ready, and at once when new settings or keys came in) until ctx ends. It
// also sweeps the stores.
func (n *Node) checkLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.recheck:
			t.Stop()
		}
		s := n.acquire()
		rep := n.runChecks(ctx, s)
		s.dir.release()
		n.sweepStores()
		next := s.cfg.SelfTestInterval
		if !rep.Ready {
			// A KDC or DC that missed one answer should not keep the
			// node out of its pools for a whole interval.
			next = min(next, notReadyRecheck)
		}
		t.Reset(next)
	}
}

// notReadyRecheck is how soon the checks run again after a round that
// found the node not ready, as a balancer's faster interval for a down
// backend.
const notReadyRecheck = 5 * time.Second

// runChecks proves, in order, that the keytab is loaded, that the proxy
// account can bind, that our clock is within the allowed skew of the DC's,
// and that the KDC issues a ticket for our SPN that our keytab decrypts.
func (n *Node) runChecks(ctx context.Context, s *settings) *readyReport {
	rep := &readyReport{Checks: map[string]checkResult{}}
	set := func(name string, err error, okDetail string) {
		r := checkResult{OK: err == nil, Detail: okDetail, Err: err}
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
	set("keytab", nil, fmt.Sprintf("%s loaded", s.keys.path))

	ldapCtx, cancel := context.WithTimeout(ctx, s.cfg.LDAP.Timeout)
	start := time.Now()
	err := s.dir.dir.Check(ldapCtx)
	n.observeLDAP("check", start, err)
	set("ldap", err, "proxy bind works")
	if err == nil {
		start = time.Now()
		before := n.now()
		var dcTime time.Time
		dcTime, err = s.dir.dir.ServerTime(ldapCtx)
		n.observeLDAP("time", start, err)
		if err == nil {
			// Take the midpoint of the request as our side of the clock.
			ours := before.Add(time.Since(start) / 2)
			off := dcTime.Sub(ours)
			rep.ClockOffset = off
			n.metrics.clockOffset.Set(off.Seconds())
			switch {
			case off.Abs() > s.cfg.MaxClockSkew:
				err = fmt.Errorf("clock differs from the domain controller's by %s (allowed %s)", off.Round(time.Second), s.cfg.MaxClockSkew)
			case off > s.cfg.MaxFutureSkew:
				// Clients keep the domain's time: their authenticators
				// would all look this far in the node's future.
				err = fmt.Errorf("clock is %s behind the domain controller's; authenticators of clients in step with the domain would be refused as made in the future (allowed %s)", off.Round(time.Second), s.cfg.MaxFutureSkew)
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
	set("kdc_self_test", err, fmt.Sprintf("KDC issued a ticket for %s that the keytab decrypts", s.cfg.SelfTestSPN))

	rep.Ready = true
	for _, c := range rep.Checks {
		rep.Ready = rep.Ready && c.OK
	}
	rep.CheckedAt = time.Now().UTC()
	prev := n.ready.last.Swap(rep)
	n.publishOverall()
	n.logReadiness(s.log, prev, rep)
	return rep
}

// Check is the outcome of one of a node's readiness checks.
type Check struct {
	// Name is keytab, ldap, clock or kdc_self_test.
	Name string
	// Err is why it failed (wrapping the directory's and negotiate's
	// sentinels), nil when it passed.
	Err error
	// Detail says what passed, or what failed: it names servers and
	// accounts, for the operator.
	Detail string
	// Warning marks a check that passed with something to fix.
	Warning bool
}

// Diagnose runs the node's readiness checks once, now, and returns them
// in order: the keytab, the LDAP proxy bind, the clock against the DC's,
// the KDC self-test, what AD says of the SPNs and the service account,
// with NTLM on a login the domain refuses through ntlm_auth, and with Redis
// a PING. It is for `iwalb doctor` on a node that is not
// serving; the readiness metrics follow it.
func (n *Node) Diagnose(ctx context.Context) []Check {
	s := n.acquire()
	defer s.dir.release()
	rep := n.runChecks(ctx, s)
	var out []Check
	for _, name := range []string{"keytab", "ldap", "clock", "kdc_self_test"} {
		if r, ok := rep.Checks[name]; ok {
			out = append(out, Check{Name: name, Err: r.Err, Detail: r.Detail})
		}
	}
	if d, ok := s.dir.dir.(accountInspector); ok && rep.Checks["ldap"].OK {
		out = append(out, n.diagnoseAccount(ctx, s, d)...)
	}
	if s.ntlm != nil {
		out = append(out, diagnose(ctx, "ntlm", "ntlm_auth asked the domain through winbindd about a random login, and it was refused, as it should be",
			s.cfg.NTLM.Timeout+time.Second, s.ntlm.verifier.Probe))
	}
	if s.oidc != nil {
		out = append(out, diagnose(ctx, "oidc_keys", "the OpenID Connect provider has a key to sign with", 10*time.Second, s.oidc.CheckKeys))
	}
	if n.storeCheck != nil {
		out = append(out, diagnose(ctx, "store", "Redis answers", 10*time.Second, n.storeCheck))
	}
	return out
}

// diagnose runs one check within timeout: detail when it passes, its
// error when it does not.
func diagnose(ctx context.Context, name, detail string, timeout time.Duration, check func(context.Context) error) Check {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := Check{Name: name, Detail: detail}
	if c.Err = check(ctx); c.Err != nil {
		c.Detail = c.Err.Error()
	}
	return c
}

// accountInspector reads what AD says of SPNs and service accounts.
type accountInspector interface {
	SPNOwners(ctx context.Context, spn string) ([]string, error)
	AccountKeys(ctx context.Context, account string) (directory.ServiceAccount, error)
}

// Errors of Diagnose's account checks.
var (
	// ErrSPNNotRegistered: no account has a keytab SPN.
	ErrSPNNotRegistered = errors.New("the SPN is registered on no account")
	// ErrSPNDuplicate: several accounts have it (KRB_DUPLICATE_SPN).
	ErrSPNDuplicate = errors.New("the SPN is registered on more than one account")
	// ErrSPNOtherAccount: another account than kerberos.account has it.
	ErrSPNOtherAccount = errors.New("the SPN is registered on another account")
	// ErrKeyVersion: the keytab's newest key version is not the account's.
	ErrKeyVersion = errors.New("the keytab's key version is not the account's")
	// ErrNoAES: the account does not allow AES.
	ErrNoAES = errors.New("the account does not allow AES")
)

// aesTypes are the AES bits of msDS-SupportedEncryptionTypes.
const aesTypes = 0x8 | 0x10

// diagnoseAccount checks, in AD, that each HTTP SPN of the keytab is
// registered on exactly one account, kerberos.account; that the account's
// key version is the keytab's newest; and that it allows AES.
func (n *Node) diagnoseAccount(ctx context.Context, s *settings, d accountInspector) []Check {
	var out []Check
	newest := 0
	seen := map[string]bool{}
	for _, k := range negotiate.Summarize(s.keys.current) {
		if !strings.EqualFold(k.Realm, s.cfg.Realm) || !strings.HasPrefix(k.Principal, "HTTP/") {
			continue
		}
		newest = max(newest, k.KVNO)
		if seen[k.Principal] {
			continue
		}
		seen[k.Principal] = true
		c := Check{Name: "spn " + k.Principal}
		owners, err := d.SPNOwners(ctx, k.Principal)
		switch {
		case err != nil:
			c.Err = err
		case len(owners) == 0:
			c.Err = fmt.Errorf("%w: %s", ErrSPNNotRegistered, k.Principal)
		case len(owners) > 1:
			c.Err = fmt.Errorf("%w: %s is on %s", ErrSPNDuplicate, k.Principal, strings.Join(owners, ", "))
		case !strings.EqualFold(owners[0], s.cfg.Account):
			c.Err = fmt.Errorf("%w: %s is on %s, not %s", ErrSPNOtherAccount, k.Principal, owners[0], s.cfg.Account)
		default:
			c.Detail = "registered on " + owners[0] + " only"
		}
		if c.Err != nil {
			c.Detail = c.Err.Error()
		}
		out = append(out, c)
	}
	c := Check{Name: "account " + s.cfg.Account}
	a, err := d.AccountKeys(ctx, s.cfg.Account)
	switch {
	case err != nil:
		c.Err = err
	case newest != 0 && a.KVNO != newest:
		c.Err = fmt.Errorf("%w: the account is at key version %d, the keytab at %d", ErrKeyVersion, a.KVNO, newest)
	case a.Enctypes != 0 && a.Enctypes&aesTypes == 0:
		c.Err = fmt.Errorf("%w: msDS-SupportedEncryptionTypes is 0x%x", ErrNoAES, a.Enctypes)
	default:
		c.Detail = fmt.Sprintf("key version %d, as the keytab's; msDS-SupportedEncryptionTypes 0x%x", a.KVNO, a.Enctypes)
	}
	if c.Err != nil {
		c.Detail = c.Err.Error()
	}
	out = append(out, c)
	if err == nil && a.PasswordMaxAge > 0 {
		out = append(out, Check{Name: "password " + s.cfg.Account, Warning: true,
			Detail: fmt.Sprintf("the service account's password expires every %d days; when it changes, the keytab stops matching", int(a.PasswordMaxAge.Hours()/24))})
	}
	return out
}

// isReady says whether the node can log users in: it is not shutting down,
// the latest round of checks passed, and the shared store, if any, answers.
func (n *Node) isReady() bool {
	if n.ready.draining.Load() {
		return false
	}
	rep := n.ready.last.Load()
	if rep == nil || !rep.Ready {
		return false
	}
	s := n.ready.store.Load()
	return s == nil || s.OK
}

// publishOverall sets the overall readiness gauge.
func (n *Node) publishOverall() {
	v := 0.0
	if n.isReady() {
		v = 1
	}
	n.metrics.ready.WithLabelValues("overall").Set(v)
}

// storeCheckLoop pings the shared store at once and then every
// storeCheckInterval until ctx ends; without a shared store it returns.
func (n *Node) storeCheckLoop(ctx context.Context) {
	if n.storeCheck == nil {
		return
	}
	t := time.NewTicker(storeCheckInterval)
	defer t.Stop()
	for {
		err := n.storeCheck(ctx)
		if ctx.Err() != nil {
			return
		}
		n.setStoreCheck(err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setStoreCheck records a check of the shared store, logging a change.
func (n *Node) setStoreCheck(err error) {
	r := &checkResult{OK: err == nil, Detail: "answers"}
	if err != nil {
		r.Detail = err.Error()
	}
	prev := n.ready.store.Swap(r)
	v := 0.0
	if r.OK {
		v = 1
	}
	n.metrics.ready.WithLabelValues("store").Set(v)
	wasReady := prev != nil && prev.OK
	switch {
	case !r.OK && (wasReady || prev == nil || prev.Detail != r.Detail):
		n.logger().Warn("readiness check failing", "check", "store", "err", r.Detail)
	case r.OK && !wasReady:
		n.logger().Info("readiness check passing", "check", "store")
	}
	n.publishOverall()
}

// logReadiness logs what changed since the previous round: readiness
// itself once per change, and each check that starts failing (with why),
// fails differently, or recovers.
func (n *Node) logReadiness(log *slog.Logger, prev, rep *readyReport) {
	if prev == nil || prev.Ready != rep.Ready {
		log.Info("readiness changed", "ready", rep.Ready)
	}
	for name, c := range rep.Checks {
		var was checkResult
		if prev != nil {
			was = prev.Checks[name]
		}
		switch {
		case !c.OK && (prev == nil || was.OK || was.Detail != c.Detail):
			log.Warn("readiness check failing", "check", name, "err", c.Detail)
		case c.OK && prev != nil && !was.OK:
			log.Info("readiness check passing", "check", name)
		}
	}
}

// sweeper is a store that expires entries itself (the in-memory one); a
// shared store expires them on its own.
type sweeper interface{ Sweep() uint64 }

// sweepStores drops lapsed entries and counts the tokens that expired
// unredeemed.
func (n *Node) sweepStores() {
	if s, ok := n.tokens.(sweeper); ok {
		n.metrics.tokensExpired.Add(float64(s.Sweep()))
	}
	if s, ok := n.sessions.(sweeper); ok {
		s.Sweep()
	}
}

func (n *Node) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	noStore(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 when the node can log users in, 503 otherwise
// (also once it is shutting down, so balancers stop sending new clients).
func (n *Node) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	rep := n.ready.last.Load()
	view := readyView{}
	switch {
	case rep == nil:
		view.Detail = "first checks still running"
	case n.ready.draining.Load():
		view.Detail = "shutting down"
	default:
		view = readyView{Ready: n.isReady(), CheckedAt: rep.CheckedAt, Checks: map[string]bool{}, ClockOffset: rep.ClockOffset.Seconds()}
		for name, c := range rep.Checks {
			view.Checks[name] = c.OK
		}
		if s := n.ready.store.Load(); s != nil {
			view.Checks["store"] = s.OK
		}
		if !view.Ready {
			view.Detail = "see the node's log for why"
		}
	}
	status := http.StatusOK
	if !view.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, view)
}

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort(), nil
	}
	return netip.ParseAddrPort(a.String())
}
