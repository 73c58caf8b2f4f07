// Command logins is a login load tool for an iwalb auth node: at a fixed
// concurrency for a fixed time, each worker sends GET {sso_path} on its own
// keep-alive HTTPS connection with a fresh Kerberos Negotiate
// authenticator every time, as browsers logging in do. It reports logins
// per second, latency percentiles, failures by status and reason, and,
// when given the node's PID and /metrics URL, the node's CPU per login,
// its LDAP operations per login and its own count of failures by reason.
//
// See bench/logins/README.md; bench/logins/run runs a whole benchmark.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jcmturner/gokrb5/v8/config"
)

// Bounds of the flags: a run is always finite.
const (
	maxConcurrency = 1024
	maxDuration    = time.Hour
	maxWarmup      = 10 * time.Minute
	maxTimeout     = 5 * time.Minute
	maxLogins      = 10_000_000
)

// options are the checked flags.
type options struct {
	base        *url.URL // https://host:port of the node
	ssoPath     string
	connect     string // host:port to dial
	caFile      string
	spn         string
	krb5Conf    string
	realm       string
	creds       []credential
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	maxLogins   int
	mutual      bool
	nodePID     int
	metricsURL  string
	ldapMetric  string
	jsonOut     string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("logins", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o                  options
		base               string
		users, ccaches     listFlag
		defaultKrb5        = os.Getenv("KRB5_CONFIG")
		durationS, warmupS time.Duration
	)
	if defaultKrb5 == "" {
		defaultKrb5 = "/etc/krb5.conf"
	}
	fs.StringVar(&base, "url", "", "the auth node's base URL, https://HOST[:PORT] (required); HOST is its fqdn, as in the certificate and the SPN")
	fs.StringVar(&o.ssoPath, "sso-path", "/sso", "the node's sso_path")
	fs.StringVar(&o.connect, "connect", "", "dial this HOST:PORT instead of the URL's (like curl --resolve)")
	fs.StringVar(&o.caFile, "ca", "", "PEM file of the CA that signed the node's certificate (default: the system's)")
	fs.StringVar(&o.spn, "spn", "", "service principal to get tickets for (default HTTP/<URL host>)")
	fs.StringVar(&o.krb5Conf, "krb5-conf", defaultKrb5, "krb5.conf naming the KDC (the default is $KRB5_CONFIG when set)")
	fs.StringVar(&o.realm, "realm", "", "realm of the -user accounts (default: default_realm of the krb5 config)")
	fs.Var(&users, "user", "USER:PASSWORD or USER@REALM:PASSWORD to log in as (repeatable; workers take the accounts in turn)")
	fs.Var(&ccaches, "ccache", "ticket cache FILE to log in from, as kinit left it (repeatable, with or instead of -user)")
	fs.IntVar(&o.concurrency, "c", 8, fmt.Sprintf("concurrent workers, each on its own keep-alive connection (1 to %d)", maxConcurrency))
	fs.DurationVar(&durationS, "d", 20*time.Second, fmt.Sprintf("measured time (up to %s)", maxDuration))
	fs.DurationVar(&warmupS, "warmup", 5*time.Second, fmt.Sprintf("load before the measured time, not counted (0 to %s)", maxWarmup))
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, fmt.Sprintf("time limit of one request (up to %s)", maxTimeout))
	fs.IntVar(&o.maxLogins, "max", 1_000_000, fmt.Sprintf("most logins sent in all, warm-up included (up to %d)", maxLogins))
	fs.BoolVar(&o.mutual, "mutual", false, "ask for mutual authentication (the node then also makes an AP-REP, as for MIT clients such as curl)")
	fs.IntVar(&o.nodePID, "node-pid", 0, "PID of the node's iwalb process, to measure its CPU time from /proc/PID/stat")
	fs.StringVar(&o.metricsURL, "metrics", "", "the node's metrics URL (http://127.0.0.1:9101/metrics), for its own counts")
	fs.StringVar(&o.ldapMetric, "ldap-metric", "", "series counting LDAP operations (default: a per-login LDAP metric if the node has one, else iwalb_authnode_ldap_seconds_count)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file (- for standard output; the summary then goes to standard error)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./bench/logins -url https://HOST:PORT -user USER:PASSWORD [flags]\n\n"+
			"Sends logins with fresh Kerberos authenticators to an iwalb auth node for a fixed time at a fixed\n"+
			"concurrency and reports logins/s, latency, failures by reason, and the node's CPU and LDAP operations\n"+
			"per login. See bench/logins/README.md.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; try -h)", fs.Arg(0))
	}
	o.duration, o.warmup = durationS, warmupS

	if base == "" {
		return nil, errors.New("-url is required (the node's https://HOST:PORT)")
	}
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("-url %q: want https://HOST[:PORT] with no path (the path is -sso-path)", base)
	}
	o.base = u
	if !strings.HasPrefix(o.ssoPath, "/") {
		return nil, fmt.Errorf("-sso-path %q must start with /", o.ssoPath)
	}
	if o.connect == "" {
		o.connect = u.Host
		if u.Port() == "" {
			o.connect = net.JoinHostPort(u.Hostname(), "443")
		}
	}
	if _, _, err := net.SplitHostPort(o.connect); err != nil {
		return nil, fmt.Errorf("-connect %q: want HOST:PORT", o.connect)
	}
	if o.spn == "" {
		o.spn = "HTTP/" + u.Hostname()
	}
	for _, s := range users {
		name, pass, ok := strings.Cut(s, ":")
		if !ok || name == "" || pass == "" {
			return nil, fmt.Errorf("-user %q: want USER:PASSWORD", clipString(s, 40))
		}
		o.creds = append(o.creds, credential{user: name, password: pass})
	}
	for _, c := range ccaches {
		o.creds = append(o.creds, credential{ccache: c})
	}
	if len(o.creds) == 0 {
		return nil, errors.New("give at least one account: -user USER:PASSWORD or -ccache FILE")
	}
	switch {
	case o.concurrency < 1 || o.concurrency > maxConcurrency:
		return nil, fmt.Errorf("-c %d: want 1 to %d workers", o.concurrency, maxConcurrency)
	case o.duration <= 0 || o.duration > maxDuration:
		return nil, fmt.Errorf("-d %s: want more than 0 and at most %s", o.duration, maxDuration)
	case o.warmup < 0 || o.warmup > maxWarmup:
		return nil, fmt.Errorf("-warmup %s: want 0 to %s", o.warmup, maxWarmup)
	case o.timeout <= 0 || o.timeout > maxTimeout:
		return nil, fmt.Errorf("-timeout %s: want more than 0 and at most %s", o.timeout, maxTimeout)
	case o.maxLogins < 1 || o.maxLogins > maxLogins:
		return nil, fmt.Errorf("-max %d: want 1 to %d", o.maxLogins, maxLogins)
	case o.nodePID < 0:
		return nil, fmt.Errorf("-node-pid %d: want a process ID", o.nodePID)
	}
	if o.metricsURL != "" {
		m, err := url.Parse(o.metricsURL)
		if err != nil || (m.Scheme != "http" && m.Scheme != "https") || m.Host == "" {
			return nil, fmt.Errorf("-metrics %q: want http://HOST:PORT/metrics", o.metricsURL)
		}
	}
	return &o, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its outputs and exit status: 0 done, 1 failed, 2 bad
