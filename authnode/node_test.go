package authnode

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/store"
	"github.com/iwalb/iwalb/internal/connlimit"
	"github.com/iwalb/iwalb/internal/testkit"

	"github.com/iwalb/iwalb/internal/secret"
)

// These tests drive the handlers with stand-ins for the KDC-checked
// validator and the directory; the same flows run against the real Active
// Directory in node_ad_test.go.

type fakeValidator struct {
	id  *negotiate.Identity
	err error
}

func (f fakeValidator) Validate([]byte) (*negotiate.Identity, error) { return f.id, f.err }

type fakeDirectory struct {
	user *directory.User
	err  error
	ops  int // LDAP operations the look-up claims
}

func (f fakeDirectory) Lookup(context.Context, directory.Principal) (*directory.User, int, error) {
	return f.user, f.ops, f.err
}
func (f fakeDirectory) Check(context.Context) error                   { return f.err }
func (f fakeDirectory) ServerTime(context.Context) (time.Time, error) { return time.Now(), f.err }

const testAPIKey = "test-api-key-0123456789abcdef"

func newTestNode(t testing.TB, v ticketValidator, d userDirectory, logs io.Writer) *Node {
	t.Helper()
	cfg := Config{FQDN: "auth1.example.test", Realm: "EXAMPLE.TEST", ApplicationURL: "https://app.example.test/cb?x=1"}
	cfg.setDefaults()
	m, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cfg.ApplicationURL)
	if logs == nil {
		logs = io.Discard
	}
	n := &Node{
		log: slog.New(slog.NewTextHandler(logs, nil)), metrics: m,
		tokens: store.NewMemory(store.Options{}), sessions: store.NewMemory(store.Options{}),
		selfTest: func(context.Context) error { return nil }, now: time.Now,
		conns:       connlimit.New(connLimits(cfg)),
		keysChanged: make(chan struct{}, 1), recheck: make(chan struct{}, 1),
		formFailures: newFailureCounts(), formSlots: make(chan struct{}, maxFormInFlight),
	}
	n.install(&settings{
		cfg: cfg, log: n.log, appURL: u, dir: newDirRef(d), keys: &keySet{validator: v},
		apiClients: []apiClient{{name: "app", keyHash: sha256Sum(testAPIKey)}},
	})
	return n
}

// edit changes the settings in force of a test node, as a reload would.
func (n *Node) edit(f func(*settings)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := *n.cur.Load()
	f(&s)
	n.install(&s)
}

// setDirectory and setValidator give a test node another stand-in. The
// directory passes for the one its settings made, so that a reload that
// leaves the LDAP settings alone keeps it.
func (n *Node) setDirectory(d userDirectory) {
	n.edit(func(s *settings) {
		r := newDirRef(d)
		r.cfg, r.ca = s.dir.cfg, s.dir.ca
		s.dir = r
	})
}
func (n *Node) setValidator(v ticketValidator) {
	n.edit(func(s *settings) { s.keys = &keySet{validator: v} })
}

// checkNow runs a round of readiness checks with the settings in force.
func (n *Node) checkNow(ctx context.Context) *readyReport {
	s := n.acquire()
	defer s.dir.release()
	return n.runChecks(ctx, s)
}

var alice = &negotiate.Identity{User: "alice", Realm: "EXAMPLE.TEST", SPN: "HTTP/auth1.example.test@EXAMPLE.TEST",
	UserSID: "S-1-5-21-1004336348-1177238915-682003330-1103"}
var aliceUser = &directory.User{SAMAccountName: "alice", UserPrincipalName: "alice@example.test",
	DisplayName: "Alice Liddell", Mail: "alice@example.test", Groups: []string{"lb-users"},
	GroupSIDs: []string{"S-1-18-1", "S-1-5-21-1004336348-1177238915-682003330-1104"}}

func ssoRequest(n *Node, authz string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "https://auth1.example.test/sso", nil)
	if authz != "" {
		r.Header.Set("Authorization", authz)
	}
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	return w
}

