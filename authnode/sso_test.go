package authnode

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/iana/nametype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// These tests run the login handler with the real validator on tickets
// made here with an offline keytab (no KDC, hence no PAC).

const offlineSPN, offlinePass = "HTTP/auth1.example.test", "offline-service-password"

func offlineKeytab(t testing.TB) *keytab.Keytab {
	t.Helper()
	kt := keytab.New()
	if err := kt.AddEntry(offlineSPN, "EXAMPLE.TEST", offlinePass, time.Unix(1700000000, 0), 2, 18); err != nil {
		t.Fatal(err)
	}
	return kt
}

// offlineAuthz returns an "Authorization: Negotiate" value carrying a
// ticket of user for sname (keyed for offlineSPN whatever sname says: the
// name travels in clear) with an authenticator made at now.
func offlineAuthz(t *testing.T, user, sname string, now time.Time) string {
	t.Helper()
	start := now.UTC().Truncate(time.Second)
	cname := types.NewPrincipalName(nametype.KRB_NT_PRINCIPAL, user)
	tkt, skey, err := messages.NewTicket(cname, "EXAMPLE.TEST", types.NewPrincipalName(nametype.KRB_NT_SRV_INST, offlineSPN), "EXAMPLE.TEST",
		types.NewKrbFlags(), offlineKeytab(t), 18, 2, start, start, start.Add(10*time.Hour), start.Add(10*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tkt.SName = types.NewPrincipalName(nametype.KRB_NT_SRV_INST, sname)
	auth, err := types.NewAuthenticator("EXAMPLE.TEST", cname)
	if err != nil {
		t.Fatal(err)
	}
	auth.CTime, auth.Cusec = start, now.Nanosecond()/1000
	ap, err := messages.NewAPReq(tkt, skey, auth)
	if err != nil {
		t.Fatal(err)
	}
	apb, err := ap.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	oid, err := asn1.Marshal(asn1.ObjectIdentifier{1, 2, 840, 113554, 1, 2, 2})
	if err != nil {
		t.Fatal(err)
	}
	tok := asn1tools.AddASNAppTag(append(append(oid, 0x01, 0x00), apb...), 0) // KRB5 AP-REQ token
	return "Negotiate " + base64.StdEncoding.EncodeToString(tok)
}

func newOfflineNode(t *testing.T, logs *bytes.Buffer, opts negotiate.Options) *Node {
	t.Helper()
	return newTestNode(t, negotiate.NewValidator(offlineKeytab(t), opts), fakeDirectory{user: aliceUser}, logs)
}

// TestHugeSPNLogLine: a ticket naming a 90 KB service principal (no key is
// needed to write one) gets a log line of normal size, and is counted under
// spn="other", not as a problem of the keytab's SPN.
func TestHugeSPNLogLine(t *testing.T) {
	var logs bytes.Buffer
	n := newOfflineNode(t, &logs, negotiate.Options{})
	authz := offlineAuthz(t, "alice", "HTTP/"+strings.Repeat("x", 90<<10), time.Now())
	w := ssoRequest(n, authz)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "wrong_spn") {
		t.Fatalf("status %d, body %.300s", w.Code, w.Body)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || len(lines[0]) > 2048 || !strings.Contains(lines[0], "(truncated, 92178 bytes)") ||
		!strings.Contains(lines[0], "spn=other") {
		t.Fatalf("%d log lines, the first %d bytes, want one under 2 KiB with the SPN truncated and spn=other:\n%.600s", len(lines), len(lines[0]), lines[0])
	}
	if got := testutil.ToFloat64(n.metrics.tickets.WithLabelValues("other", "wrong_spn")); got != 1 {
		t.Fatalf("kerberos_tickets_total{spn=other,result=wrong_spn} = %v, want 1", got)
	}
}

// TestKeytabAlarmLabels: failures of tickets for the keytab's SPN carry its
// name (whatever case the ticket used), successes too; the label set is the
// keytab's principals and "other".
func TestKeytabAlarmLabels(t *testing.T) {
	var logs bytes.Buffer
	n := newOfflineNode(t, &logs, negotiate.Options{})
	authz := offlineAuthz(t, "alice", "http/AUTH1.example.test", time.Now())
	if w := ssoRequest(n, authz); w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "no_pac") {
		t.Fatalf("first use: %d %.300s", w.Code, w.Body)
	}
	if w := ssoRequest(n, authz); w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "replay") {
		t.Fatalf("second use: %d %.300s", w.Code, w.Body)
	}
	const known = offlineSPN + "@EXAMPLE.TEST"
	for _, c := range []struct{ spn, result string }{{known, "ok"}, {known, "replay"}} {
		if got := testutil.ToFloat64(n.metrics.tickets.WithLabelValues(c.spn, c.result)); got != 1 {
			t.Errorf("kerberos_tickets_total{spn=%s,result=%s} = %v, want 1", c.spn, c.result, got)
		}
	}
	if got := testutil.CollectAndCount(n.metrics.tickets); got != 2 {
		t.Errorf("%d kerberos_tickets_total series, want 2", got)
	}
	if !strings.Contains(logs.String(), "spn="+known) {
		t.Errorf("log does not name the keytab SPN:\n%s", logs.String())
	}
}

