// Package config loads iwalb's YAML configuration file: it parses the file,
// reports every problem at once as "FILE:LINE: reason", and builds the
// immutable runtime values that the roles (the auth node, the pools, the
// L4 balancer's listeners and the L7 front doors) are started with.
//
// Typical use:
//
//	f, err := config.Load("/etc/iwalb/iwalb.yaml")
//	if err != nil {
//		fmt.Fprintln(os.Stderr, err) // config.Problems, one line each
//		os.Exit(2)
//	}
//	logger := f.Logger(os.Stderr, nil)
//	if cfg, ok := f.AuthNode(); ok {
//		node, err := authnode.New(cfg, authnode.Options{Logger: logger})
//		...
//	}
//	pools, err := f.Pools(registry, lb.Options{Logger: logger}) // an lb.Registry
//	doors, err := f.L7Redirect(pools) // each with rules over pools
//	listeners, err := f.L4(pools, handlers) // handlers: front door name → l4.HandoffListener
//
// Load parses and validates, reading every file the configuration names: a
// file that would fail at run time (a missing keytab, a certificate for
// the wrong name, an unset environment variable) is refused, with its
// lines, before anything is built. Building the runtime (pools, servers,
// handlers) and binding listeners are the command's steps that follow;
// `iwalb check` builds too, without binding. Secrets are read during Load,
// so a File holds them; it never prints them.
//
// This package does not watch files, and it knows nothing of how a role
// uses its values; a reload is another Load.
//
// Adding a section takes one raw struct (the YAML shape, with the leaf
// types of this package so that each value knows its line), a field for it in
// rawFile, and one check function that validates it and builds its runtime
// value.
package config

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/iwalb/iwalb/authnode"
	"github.com/iwalb/iwalb/l4"
	"github.com/iwalb/iwalb/lb"
)

// rawFile is the top level of the YAML file.
type rawFile struct {
	Log      rawLog      `yaml:"log"`
	Metrics  rawMetrics  `yaml:"metrics"`
	AuthNode rawAuthNode `yaml:"authnode"`
	Pools    []rawPool   `yaml:"pools"`
	L4       rawL4       `yaml:"l4"`
	L7       rawL7       `yaml:"l7redirect"`
	Admin    rawAdmin    `yaml:"admin"`
	Shutdown rawShutdown `yaml:"shutdown"`
}

type rawShutdown struct {
	At           pos      `yaml:"-"`
	DrainTimeout duration `yaml:"drain_timeout"`
}

// DefaultDrainTimeout is shutdown.drain_timeout when the file sets none:
// browsers reconnect, and a Negotiate exchange in flight needs a moment.
const DefaultDrainTimeout = 10 * time.Second

type rawLog struct {
	At     pos `yaml:"-"`
	Level  str `yaml:"level"`
	Format str `yaml:"format"`
}

type rawMetrics struct {
	At       pos     `yaml:"-"`
	Listen   str     `yaml:"listen"`
	MaxConns integer `yaml:"max_conns"`
}

type rawAdmin struct {
	At       pos     `yaml:"-"`
	Listen   str     `yaml:"listen"`
	MaxConns integer `yaml:"max_conns"`
}

// PrivateListener is one of the process's own HTTP listeners (metrics,
// admin): where it listens and how many connections it holds open at once.
type PrivateListener struct {
	// Listen is host:port; "" means the listener is not configured.
	Listen string
	// MaxConns bounds the connections open at once, counted from accept.
	MaxConns int
}

// DefaultPrivateMaxConns is max_conns of the metrics and admin listeners
// when the file sets none: a Prometheus server or two and an operator need
// a handful; the bound keeps a flood on them from taking the file
// descriptors that the front doors need.
const DefaultPrivateMaxConns = 64

// File is a loaded, valid configuration. It is immutable: accessors return
// copies.
type File struct {
	logLevel slog.Level
	logJSON  bool
	metrics  PrivateListener
	admin    PrivateListener
	authNode *authnode.Config
	pools    []poolConfig
	l4       []l4Listener
	l7       []l7Listener
	drain    time.Duration
	hash     string
	warnings Problems
	certs    []Certificate
}

// Certificate is a server certificate the file configures, for its expiry
// metric.
type Certificate struct {
	// Server is "authnode", or "l7redirect/<listener name>".
	Server string
	// Name is the first name the certificate covers.
	Name     string
	NotAfter time.Time
	// Chain is the certificate and the rest of its file: the
	// intermediates the server sends.
	Chain []*x509.Certificate
}

