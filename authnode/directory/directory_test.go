package directory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// These tests need no directory: they cover configuration, filters, account
// checks and the behaviour against servers that refuse or never answer.

var testAlice = Principal{Name: "alice", Realm: "EXAMPLE.TEST", SID: "S-1-5-21-1004336348-1177238915-682003330-1103"}

func TestNewValidates(t *testing.T) {
	ok := Config{URL: "ldaps://dc1.example.test", BindDN: "CN=svc", BindPassword: "pw", BaseDN: "DC=example,DC=test"}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string // "" means New succeeds
	}{
		{"ldaps", func(*Config) {}, ""},
		{"starttls", func(c *Config) { c.URL, c.StartTLS = "ldap://dc1:389", true }, ""},
		{"plaintext allowed", func(c *Config) { c.URL, c.AllowPlaintext = "ldap://dc1", true }, ""},
		{"plaintext refused", func(c *Config) { c.URL = "ldap://dc1:389" }, "bind password would travel in clear"},
		{"bad scheme", func(c *Config) { c.URL = "http://dc1" }, "scheme must be ldaps:// or ldap://"},
		{"no host", func(c *Config) { c.URL = "ldaps://" }, "has no host"},
		{"ldaps with starttls", func(c *Config) { c.StartTLS = true }, "already TLS"},
		{"no bind DN", func(c *Config) { c.BindDN = "" }, "BindDN is required"},
		{"no bind password", func(c *Config) { c.BindPassword = "" }, "BindPassword is required"},
		{"no base DN", func(c *Config) { c.BaseDN = "" }, "BaseDN is required"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "Timeout"},
		{"negative pool", func(c *Config) { c.PoolSize = -1 }, "PoolSize"},
		{"negative queue timeout", func(c *Config) { c.QueueTimeout = -time.Second }, "QueueTimeout"},
		{"negative SID cache size", func(c *Config) { c.SIDCacheSize = -1 }, "SIDCacheSize"},
		{"negative SID cache TTL", func(c *Config) { c.SIDCacheNegativeTTL = -time.Second }, "SIDCacheNegativeTTL"},
		{"ticket check", func(c *Config) { c.RequiredGroupCheck = GroupCheckTicket }, ""},
		{"directory check", func(c *Config) { c.RequiredGroupCheck = GroupCheckDirectory }, ""},
		{"unknown check", func(c *Config) { c.RequiredGroupCheck = "pac" }, `RequiredGroupCheck "pac"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			d, err := New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if d.cfg.Timeout != DefaultTimeout || d.cfg.PoolSize != DefaultPoolSize || d.cfg.QueueTimeout != DefaultQueueTimeout ||
					d.cfg.SIDCacheSize != DefaultSIDCacheSize || d.cfg.SIDCacheTTL != DefaultSIDCacheTTL ||
					d.cfg.SIDCacheNegativeTTL != DefaultSIDCacheNegativeTTL || d.cfg.RequiredGroupCheck == "" {
					t.Errorf("defaults not applied: %s", d.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	cfg := Config{URL: "ldaps://dc1", BindDN: "CN=svc", BindPassword: "S3cret-Value", BaseDN: "DC=x"}
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("start", "ldap", cfg)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("start", "ldap", &cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%v", &cfg), logged.String()} {
		if strings.Contains(s, "S3cret-Value") {
			t.Errorf("formatted Config shows the password: %s", s)
		}
	}
}

func TestNameMatches(t *testing.T) {
	const realm = "EXAMPLE.TEST"
	tests := []struct {
		user, realm, sam, upn string
		want                  bool
	}{
		{"alice", realm, "alice", "alice@example.test", true},
		{"ALICE", realm, "alice", "alice@example.test", true},
		{"alice", realm, "alice", "", true},
		// The bare name as UPN: an account whose sAMAccountName differs.
		{"al", realm, "alice.liddell", "al@EXAMPLE.TEST", true},
		{"alice@EXAMPLE.TEST", realm, "alice", "", true},
		{"alice@example.test", realm, "alice", "alice@example.test", true},
		{"alice.l@example.com", realm, "alice", "alice.l@example.com", true},
		// The SID's account is someone else.
		{"alice", realm, "mallory", "mallory@example.test", false},
		{"alice@example.test", realm, "mallory", "mallory@example.test", false},
		// Another suffix is only ever a UPN: never this domain's alice.
		{"alice@OTHER.TEST", realm, "alice", "alice@example.test", false},
		{"alice", "", "alice", "", true},
		{"alice", "", "bob", "alice@", false},
		{"", realm, "", "", false},
		{"@EXAMPLE.TEST", realm, "", "@EXAMPLE.TEST", false},
		{"alice@", realm, "alice", "alice@", false},
		{"*", realm, "alice", "alice@example.test", false},
		{"alice", realm, "", "", false},
	}
	for _, tt := range tests {
		if got := nameMatches(tt.user, tt.realm, tt.sam, tt.upn); got != tt.want {
			t.Errorf("nameMatches(%q, %q, %q, %q) = %t, want %t", tt.user, tt.realm, tt.sam, tt.upn, got, tt.want)
		}
	}
}

func TestParseSIDAndEscape(t *testing.T) {
	tests := []struct {
		sid, want string // want "" means malformed
	}{
		// [MS-DTYP] 2.4.2.2's example layout, and a domain user.
		{"S-1-5-32-544", `\01\02\00\00\00\00\00\05\20\00\00\00\20\02\00\00`},
		{"S-1-5-21-1004336348-1177238915-682003330-512",
			`\01\05\00\00\00\00\00\05\15\00\00\00\dc\f4\dc\3b\83\3d\2b\46\82\8b\a6\28\00\02\00\00`},
		{"S-1-1-0", `\01\01\00\00\00\00\00\01\00\00\00\00`},
		{"S-1-0x0000000000ff-7", `\01\01\00\00\00\00\00\ff\07\00\00\00`},
		{"S-1-5-4294967295", `\01\01\00\00\00\00\00\05\ff\ff\ff\ff`},
		{"", ""},
		{"S-1-5", ""},
		{"S-2-5-21", ""},
		{"X-1-5-21", ""},
		{"S-1-5-4294967296", ""},
		{"S-1-281474976710656-1", ""},
		{"S-1-5-21-*", ""},
		{"S-1-5-21-1)(objectSid=*", ""},
		{"S-1-5--1", ""},
		{"S-1-5-+1", ""},
		{"S-1-5" + strings.Repeat("-1", 16), ""},
		{"S-1-5-" + strings.Repeat("1", 300), ""},
	}
	for _, tt := range tests {
		b, err := parseSID(tt.sid)
		if tt.want == "" {
			if err == nil {
				t.Errorf("parseSID(%q) = %x, want an error", tt.sid, b)
			} else if len(err.Error()) > 400 {
				t.Errorf("parseSID error is %d bytes", len(err.Error()))
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSID(%q): %v", tt.sid, err)
			continue
		}
		got := escapeBytes(b)
		if got != tt.want {
			t.Errorf("escapeBytes(parseSID(%q)) = %s, want %s", tt.sid, got, tt.want)
		}
		if _, err := ldap.CompileFilter("(objectSid=" + got + ")"); err != nil {
			t.Errorf("filter for %q does not compile: %v", tt.sid, err)
		}
	}
	// Every byte value is escaped, so no value can end or extend the filter.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	esc := escapeBytes(all)
	if len(esc) != 3*256 || strings.Count(esc, `\`) != 256 || strings.Trim(esc, `\0123456789abcdef`) != "" {
		t.Fatalf("escapeBytes of all byte values: %q", esc)
	}
	f, err := ldap.CompileFilter("(objectSid=" + esc + ")")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Children[1].Data.Bytes(); !bytes.Equal(got, all) {
		t.Fatalf("the compiled filter matches %x, not the 256 byte values", got)
	}
}

// fileTime encodes t as AD's accountExpires (100 ns since 1601).
func fileTime(t time.Time) string {
	return fmt.Sprint((t.Unix()+11644473600)*1e7 + int64(t.Nanosecond()/100))
}

func TestAccountRefusal(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	computed := map[string]string{
		"locked out":                   "16",
		"password expired, not locked": "8388608",
		"garbage computed":             "x",
	}
	tests := []struct {
		name       string
		uac, exp   string
		wantErr    bool
		wantInText string
	}{
		{"enabled, never expires (0)", "512", "0", false, ""},
		{"enabled, never expires (max)", "512", fmt.Sprint(int64(math.MaxInt64)), false, ""},
		{"enabled, no attributes", "", "", false, ""},
		{"enabled, expires tomorrow", "512", fileTime(now.Add(24 * time.Hour)), false, ""},
		{"disabled", "514", "0", true, "userAccountControl 0x202"},
		{"expired yesterday", "512", fileTime(now.Add(-24 * time.Hour)), true, "expired 2026-11-23T12:00:00Z"},
		{"expires this instant", "512", fileTime(now), true, "expired"},
		{"garbage uac", "x", "0", true, "userAccountControl"},
		{"garbage expiry", "512", "soon", true, "accountExpires"},
		{"locked out", "512", "0", true, "locked out (msDS-User-Account-Control-Computed 0x10)"},
		{"password expired, not locked", "512", "0", false, ""},
		{"garbage computed", "512", "0", true, "msDS-User-Account-Control-Computed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := map[string][]string{}
			if tt.uac != "" {
				attrs["userAccountControl"] = []string{tt.uac}
			}
			if tt.exp != "" {
				attrs["accountExpires"] = []string{tt.exp}
			}
			want := ErrDisabled
			if c, ok := computed[tt.name]; ok {
				attrs["msDS-User-Account-Control-Computed"] = []string{c}
				want = ErrLockedOut
			}
			err := accountRefusal(ldap.NewEntry("CN=u,DC=x", attrs), now)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("accountRefusal = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, want) || !strings.Contains(err.Error(), tt.wantInText) {
				t.Fatalf("accountRefusal = %v, want %v mentioning %q", err, want, tt.wantInText)
			}
		})
	}
}

func TestBindHint(t *testing.T) {
	tests := map[string]string{
		"80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 52e, v4563": "AD data 52e: wrong password",
		"80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 533, v4563": "AD data 533: account disabled",
		"data 999, v1": "AD data 999",
		"no hint here": "",
	}
	for msg, want := range tests {
		if got := bindHint(errors.New(msg)); got != want {
			t.Errorf("bindHint(%q) = %q, want %q", msg, got, want)
		}
	}
}

// blackHole listens on loopback, accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	addr, _ := countingBlackHole(t)
	return addr
}

// countingBlackHole is blackHole that also tells how many connections it
// has accepted.
func countingBlackHole(t *testing.T) (addr string, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

func mustNew(t *testing.T, cfg Config) *Directory {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// unreachableConfigs are the three transports aimed at addr.
func unreachableConfigs(addr string, timeout time.Duration) map[string]Config {
	base := Config{BindDN: "CN=svc", BindPassword: "pw", BaseDN: "DC=x", Timeout: timeout}
	plain, starttls, ldaps := base, base, base
	plain.URL, plain.AllowPlaintext = "ldap://"+addr, true
	starttls.URL, starttls.StartTLS = "ldap://"+addr, true
	ldaps.URL = "ldaps://" + addr
	return map[string]Config{"plain": plain, "starttls": starttls, "ldaps": ldaps}
}

// TestUnavailable checks that every call reports, promptly and with the
// server's URL, ErrUnavailable when the server refuses connections, and
// ErrTimeout when it accepts them and never answers: a server that is down
// is told apart from one that is slow.
func TestUnavailable(t *testing.T) {
	servers := map[string]struct {
		addr string
		want error
	}{
		"refused":    {"127.0.0.1:1", ErrUnavailable},
		"black hole": {blackHole(t), ErrTimeout},
	}
	calls := map[string]func(context.Context, *Directory) error{
		"Lookup": func(ctx context.Context, d *Directory) error {
			_, _, err := d.Lookup(ctx, testAlice)
			return err
		},
		"Check":      func(ctx context.Context, d *Directory) error { return d.Check(ctx) },
		"ServerTime": func(ctx context.Context, d *Directory) error { _, err := d.ServerTime(ctx); return err },
	}
	for sname, srv := range servers {
		for tname, cfg := range unreachableConfigs(srv.addr, 300*time.Millisecond) {
			for cname, call := range calls {
				t.Run(sname+"/"+tname+"/"+cname, func(t *testing.T) {
					d := mustNew(t, cfg)
					start := time.Now()
					err := call(context.Background(), d)
					took := time.Since(start)
					if !errors.Is(err, srv.want) {
						t.Fatalf("err = %v, want %v", err, srv.want)
					}
					for _, other := range []error{ErrUnavailable, ErrTimeout, ErrBusy} {
						if other != srv.want && errors.Is(err, other) {
							t.Errorf("err = %v is also %v", err, other)
						}
					}
					if !strings.Contains(err.Error(), cfg.URL) {
						t.Errorf("error %q does not name the server %s", err, cfg.URL)
					}
					if took > 2*time.Second {
						t.Errorf("took %s with Timeout %s", took, cfg.Timeout)
					}
				})
			}
		}
	}
}

// TestCancelMidCall checks that cancelling ctx interrupts a call that the
// server would otherwise leave hanging for the whole (long) Timeout.
func TestCancelMidCall(t *testing.T) {
	addr := blackHole(t)
	for tname, cfg := range unreachableConfigs(addr, time.Minute) {
		t.Run(tname, func(t *testing.T) {
			d := mustNew(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			start := time.Now()
			_, _, err := d.Lookup(ctx, testAlice)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Lookup returned %s after cancel", took)
			}
			if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want context.Canceled and ErrUnavailable", err)
			}
		})
	}
	t.Run("deadline sooner than Timeout", func(t *testing.T) {
		d := mustNew(t, unreachableConfigs(addr, time.Minute)["plain"])
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := d.Check(ctx)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Check returned after %s with a 200ms deadline", took)
		}
		// The server accepted and then said nothing until the caller's
		// deadline: slow, not down.
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want context.DeadlineExceeded and ErrTimeout", err)
		}
	})
}

func TestClosedDirectory(t *testing.T) {
	d := mustNew(t, unreachableConfigs("127.0.0.1:1", time.Second)["plain"])
	d.Close()
	if _, _, err := d.Lookup(context.Background(), testAlice); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Lookup after Close = %v, want ErrUnavailable saying closed", err)
	}
}

// waitGoroutines waits for the goroutine count to drop to at most n; go-ldap
// lets a closed connection's reader goroutine finish on its own.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want <= %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNoGoroutineLeakUnavailable(t *testing.T) {
	addr := blackHole(t)
	before := runtime.NumGoroutine()
	for _, cfg := range unreachableConfigs(addr, 200*time.Millisecond) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		d.Lookup(ctx, testAlice)                  // cancelled
		d.Lookup(context.Background(), testAlice) // timed out
		cancel()
		d.Close()
	}
	waitGoroutines(t, before)
}

// idleCount is how many connections the pool holds.
func (d *Directory) idleCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.idle)
}

// TestBusyPoolIsNotDown checks that PoolSize bounds the connections open at
// once, that a login waiting longer than QueueTimeout for one fails with
// ErrBusy (not ErrTimeout nor ErrUnavailable) without opening another, and
// that Check is not queued behind logins.
func TestBusyPoolIsNotDown(t *testing.T) {
	addr, accepted := countingBlackHole(t)
	cfg := unreachableConfigs(addr, 3*time.Second)["plain"]
	cfg.PoolSize, cfg.QueueTimeout = 1, 100*time.Millisecond
	d := mustNew(t, cfg)

	first := make(chan error, 1)
	go func() {
		_, _, err := d.Lookup(context.Background(), testAlice)
		first <- err
	}()
	// Wait until the first login holds the one connection.
	deadline := time.Now().Add(5 * time.Second)
	for accepted() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first login did not connect")
		}
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	_, ops, err := d.Lookup(context.Background(), testAlice)
	if !errors.Is(err, ErrBusy) || errors.Is(err, ErrTimeout) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("second login = %v, want ErrBusy only", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("second login waited %s with QueueTimeout %s", took, cfg.QueueTimeout)
	}
	if ops != 0 || !strings.Contains(err.Error(), "all 1 in use") {
		t.Errorf("second login: %d operations, error %q; want none sent and the pool named", ops, err)
	}
	// Readiness has a connection of its own: it reaches the (silent)
	// server instead of waiting behind the login.
	if err := d.Check(context.Background()); !errors.Is(err, ErrTimeout) {
		t.Errorf("Check while the pool is busy = %v, want ErrTimeout from the server", err)
	}
	if err := <-first; !errors.Is(err, ErrTimeout) {
		t.Errorf("first login = %v, want ErrTimeout", err)
	}
	if n := accepted(); n != 2 {
		t.Errorf("%d connections opened, want 2 (one login's, one Check's)", n)
	}
}

func TestSIDCache(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newSIDCache(3, time.Hour, time.Minute)
	c.put([]string{"S-1-5-21-1-2-3-1000", "S-1-5-21-1-2-3-1001"}, map[string]string{"S-1-5-21-1-2-3-1000": "g1000"}, now)
	get := func(s string, at time.Time) (string, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.get(s, at)
	}
	if n, ok := get("S-1-5-21-1-2-3-1000", now); !ok || n != "g1000" {
		t.Fatalf("named SID: %q, %t", n, ok)
	}
	if n, ok := get("S-1-5-21-1-2-3-1001", now); !ok || n != "" {
		t.Fatalf("SID known to name no group: %q, %t; want a negative entry", n, ok)
	}
	if _, ok := get("S-1-5-21-1-2-3-1002", now); ok {
		t.Fatal("unknown SID found")
	}
	// Negative entries lapse first.
	if _, ok := get("S-1-5-21-1-2-3-1001", now.Add(time.Minute)); ok {
		t.Error("negative entry outlived its TTL")
	}
	if _, ok := get("S-1-5-21-1-2-3-1000", now.Add(59*time.Minute)); !ok {
		t.Error("name forgotten before its TTL")
	}
	if _, ok := get("S-1-5-21-1-2-3-1000", now.Add(time.Hour)); ok {
		t.Error("name outlived its TTL")
	}
	if c.Len() != 0 {
		t.Errorf("%d entries after all expired, want 0", c.Len())
	}
	// At the bound the least recently used give way.
	names := map[string]string{}
	var sids []string
	for i := range 5 {
		s := fmt.Sprintf("S-1-5-21-1-2-3-%d", 2000+i)
		sids = append(sids, s)
		names[s] = fmt.Sprint("g", 2000+i)
	}
	c.put(sids[:3], names, now)
	get(sids[0], now) // 2000 is now the most recently used
	c.put(sids[3:], names, now)
	if c.Len() != 3 {
		t.Fatalf("%d entries, want the bound 3", c.Len())
	}
	for i, want := range []bool{true, false, false, true, true} {
		if _, ok := get(sids[i], now); ok != want {
			t.Errorf("%s kept = %t, want %t", sids[i], ok, want)
		}
	}
	// A renamed group's new answer replaces the old.
	c.put(sids[:1], map[string]string{sids[0]: "renamed"}, now)
	if n, _ := get(sids[0], now); n != "renamed" || c.Len() != 3 {
		t.Errorf("after a new answer: %q with %d entries", n, c.Len())
	}
}