// TestNoPAC: a ticket without a PAC cannot be bound to an account's SID, so
// the directory is not even asked.
func TestNoPAC(t *testing.T) {
	var logs bytes.Buffer
	n := newOfflineNode(t, &logs, negotiate.Options{})
	n.setDirectory(fakeDirectory{err: errLookupCalled})
	w := ssoRequest(n, offlineAuthz(t, "alice", offlineSPN, time.Now()))
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "no_pac") ||
		!strings.Contains(logs.String(), "NO_AUTH_DATA_REQUIRED") {
		t.Fatalf("%d %.300s\n%s", w.Code, w.Body, logs.String())
	}
}

var errLookupCalled = errors.New("the directory was asked")

// TestReplayQuotaAnswer: a user over the replay quota gets 429 with
// Retry-After; another user is not affected.
func TestReplayQuotaAnswer(t *testing.T) {
	var logs bytes.Buffer
	now := time.Now().Truncate(time.Microsecond)
	n := newOfflineNode(t, &logs, negotiate.Options{ReplayQuota: 2, Now: func() time.Time { return now }})
	for i := range 2 {
		ssoRequest(n, offlineAuthz(t, "alice", offlineSPN, now.Add(-time.Duration(i)*time.Millisecond)))
	}
	w := ssoRequest(n, offlineAuthz(t, "alice", offlineSPN, now.Add(-2*time.Millisecond)))
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "replay_quota") || w.Header().Get("WWW-Authenticate") != "" {
		t.Fatalf("third login of alice: %d %.300s", w.Code, w.Body)
	}
	// Her oldest authenticator is 1 ms old: remembered for the 5m skew.
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra != 300 {
		t.Fatalf("Retry-After %q, want 300", w.Header().Get("Retry-After"))
	}
	if w := ssoRequest(n, offlineAuthz(t, "bob", offlineSPN, now)); strings.Contains(w.Body.String(), "replay_quota") {
		t.Fatalf("bob, while alice is over her quota: %d %.300s", w.Code, w.Body)
	}
	if got := testutil.ToFloat64(n.metrics.logins.WithLabelValues("failure", "replay_quota", "kerberos")); got != 1 {
		t.Fatalf("logins_total{failure,replay_quota} = %v, want 1", got)
	}
}

// TestReadinessNodeBehindTheDC: clients keep the domain's time, so a node
// whose clock is behind the DC's by more than MaxFutureSkew would refuse
// them all as clock_ahead; it says so in readiness rather than stay ready.
func TestReadinessNodeBehindTheDC(t *testing.T) {
	for _, tt := range []struct {
		behind time.Duration
		ready  bool
	}{
		{0, true},
		{10 * time.Second, true},
		{time.Minute, false},
	} {
		var logs syncBuffer
		n := newTestNode(t, fakeValidator{id: alice}, fakeDirectory{user: aliceUser}, &logs)
		n.now = func() time.Time { return time.Now().Add(-tt.behind) }
		rep := n.checkNow(t.Context())
		if rep.Checks["clock"].OK != tt.ready {
			t.Errorf("node %s behind the DC: clock check %+v, want OK=%t", tt.behind, rep.Checks["clock"], tt.ready)
		}
		if !tt.ready && !strings.Contains(logs.String(), "would be refused as made in the future (allowed 30s)") {
			t.Errorf("log does not say why:\n%s", logs.String())
		}
	}
}

func TestReplayCacheMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	v := negotiate.NewValidator(offlineKeytab(t), negotiate.Options{})
	if err := registerReplayCache(reg, v); err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, v, fakeDirectory{user: aliceUser}, nil)
	ssoRequest(n, offlineAuthz(t, "alice", offlineSPN, time.Now()))
	want := `# HELP iwalb_authnode_replay_cache_entries Authenticators remembered against replay (kerberos.replay_cache_size at most).
# TYPE iwalb_authnode_replay_cache_entries gauge
iwalb_authnode_replay_cache_entries 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "iwalb_authnode_replay_cache_entries"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "iwalb_authnode_replay_cache_evictions_total"); err != nil || n != 1 {
		t.Fatalf("evictions series: %d, %v", n, err)
	}
}