// ServedNames are the host names browsers reach through what the file
// configures, sorted: the auth node's own, the L4 routes' server names, the
// L7 front doors' names, and the pools' backend FQDNs (the names the front
// doors redirect to). Each needs Negotiate allowed in browsers.
func (f *File) ServedNames() []string {
	var out []string
	if f.authNode != nil {
		out = append(out, f.authNode.FQDN)
	}
	for _, l := range f.l4 {
		for _, r := range l.routes {
			out = append(out, r.serverNames...)
		}
	}
	for _, l := range f.l7 {
		out = append(out, l.Names...)
	}
	for _, p := range f.pools {
		for _, b := range p.Backends {
			if b.FQDN != "" {
				out = append(out, b.FQDN)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// NegotiateName is a host name that browsers send a Kerberos ticket to
// through what the file configures: the auth nodes behind it need
// HTTP/<Name> in their keytab.
type NegotiateName struct {
	// Name is a host name, or "*.<domain>" for an L4 route's wildcard:
	// browsers then ask a ticket for each name under it, and no SPN
	// matches the wildcard itself.
	Name string
	// Via says what serves it, for the operator: "authnode.fqdn", "l4
	// listener public, route to pool authnodes", "l7redirect sso, a
	// redirect target of pool authnodes".
	Via string
	// Backends are the FQDNs of the nodes a browser reaches under Name,
	// which must read its tickets: the node's own for authnode.fqdn and
	// for a redirect target, every backend FQDN of an L4 route's pool
	// (backends without one are left out).
	Backends []string
}

// NegotiateNames are the names browsers ask a ticket for, in file order:
// the auth node's own, the server names of L4 routes that lead to a pool
// (the nodes, by passthrough; not those that lead to an L7 front door,
// which takes no ticket), and the backend FQDNs of the pools the L7 front
// doors redirect to.
func (f *File) NegotiateNames() []NegotiateName {
	var out []NegotiateName
	if f.authNode != nil {
		out = append(out, NegotiateName{f.authNode.FQDN, "authnode.fqdn", []string{f.authNode.FQDN}})
	}
	backends := func(pool string) []string {
		var fqdns []string
		for _, p := range f.pools {
			if p.Name != pool {
				continue
			}
			for _, b := range p.Backends {
				if b.FQDN != "" {
					fqdns = append(fqdns, b.FQDN)
				}
			}
		}
		return fqdns
	}
	for _, l := range f.l4 {
		for _, r := range l.routes {
			if r.pool == "" {
				continue
			}
			for _, n := range r.serverNames {
				out = append(out, NegotiateName{n, fmt.Sprintf("l4 listener %s, route to pool %s", l.cfg.Name, r.pool), backends(r.pool)})
			}
		}
	}
	for _, l := range f.l7 {
		rules := l.rules
		if l.def != nil {
			rules = append(slices.Clone(rules), *l.def)
		}
		seen := map[string]bool{}
		for _, r := range rules {
			if seen[r.pool] {
				continue
			}
			seen[r.pool] = true
			for _, fqdn := range backends(r.pool) {
				out = append(out, NegotiateName{fqdn, fmt.Sprintf("l7redirect %s, a redirect target of pool %s", l.Name, r.pool), []string{fqdn}})
			}
		}
	}
	return out
}

// Certificates lists the server certificates of the auth node and the L7
// front doors, as loaded.
func (f *File) Certificates() []Certificate { return slices.Clone(f.certs) }

// Load reads, validates and builds the configuration file at path. Relative
// paths in the file are resolved against the file's folder. For a file it
// refuses (including one it cannot read or parse), the error is Problems,
// naming the file as path was given, warnings included; a file it loads
// may still have Warnings.
func Load(path string) (*File, error) {
	c := &checker{file: path}
	abs, err := filepath.Abs(path)
	if err != nil {
		c.add(0, "cannot resolve the file's folder: %v", err)
		return nil, c.problems
	}
	c.dir = filepath.Dir(abs)
	data, err := os.ReadFile(path)
	if err != nil {
		c.add(0, "cannot read: %s", reason(err))
		return nil, c.problems
	}
	root, ok := c.parse(data)
	if !ok {
		return nil, c.problems
	}
	var raw rawFile
	c.decodeMapping(root, "", reflect.ValueOf(&raw).Elem())
	f := c.build(&raw)
	if len(c.problems) > 0 {
		return nil, append(c.problems, c.warnings...).sorted()
	}
	f.warnings = c.warnings.sorted()
	f.certs = c.certs
	sum := sha256.Sum256(data)
	f.hash = hex.EncodeToString(sum[:6])
	return f, nil
}

// Hash names the file's contents (the first 12 hex digits of their
// SHA-256), so that an operator can tell which version a process runs.
// Files it names (keytabs, certificates) are not part of it.
func (f *File) Hash() string { return f.hash }

// DrainTimeout is how long a stopping process lets connections and
// requests in flight finish (shutdown.drain_timeout).
func (f *File) DrainTimeout() time.Duration { return f.drain }

// Warnings returns the problems of a loaded file that `iwalb check` only
// reports and `iwalb run` refuses (see Problem.Warning).
func (f *File) Warnings() Problems { return f.warnings }

// yamlErrLine matches yaml.v3's syntax errors, "yaml: line 7: reason".
var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse turns data into a node tree; nil with ok for an empty file.
func (c *checker) parse(data []byte) (root *yaml.Node, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		c.addYAMLError(err)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		c.add(extra.Line, "a second YAML document (after ---) is not allowed; put everything in one")
		return nil, false
	case !errors.Is(err, io.EOF):
		c.addYAMLError(err)
		return nil, false
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], true
	}
	return &doc, true
}

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to
// its scanner). For these, yaml.v3 reports a 0-based line: that of the
// start of the enclosing construct (the flow list left open, the mapping
// missing a key).
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

func (c *checker) addYAMLError(err error) {
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		c.add(line, "YAML syntax: %s", m[2])
		return
	}
	c.add(0, "YAML syntax: %s", err)
}

// build validates every section and builds the File. Its result is only
// used when no problem was found.
func (c *checker) build(raw *rawFile) *File {
	f := &File{}
	f.logLevel, f.logJSON = c.log(raw.Log)
	f.drain = c.positive(raw.Shutdown.DrainTimeout, "shutdown.drain_timeout", DefaultDrainTimeout)
	f.metrics = c.metrics(raw.Metrics)
	f.admin = c.admin(raw.Admin)
	if raw.AuthNode.At.Set {
		cfg := c.authNode(raw.AuthNode)
		f.authNode = &cfg
	}
	pools, poolLines := c.pools(raw.Pools)
	// The front doors come first: l4 routes may lead to them.
	doors := map[string]*l7Listener{}
	if raw.L7.At.Set {
		l4Addrs := map[string]int{}
		for _, l := range raw.L4.Listeners {
			if l.Listen.V != "" {
				l4Addrs[l.Listen.V] = l.Listen.Line
			}
		}
		f.l7 = c.l7(raw.L7, pools, poolLines, l4Addrs)
		for i := range f.l7 {
			if n := f.l7[i].Name; n != "" && doors[n] == nil {
				doors[n] = &f.l7[i]
			}
		}
	}
	if raw.L4.At.Set {
		f.l4 = c.l4(raw.L4, poolLines, doors)
	}
	for i, l := range f.l7 {
		if l.Listen == "" && !l.routed {
			rl := raw.L7.Listeners[i]
			line := rl.Listen.Line
			if line == 0 {
				line = rl.At.Line
			}
			c.add(line, "l7redirect.listeners[%d]: no listen address and no l4 route with l7redirect: %s, so nothing reaches it", i, l.Name)
		}
	}
	if len(c.problems) > 0 {
		return f
	}
	if !raw.AuthNode.At.Set && !raw.L4.At.Set && !raw.L7.At.Set {
		c.add(0, "nothing to run: add an authnode, l4 or l7redirect section")
		return f
	}
	f.pools = pools
	return f
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (c *checker) log(r rawLog) (level slog.Level, json bool) {
	level = slog.LevelInfo
	if r.Level.Set {
		l, ok := logLevels[r.Level.V]
		if !ok {
			c.add(r.Level.Line, "log.level: unknown level %q; use debug, info, warn or error", r.Level.V)
		}
		level = l
	}
	switch r.Format.V {
	case "", "text":
	case "json":
		json = true
	default:
		c.add(r.Format.Line, "log.format: unknown format %q; use text or json", r.Format.V)
	}
	return level, json
}

func (c *checker) metrics(r rawMetrics) PrivateListener {
	if !r.At.Set || !c.needStr(r.Listen, r.At, "metrics", "listen") {
		return PrivateListener{}
	}
	maxConns := c.privateMaxConns(r.MaxConns, "metrics")
	if !c.hostPort(r.Listen, "metrics.listen") {
		return PrivateListener{}
	}
	return PrivateListener{Listen: r.Listen.V, MaxConns: maxConns}
}

// admin checks the admin listener: its API drains backends and has no
// authentication of its own, so it may listen on loopback only.
func (c *checker) admin(r rawAdmin) PrivateListener {
	if !r.At.Set || !c.needStr(r.Listen, r.At, "admin", "listen") {
		return PrivateListener{}
	}
	maxConns := c.privateMaxConns(r.MaxConns, "admin")
	if !c.hostPort(r.Listen, "admin.listen") {
		return PrivateListener{}
	}
	host, _, _ := net.SplitHostPort(r.Listen.V)
	if ip, err := netip.ParseAddr(host); (err != nil || !ip.IsLoopback()) && host != "localhost" {
		c.add(r.Listen.Line, "admin.listen: %q is not a loopback address; the admin API has no authentication, so it listens on loopback only", r.Listen.V)
		return PrivateListener{}
	}
	return PrivateListener{Listen: r.Listen.V, MaxConns: maxConns}
}

// privateMaxConns checks max_conns of the metrics or admin listener.
func (c *checker) privateMaxConns(n integer, path string) int {
	if !n.Set {
		return DefaultPrivateMaxConns
	}
	if n.V <= 0 {
		c.add(n.Line, "%s.max_conns: must be a positive number, got %d", path, n.V)
		return DefaultPrivateMaxConns
	}
	return n.V
}

// AuthNode returns the auth node's configuration, with defaults applied,
// paths absolute and secrets read; false when the file has no authnode
// section.
func (f *File) AuthNode() (authnode.Config, bool) {
	if f.authNode == nil {
		return authnode.Config{}, false
	}
	cfg := *f.authNode
	cfg.ProxyTrusted = slices.Clone(cfg.ProxyTrusted)
	cfg.APIClients = slices.Clone(cfg.APIClients)
	return cfg, true
}

// PoolConfigs returns the pools' configurations with defaults applied, in
// file order; HealthCheck.Probe is built from the health section.
func (f *File) PoolConfigs() []lb.Config {
	out := make([]lb.Config, len(f.pools))
	for i, p := range f.pools {
		out[i] = p.Config
		out[i].Backends = slices.Clone(p.Backends)
	}
	return out
}

// Pools builds the configured pools into a Set with r, so that backends
// the active Set of r already has keep their state (see lb.Registry). It
// does not activate the Set. Without pools the Set is empty.
func (f *File) Pools(r *lb.Registry, opts lb.Options) (*lb.Set, error) {
	return r.NewSet(f.PoolConfigs(), opts)
}

// L4 returns the L4 listeners in file order, each with a Router whose
// routes lead to the pools of set (from Pools) and to the L7 front doors of
// doors, by name (an l4.HandoffListener that the front door serves); nil when the file
// has no l4 section.
func (f *File) L4(set *lb.Set, doors map[string]l4.ConnHandler) ([]L4Listener, error) {
	var out []L4Listener
	for _, l := range f.l4 {
		cfg, err := l.config(set, doors)
		if err != nil {
			return nil, err
		}
		out = append(out, L4Listener{Listen: l.listen, Config: cfg})
	}
	return out, nil
}

// L7Redirect returns the L7 front doors in file order, each with rules
// leading to the pools of set (from Pools); nil when the file has no
// l7redirect section.
func (f *File) L7Redirect(set *lb.Set) ([]L7Listener, error) {
	var out []L7Listener
	for _, l := range f.l7 {
		cfg, err := l.config(set)
		if err != nil {
			return nil, err
		}
		out = append(out, cfg)
	}
	return out, nil
}

// Metrics returns the Prometheus listener; its Listen is "" when metrics
// are not served.
func (f *File) Metrics() PrivateListener { return f.metrics }

// Admin returns the admin API's listener; its Listen is "" when the admin
// API is not served.
func (f *File) Admin() PrivateListener { return f.admin }

// LogLevel is the configured log level (log.level).
func (f *File) LogLevel() slog.Level { return f.logLevel }

// Logger returns a logger writing to w at the configured level and format;
// level, when not nil, is the level instead of the file's: a slog.LevelVar
// lets a reload change it.
func (f *File) Logger(w io.Writer, level slog.Leveler) *slog.Logger {
	if level == nil {
		level = f.logLevel
	}
	opts := &slog.HandlerOptions{Level: level}
	if f.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// AdminListen returns admin.listen of the file at path ("" when it has
// none), read even when the rest of the file has problems: `iwalb reload`
// asks the running process through it, and the process reports the
// problems.
func AdminListen(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", Problems{{File: path, Msg: "cannot read: " + reason(err)}}
	}
	var f struct {
		Admin struct {
			Listen string `yaml:"listen"`
		} `yaml:"admin"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return f.Admin.Listen, nil
}