func redeem(n *Node, key, token string) *httptest.ResponseRecorder {
	body, _ := json.Marshal(map[string]string{"token": token})
	r := httptest.NewRequest("POST", "https://auth1.example.test/api/v1/tokens/redeem", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	n.Handler().ServeHTTP(w, r)
	return w
}

func tokenFrom(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	if w.Code != http.StatusFound {
		t.Fatalf("status %d, want 302; body %s", w.Code, w.Body)
	}
	loc, err := url.Parse(w.Header().Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != "app.example.test" || loc.Query().Get("x") != "1" {
		t.Fatalf("Location %s does not keep the application URL", loc)
	}
	return loc.Query().Get("ssoToken")
}

func TestSSOWithoutNegotiateAsksForIt(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	for _, authz := range []string{"", "Basic YWxpY2U6eA==", "Negotiate", "Negotiate   "} {
		w := ssoRequest(n, authz)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%q: status %d, want 401", authz, w.Code)
		}
		if got := w.Header().Values("WWW-Authenticate"); len(got) != 1 || got[0] != "Negotiate" {
			t.Errorf("%q: WWW-Authenticate %q, want exactly [Negotiate]", authz, got)
		}
		if !strings.Contains(w.Body.String(), "intranet zone") {
			t.Errorf("%q: page does not say what to check: %s", authz, w.Body)
		}
	}
}

func TestSSOFailuresAreToldApart(t *testing.T) {
	ntlm := base64.StdEncoding.EncodeToString(append([]byte("NTLMSSP\x00"), 1, 0, 0, 0, 0x07, 0x82, 0x08, 0xa2))
	tests := []struct {
		name     string
		authz    string
		verr     error
		derr     error
		status   int
		reason   string
		negotiat bool
	}{
		{"bad base64", "Negotiate !!!", nil, nil, 400, "malformed", false},
		{"ntlm", "Negotiate " + ntlm, fmt.Errorf("x: %w", negotiate.ErrNTLM), nil, 401, "ntlm", true},
		{"wrong spn", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrWrongSPN), nil, 500, "wrong_spn", false},
		{"enctype", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrEnctype), nil, 500, "enctype", false},
		{"kvno", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrKVNO), nil, 500, "kvno", false},
		{"skew", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrClockSkew), nil, 401, "clock_skew", true},
		{"ahead", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrClockAhead), nil, 401, "clock_ahead", true},
		{"quota", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrReplayQuota), nil, 429, "replay_quota", false},
		{"replay", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrReplay), nil, 401, "replay", true},
		{"expired", "Negotiate YQ==", fmt.Errorf("x: %w", negotiate.ErrTicketExpired), nil, 401, "ticket_expired", true},
		{"ldap down", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrUnavailable), 503, "ldap_unavailable", false},
		{"ldap slow", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrTimeout), 503, "ldap_timeout", false},
		{"ldap pool busy", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrBusy), 503, "ldap_busy", false},
		{"locked out", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrLockedOut), 403, "user_locked", false},
		{"not found", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrNotFound), 403, "user_not_found", false},
		{"name and SID disagree", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrIdentityMismatch), 403, "identity_mismatch", false},
		{"disabled", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrDisabled), 403, "user_disabled", false},
		{"not in group", "Negotiate YQ==", nil, fmt.Errorf("x: %w", directory.ErrNotInGroup), 403, "not_in_group", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			v := fakeValidator{id: alice, err: tt.verr}
			if tt.verr != nil {
				v.id = nil
			}
			n := newTestNode(t, v, fakeDirectory{user: aliceUser, err: tt.derr}, &logs)
			w := ssoRequest(n, tt.authz)
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			h := w.Header().Values("WWW-Authenticate")
			for _, v := range h {
				if strings.HasPrefix(v, "NTLM") {
					t.Errorf("answered with WWW-Authenticate %q; NTLM must never be offered", v)
				}
			}
			if tt.negotiat != (len(h) == 1 && h[0] == "Negotiate") {
				t.Errorf("WWW-Authenticate %q, want Negotiate challenge: %v", h, tt.negotiat)
			}
			if !strings.Contains(w.Body.String(), tt.reason) {
				t.Errorf("page does not name the reason %q", tt.reason)
			}
			if got := strings.Count(logs.String(), "reason="+tt.reason); got != 1 {
				t.Errorf("%d log lines with reason=%s, want 1; logs:\n%s", got, tt.reason, logs.String())
			}
			// A busy pool frees up in moments: say when to come back.
			if ra := w.Header().Get("Retry-After"); (tt.reason == "ldap_busy") != (ra == "1") {
				t.Errorf("Retry-After %q", ra)
			}
		})
	}
}