// flags.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "logins: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "logins: %v\n", err)
		return 1
	}
	summary := stdout
	if o.jsonOut == "-" {
		summary = stderr
	}
	rep.print(summary)
	if o.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			fmt.Fprintf(stderr, "logins: %v\n", err)
			return 1
		}
		b = append(b, '\n')
		if o.jsonOut == "-" {
			_, err = stdout.Write(b)
		} else {
			err = os.WriteFile(o.jsonOut, b, 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "logins: write JSON report: %v\n", err)
			return 1
		}
	}
	return 0
}

// bench checks that the node, its metrics and the KDC answer, logs the
// workers in, runs the warm-up and the measured phase, and reports.
func bench(ctx context.Context, o *options, log io.Writer) (*report, error) {
	conf, err := config.Load(o.krb5Conf)
	if err != nil {
		return nil, fmt.Errorf("load krb5 config %s: %w", o.krb5Conf, err)
	}
	realm := o.realm
	if realm == "" {
		realm = conf.LibDefaults.DefaultRealm
	}
	roots, err := loadRoots(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificates: %w", err)
	}
	target := o.base.Scheme + "://" + o.base.Host + o.ssoPath
	probe := newHTTPClient(o.connect, o.base.Hostname(), roots, min(o.timeout, 10*time.Second))
	status, reason, err := (&worker{hc: probe, url: target}).login(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("cannot reach the auth node at %s (dialling %s): %w", target, o.connect, err)
	}
	if status != http.StatusUnauthorized {
		fmt.Fprintf(log, "logins: warning: %s without a Negotiate header answered %d %s, not 401 (is this the sso_path?)\n", target, status, reason)
	}

	var m *metricsProbe
	if o.metricsURL != "" {
		m = &metricsProbe{url: o.metricsURL, hc: &http.Client{Timeout: 10 * time.Second}}
		if _, err := m.scrape(ctx); err != nil {
			return nil, fmt.Errorf("read the node's metrics: %w", err)
		}
	}
	if o.nodePID > 0 {
		if _, err := procCPU(o.nodePID); err != nil {
			return nil, fmt.Errorf("-node-pid %d: read its CPU time: %w", o.nodePID, err)
		}
	}

	fmt.Fprintf(log, "logins: logging %d workers in (%s)\n", o.concurrency, strings.Join(credNames(o.creds), ", "))
	clocks := make(map[string]*usecClock)
	workers := make([]*worker, o.concurrency)
	for i := range workers {
		c := o.creds[i%len(o.creds)]
		cl, err := login(c, conf, realm, o.spn)
		if err != nil {
			return nil, fmt.Errorf("worker %d: %w", i+1, err)
		}
		defer cl.Destroy()
		// One clock per client principal, as the node's replay cache
		// keys authenticators by client.
		p := strings.ToLower(cl.Credentials.CName().PrincipalNameString() + "@" + cl.Credentials.Domain())
		if clocks[p] == nil {
			clocks[p] = &usecClock{}
		}
		workers[i] = &worker{
			hc:    newHTTPClient(o.connect, o.base.Hostname(), roots, o.timeout),
			url:   target,
			blobs: &blobMaker{cl: cl, spn: o.spn, clock: clocks[p], mutual: o.mutual},
		}
	}

	budget := new(atomic.Int64)
	budget.Store(int64(o.maxLogins))
	rep := &report{
		URL: target, Users: credNames(o.creds), Concurrency: o.concurrency, SPN: o.spn, Mutual: o.mutual,
		Started: time.Now().UTC().Format(time.RFC3339),
	}
	if o.warmup > 0 {
		fmt.Fprintf(log, "logins: warm-up for %s\n", o.warmup)
		wt, el := phase(ctx, workers, o.warmup, budget)
		rep.Warmup = phaseSummary(wt, el)
	}
	if ctx.Err() != nil {
		return nil, errors.New("interrupted during the warm-up")
	}

	// Between the phases no request is in flight: the snapshots bracket
	// exactly the measured logins.
	before := sample(ctx, o.nodePID, m)
	if before.err != nil {
		return nil, before.err
	}
	fmt.Fprintf(log, "logins: measuring for %s (at most %d more logins)\n", o.duration, max(budget.Load(), 0))
	t, elapsed := phase(ctx, workers, o.duration, budget)
	after := sample(context.WithoutCancel(ctx), o.nodePID, m)
	if after.err != nil {
		return nil, after.err
	}
	rep.Interrupted = ctx.Err() != nil
	rep.fill(t, elapsed, workers, before, after, o.ldapMetric)
	if rep.Node != nil {
		rep.Node.PID = o.nodePID
	}
	return rep, nil
}

func credNames(cs []credential) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	return out
}

// metricsProbe reads the node's /metrics page.
type metricsProbe struct {
	url string
	hc  *http.Client
}

func (m *metricsProbe) scrape(ctx context.Context) (snapshot, error) {
	return fetchMetrics(ctx, m.hc, m.url)
}

// point is what is read at each end of the measured phase.
type point struct {
	at      time.Time
	nodeCPU time.Duration // -1: not measured
	selfCPU time.Duration
	metrics snapshot // nil: not read
	err     error
}

func sample(ctx context.Context, pid int, m *metricsProbe) point {
	p := point{at: time.Now(), nodeCPU: -1, selfCPU: selfCPU()}
	if pid > 0 {
		cpu, err := procCPU(pid)
		if err != nil {
			p.err = fmt.Errorf("node process %d: read its CPU time: %w (did it exit?)", pid, err)
			return p
		}
		p.nodeCPU = cpu
	}
	if m != nil {
		snap, err := m.scrape(ctx)
		if err != nil {
			p.err = fmt.Errorf("read the node's metrics: %w", err)
			return p
		}
		p.metrics = snap
	}
	return p
}
