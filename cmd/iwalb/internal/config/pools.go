package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"

	"github.com/iwalb/iwalb/internal/hostname"
	"github.com/iwalb/iwalb/lb"
	"github.com/iwalb/iwalb/lb/probe"
)

// rawPool is one item of the pools list; configs/l4.yaml documents it.
type rawPool struct {
	At       pos          `yaml:"-"`
	Name     str          `yaml:"name"`
	Policy   str          `yaml:"policy"`
	Backends []rawBackend `yaml:"backends"`
	Health   rawHealth    `yaml:"health"`
}

type rawBackend struct {
	At       pos     `yaml:"-"`
	Name     str     `yaml:"name"`
	Addr     str     `yaml:"addr"`
	FQDN     str     `yaml:"fqdn"`
	Weight   integer `yaml:"weight"`
	MaxConns integer `yaml:"max_conns"`
}

type rawHealth struct {
	At           pos      `yaml:"-"`
	Check        str      `yaml:"check"`
	Path         str      `yaml:"path"`
	ExpectStatus integer  `yaml:"expect_status"`
	CAFile       str      `yaml:"ca_file"`
	Interval     duration `yaml:"interval"`
	Timeout      duration `yaml:"timeout"`
	Rise         integer  `yaml:"rise"`
	Fall         integer  `yaml:"fall"`
}

// defaultHealthPath is what an https check asks for without a path: the
// auth node's readiness. The other defaults of a health section are lb's;
// without one a pool has no active checks, only passive marking on dial
// failures.
const defaultHealthPath = "/readyz"

// The active health checks a pool may run.
const (
	checkTCP   = "tcp"
	checkTLS   = "tls"
	checkHTTPS = "https"
)

// plainName is what pool, backend and listener names may be made of: they end
// up in log lines and metric labels.
var plainName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// poolConfig is a validated pool: the lb configuration, plus the health
// check's settings kept as data so that tests can see them (the probe
// itself is a function).
type poolConfig struct {
	lb.Config
	Check        string // tcp, tls or https; "" without active checks
	Path         string // https only
	ExpectStatus int    // https only
	CAFile       string // absolute; tls and https only
}

// pools validates the pools list and returns the pools, plus the line of
// each valid pool name, which routes look up.
func (c *checker) pools(raw []rawPool) (out []poolConfig, lines map[string]int) {
	lines = map[string]int{}
	for i, rp := range raw {
		p := fmt.Sprintf("pools[%d]", i)
		pc := poolConfig{Config: lb.Config{Name: rp.Name.V, Policy: lb.PolicyName(rp.Policy.V)}}
		c.labelName(rp.Name, rp.At, p, "pool name", "", lines)
		switch lb.PolicyName(rp.Policy.V) {
		case "":
			pc.Policy = lb.PolicyRoundRobin
		case lb.PolicyRoundRobin, lb.PolicyLeastConn, lb.PolicyClientIPHash:
		default:
			c.add(rp.Policy.Line, "%s.policy: unknown policy %q; use %s, %s or %s",
				p, rp.Policy.V, lb.PolicyRoundRobin, lb.PolicyLeastConn, lb.PolicyClientIPHash)
		}
		pc.Backends = c.backends(rp, p)
		c.health(rp.Health, p+".health", &pc)
		out = append(out, pc)
	}
	return out, lines
}

// backends checks a pool's backends: at least one, unique names, dialable
// addresses.
func (c *checker) backends(rp rawPool, p string) []lb.BackendConfig {
	if len(rp.Backends) == 0 {
		c.add(rp.At.Line, "%s: a pool needs at least one backend under backends", p)
		return nil
	}
	var out []lb.BackendConfig
	names := map[string]int{}
	for i, rb := range rp.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", p, i)
		b := lb.BackendConfig{Name: rb.Name.V, Addr: rb.Addr.V, FQDN: rb.FQDN.V, Weight: 1, MaxConns: rb.MaxConns.V}
		c.labelName(rb.Name, rb.At, bp, "backend name", " in the pool", names)
		if c.needStr(rb.Addr, rb.At, bp, "addr") && c.hostPort(rb.Addr, bp+".addr") {
			if host, _, _ := net.SplitHostPort(rb.Addr.V); host == "" {
				c.add(rb.Addr.Line, "%s.addr: %q has no host; name the backend (like 10.0.0.11:8443)", bp, rb.Addr.V)
			}
		}
		if rb.FQDN.Set && !hostname.FQDN(rb.FQDN.V) {
			c.add(rb.FQDN.Line, "%s.fqdn: %q is not a fully qualified host name (like auth1.example.test)", bp, rb.FQDN.V)
		}
		if rb.Weight.Set {
			b.Weight = rb.Weight.V
			if rb.Weight.V < 1 {
				c.add(rb.Weight.Line, "%s.weight: must be at least 1, got %d", bp, rb.Weight.V)
			}
		}
		if rb.MaxConns.V < 0 {
			c.add(rb.MaxConns.Line, "%s.max_conns: must be 0 (no limit) or more, got %d", bp, rb.MaxConns.V)
		}
		out = append(out, b)
	}
	return out
}