func TestLoginRedeemOnceAndNoSecretsInLogs(t *testing.T) {
	var logs bytes.Buffer
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, &logs)
	authz := "Negotiate " + base64.StdEncoding.EncodeToString([]byte("ticket-bytes-that-must-not-be-logged"))
	w := ssoRequest(n, authz)
	token := tokenFrom(t, w)
	if raw, err := base64.RawURLEncoding.DecodeString(token); err != nil || len(raw) < 32 {
		t.Fatalf("token %q: want ≥32 random bytes in base64url (%v)", token, err)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q on the redirect, want no-store", cc)
	}

	if w := redeem(n, "wrong-key-0123456789abcdef", token); w.Code != http.StatusUnauthorized {
		t.Fatalf("redeem with a wrong API key: status %d, want 401", w.Code)
	}
	w = redeem(n, testAPIKey, token)
	if w.Code != http.StatusOK {
		t.Fatalf("redeem: status %d, body %s", w.Code, w.Body)
	}
	var got redeemResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.SAMAccountName != "alice" || got.UserPrincipalName != "alice@example.test" || got.Realm != "EXAMPLE.TEST" ||
		len(got.Groups) != 1 || len(got.GroupSIDs) != 2 || !secret.WellFormed(got.Session.ID) || !got.Session.ExpiresAt.After(time.Now()) {
		t.Fatalf("redeemed identity %+v", got)
	}
	if !strings.Contains(w.Body.String(), `"groupSids":["S-1-18-1","S-1-5-21-1004336348-1177238915-682003330-1104"]`) {
		t.Errorf("redeem body does not carry groupSids: %s", w.Body)
	}
	if w := redeem(n, testAPIKey, token); w.Code != http.StatusNotFound {
		t.Fatalf("second redeem: status %d, want 404", w.Code)
	}

	// The session validates until logout, then not.
	validate := func() int {
		body := strings.NewReader(url.Values{"session": {got.Session.ID}}.Encode())
		r := httptest.NewRequest("POST", "/api/v1/sessions/validate", body)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Authorization", "Bearer "+testAPIKey)
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, r)
		return w.Code
	}
	if c := validate(); c != http.StatusOK {
		t.Fatalf("session validate: %d, want 200", c)
	}
	r := httptest.NewRequest("POST", "/logout", strings.NewReader(`{"session":"`+got.Session.ID+`"}`))
	r.Header.Set("Content-Type", "application/json")
	lw := httptest.NewRecorder()
	n.Handler().ServeHTTP(lw, r)
	if lw.Code != http.StatusOK || !strings.Contains(lw.Header().Get("Set-Cookie"), "iwalb_session=;") {
		t.Fatalf("logout: %d, Set-Cookie %q", lw.Code, lw.Header().Get("Set-Cookie"))
	}
	if c := validate(); c != http.StatusNotFound {
		t.Fatalf("session validate after logout: %d, want 404", c)
	}

	for _, secret := range []string{token, got.Session.ID, testAPIKey, strings.TrimPrefix(authz, "Negotiate ")} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret appears in the log:\n%s", logs.String())
		}
	}
}

func TestRedeemRaceExactlyOneWins(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	token := tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	var ok, notFound atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			switch redeem(n, testAPIKey, token).Code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusNotFound:
				notFound.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || notFound.Load() != 99 {
		t.Fatalf("%d redeems won and %d got 404; want exactly 1 and 99", ok.Load(), notFound.Load())
	}
}

func TestRedeemRejectsBadInput(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	for _, tc := range []struct {
		name, ctype, body string
		status            int
	}{
		{"not json", "application/json", "{", 400},
		{"short token", "application/json", `{"token":"abc"}`, 400},
		{"wrong type", "text/plain", "token=x", 400},
		{"unknown token", "application/json", `{"token":"` + strings.Repeat("A", secret.Len) + `"}`, 404},
		{"huge body", "application/json", `{"token":"` + strings.Repeat("A", 1<<20) + `"}`, 400},
	} {
		r := httptest.NewRequest("POST", "/api/v1/tokens/redeem", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ctype)
		r.Header.Set("Authorization", "Bearer "+testAPIKey)
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, w.Code, tc.status, w.Body)
		}
	}
}

func TestExpiredTokenIsGone(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	now := time.Now()
	var mu sync.Mutex
	n.tokens = store.NewMemory(store.Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	token := tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	mu.Lock()
	now = now.Add(n.cur.Load().cfg.TokenTTL)
	mu.Unlock()
	// Another login meanwhile (its Put may sweep) does not turn "expired"
	// into "unknown".
	_ = tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	if w := redeem(n, testAPIKey, token); w.Code != http.StatusGone {
		t.Fatalf("redeem after the TTL: %d, want 410", w.Code)
	}
	n.sweepStores()
	if got := testutil.ToFloat64(n.metrics.tokensExpired); got != 1 {
		t.Fatalf("tokens_expired_total = %v, want 1", got)
	}
}

func TestReadyzReflectsChecks(t *testing.T) {
	var logs syncBuffer
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, &logs)
	get := func() (int, string) {
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if c, _ := get(); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz before the first check: %d, want 503", c)
	}
	n.checkNow(context.Background())
	if c, body := get(); c != http.StatusOK || !strings.Contains(body, `"kdc_self_test":true`) {
		t.Fatalf("readyz after passing checks: %d %s", c, body)
	}
	n.selfTest = func(context.Context) error {
		return errors.New("KDC 127.0.0.1:88 unreachable for svc_http@EXAMPLE.TEST")
	}
	n.checkNow(context.Background())
	c, body := get()
	if c != http.StatusServiceUnavailable || !strings.Contains(body, `"kdc_self_test":false`) {
		t.Fatalf("readyz with a failing self-test: %d %s", c, body)
	}
	// Why is for the operator's log, not for anyone who can reach /readyz.
	if strings.Contains(body, "svc_http") || !strings.Contains(logs.String(), "svc_http@EXAMPLE.TEST") {
		t.Fatalf("the failure's detail belongs in the log only; body %s\nlog:\n%s", body, logs.String())
	}
	n.selfTest = func(context.Context) error { return nil }
	n.setDirectory(fakeDirectory{err: directory.ErrUnavailable})
	n.checkNow(context.Background())
	if c, body := get(); c != http.StatusServiceUnavailable || !strings.Contains(body, `"ldap":false`) {
		t.Fatalf("readyz with LDAP down: %d %s", c, body)
	}
}