// health checks a pool's health section and sets pc's health check and
// probe. Only what a check uses may be given, so that a path under a tcp
// check does not look like it is being checked.
func (c *checker) health(h rawHealth, p string, pc *poolConfig) {
	if !h.At.Set {
		return
	}
	pc.Check = checkTCP
	if h.Check.Set {
		pc.Check = h.Check.V
	}
	hc := lb.HealthCheck{
		Interval: c.positive(h.Interval, p+".interval", lb.DefaultInterval),
		Timeout:  c.positive(h.Timeout, p+".timeout", lb.DefaultTimeout),
		Rise:     c.atLeastOne(h.Rise, p+".rise", lb.DefaultRise),
		Fall:     c.atLeastOne(h.Fall, p+".fall", lb.DefaultFall),
	}
	switch {
	case !h.Timeout.Set:
		hc.Timeout = min(hc.Timeout, hc.Interval) // a short interval shortens the default
	case hc.Timeout > hc.Interval:
		c.add(h.Timeout.Line, "%s.timeout: %s is longer than the interval %s; a check must end before the next begins", p, hc.Timeout, hc.Interval)
	}
	switch pc.Check {
	case checkTCP, checkTLS, checkHTTPS:
	default:
		c.add(h.Check.Line, "%s.check: unknown check %q; use tcp, tls or https", p, pc.Check)
		pc.Health = hc
		return
	}
	if pc.Check != checkHTTPS {
		for _, s := range []struct {
			set  bool
			line int
			key  string
		}{{h.Path.Set, h.Path.Line, "path"}, {h.ExpectStatus.Set, h.ExpectStatus.Line, "expect_status"}} {
			if s.set {
				c.add(s.line, "%s.%s: applies to check: https only", p, s.key)
			}
		}
	}
	if pc.Check == checkTCP && h.CAFile.Set {
		c.add(h.CAFile.Line, "%s.ca_file: applies to check: tls or https only", p)
	}

	var tlsConf *tls.Config
	if pc.Check != checkTCP {
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		if h.CAFile.Set {
			if abs, roots, ok := c.readCertPool(h.CAFile, p+".ca_file"); ok {
				pc.CAFile, tlsConf.RootCAs = abs, roots
			}
		}
	}
	switch pc.Check {
	case checkTCP:
		hc.Probe = lb.TCPConnect
	case checkTLS:
		hc.Probe = probe.TLS(tlsConf)
	case checkHTTPS:
		pc.Path, pc.ExpectStatus = defaultHealthPath, http.StatusOK
		if h.Path.Set {
			pc.Path = h.Path.V
			if !strings.HasPrefix(h.Path.V, "/") {
				c.add(h.Path.Line, "%s.path: %q must start with \"/\"", p, h.Path.V)
			}
		}
		if h.ExpectStatus.Set {
			pc.ExpectStatus = h.ExpectStatus.V
			if h.ExpectStatus.V < 100 || h.ExpectStatus.V > 599 {
				c.add(h.ExpectStatus.Line, "%s.expect_status: %d is not an HTTP status (100 to 599)", p, h.ExpectStatus.V)
			}
		}
		hc.Probe = probe.HTTPS(tlsConf, pc.Path, pc.ExpectStatus)
	}
	pc.Health = hc
}

// atLeastOne returns i, def when i is unset, and reports i < 1.
func (c *checker) atLeastOne(i integer, path string, def int) int {
	if !i.Set {
		return def
	}
	if i.V < 1 {
		c.add(i.Line, "%s: must be at least 1, got %d", path, i.V)
		return def
	}
	return i.V
}