// TestCheckLoopRetriesSoonWhenNotReady: one missed answer from the KDC
// keeps the node out of its pools for seconds, not for the whole
// self-test interval.
func TestCheckLoopRetriesSoonWhenNotReady(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	n.edit(func(s *settings) { s.cfg.SelfTestInterval = time.Hour })
	var calls atomic.Int32
	n.selfTest = func(context.Context) error {
		if calls.Add(1) == 1 {
			return errors.New("KDC unreachable: i/o timeout")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.checkLoop(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(notReadyRecheck + 10*time.Second)
	for {
		if rep := n.ready.last.Load(); rep != nil && rep.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready %v after a failed self-test (interval 1h, %d self-tests run)", notReadyRecheck+10*time.Second, calls.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := calls.Load(); c != 2 {
		t.Fatalf("%d self-tests run, want 2 (the failure and the early retry)", c)
	}
}

// syncBuffer is the project's locked log buffer, under the name these
// tests have used.
type syncBuffer = testkit.Buffer

func TestSSORefusesOtherRealms(t *testing.T) {
	evil := *alice
	evil.Realm = "EVIL.TEST"
	n := newTestNode(t, fakeValidator{id: &evil}, fakeDirectory{user: aliceUser}, nil)
	w := ssoRequest(n, "Negotiate YQ==")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "foreign_realm") {
		t.Fatalf("alice@EVIL.TEST: %d %s; want 403 foreign_realm, not this domain's alice", w.Code, w.Body)
	}
}

func TestCheckSSOPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/sso": true, "/auth/windows-sso": true, "/": true,
		"sso": false, "/readyz": false, "/healthz": false, "/logout": false, "/api": false, "/api/v1/x": false,
		"/sso/{x}": false, "/s so": false, "/sso?x": false,
	} {
		if err := CheckSSOPath(p); (err == nil) != ok {
			t.Errorf("CheckSSOPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}

func TestSessionsBelongToTheirApplication(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, nil)
	n.edit(func(s *settings) {
		s.apiClients = append(slices.Clone(s.apiClients), apiClient{name: "other", keyHash: sha256Sum("other-app-key-0123456789")})
	})
	w := redeem(n, testAPIKey, tokenFrom(t, ssoRequest(n, "Negotiate YQ==")))
	var got redeemResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	validate := func(authz string) int {
		r := httptest.NewRequest("POST", "/api/v1/sessions/validate", strings.NewReader(`{"session":"`+got.Session.ID+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", authz)
		w := httptest.NewRecorder()
		n.Handler().ServeHTTP(w, r)
		return w.Code
	}
	if c := validate("bearer " + testAPIKey); c != http.StatusOK {
		t.Fatalf("the owning application (scheme in lower case): %d, want 200", c)
	}
	if c := validate("Bearer other-app-key-0123456789"); c != http.StatusNotFound {
		t.Fatalf("another application: %d, want 404", c)
	}
}

// TestLDAPOperationsPerLogin: every login that reached the directory
// records how many LDAP requests it took, so that "1" can be seen.
func TestLDAPOperationsPerLogin(t *testing.T) {
	n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser, ops: 1}, nil)
	for range 3 {
		tokenFrom(t, ssoRequest(n, "Negotiate YQ=="))
	}
	n.setDirectory(fakeDirectory{err: fmt.Errorf("x: %w", directory.ErrNotFound), ops: 2})
	ssoRequest(n, "Negotiate YQ==")
	// A login refused before the directory is not counted.
	n.setValidator(fakeValidator{err: fmt.Errorf("x: %w", negotiate.ErrReplay)})
	ssoRequest(n, "Negotiate YQ==")

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(n.metrics.ldapOpsPerLogin)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || mfs[0].GetName() != "iwalb_authnode_ldap_operations_per_login" {
		t.Fatalf("gather: %v %v", mfs, err)
	}
	if h := mfs[0].GetMetric()[0].GetHistogram(); h.GetSampleCount() != 4 || h.GetSampleSum() != 5 {
		t.Fatalf("ldap_operations_per_login: %d logins, %v operations; want 4 and 5", h.GetSampleCount(), h.GetSampleSum())
	}
}
