package authnode

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/negotiate"
)

// rotation is a service account of the test's own, with an SPN of its own
// and its keytab as a node serves it: what an operator rotates.
type rotation struct {
	env      map[string]string
	admin    *adtest.Admin
	name     string // sAMAccountName
	dn, spn  string
	keytab   string // the file the node loads
	password int    // how many passwords the account has had
}

// newRotation makes the account (AES only, as the nodes' account is) and
// exports its first keytab. The account is deleted when the test ends.
func newRotation(t *testing.T, env map[string]string) *rotation {
	t.Helper()
	admin := adtest.NewAdmin(t, env)
	name := adtest.UniqueName("rot-")
	r := &rotation{env: env, admin: admin, name: name, spn: "HTTP/" + name + "." + env["AD_DNS_DOMAIN"],
		keytab: filepath.Join(t.TempDir(), "http.keytab"), password: 1}
	r.dn = admin.CreateUser(name, r.pass())
	admin.Modify(r.dn, "add", "servicePrincipalName", r.spn)
	admin.Modify(r.dn, "replace", "msDS-SupportedEncryptionTypes", "24")
	r.export(t)
	return r
}

func (r *rotation) pass() string { return fmt.Sprintf("Rot-Passw0rd-%d!", r.password) }

// export writes the account's current keys over the node's keytab file, in
// place, as a fresh export copied over it would.
func (r *rotation) export(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(r.keytab, adtest.ExportKeytab(t, r.spn), 0o600); err != nil {
		t.Fatal(err)
	}
}

// changePassword gives the account its next password: the KDC issues
// tickets with the next key version from now on.
func (r *rotation) changePassword(t *testing.T) {
	t.Helper()
	r.password++
	r.admin.SetPassword(r.dn, r.pass())
}

// node starts an auth node serving the account's SPN from its keytab file.
func (r *rotation) node(t *testing.T, edit func(*Config)) *adNode {
	t.Helper()
	return startADNode(t, r.env, func(c *Config, _ *Options) {
		c.Keytab, c.Account, c.SelfTestSPN = r.keytab, r.name, r.spn
		// Logins are tried until a change shows: more than one user's
		// default quota.
		c.ReplayQuota = 10000
		edit(c)
	})
}

// aliceTicket is a client holding a service ticket for the rotation's SPN,
// as a browser holds one: each login sends a fresh authenticator with it.
type aliceTicket struct {
	cl   *client.Client
	spn  string
	kvno int
}

func (r *rotation) aliceTicket(t *testing.T) aliceTicket {
	t.Helper()
	cl := adtest.Login(t, r.env, "alice", r.env["AD_ALICE_PASSWORD"])
	kvno, ok := negotiate.TicketKVNO(adtest.NegotiateBlob(t, cl, r.spn))
	if !ok {
		t.Fatal("no Kerberos ticket in alice's token")
	}
	return aliceTicket{cl: cl, spn: r.spn, kvno: kvno}
}

// login sends one login with a fresh authenticator and returns the status
// and the failure reason (empty on success).
func (a *adNode) loginWith(t *testing.T, tk aliceTicket) (int, string) {
	t.Helper()
	blob := adtest.NegotiateBlob(t, tk.cl, tk.spn)
	if kvno, _ := negotiate.TicketKVNO(blob); kvno != tk.kvno {
		t.Fatalf("alice's ticket changed: kvno %d, was %d", kvno, tk.kvno)
	}
	req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
	req.Header.Set("Authorization", "Negotiate "+base64.StdEncoding.EncodeToString(blob))
	c := a.client()
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusFound {
		return resp.StatusCode, ""
	}
	m := pageReason.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("login %d without a reason: %.300s", resp.StatusCode, b)
	}
	return resp.StatusCode, m[1]
}

// pageReason finds the reason on a failed login's page.
var pageReason = regexp.MustCompile(`Reason: <code>([a-z_]+)</code>`)

// within tries a login with tk until it gets want (a status and reason),
// for up to a minute.
func (a *adNode) within(t *testing.T, tk aliceTicket, wantStatus int, wantReason, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		status, reason := a.loginWith(t, tk)
		if status == wantStatus && reason == wantReason {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after a minute still %d %s; want %d %s; log:\n%s", what, status, reason, wantStatus, wantReason, a.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestADKeytabRotation: the service account's password changes while a
// node serves (a new key version) and its keytab is exported again over
// the node's file. Once the node has the new keytab, by a reload or by
// noticing the file, both alice's ticket from before the change and a
// fresh one log in; when previous_keys_ttl is up, the old one is refused
// with kvno, the log naming the ticket's key version and the keytab's.
func TestADKeytabRotation(t *testing.T) {
	env := adtest.Env(t)
	const ttl = 15 * time.Second
	for _, by := range []string{"reload", "file"} {
		t.Run(by, func(t *testing.T) {
			t.Parallel()
			r := newRotation(t, env)
			a := r.node(t, func(c *Config) {
				c.PreviousKeysTTL = ttl
				c.KeytabCheckInterval = time.Hour // the reload does it
				if by == "file" {
					c.KeytabCheckInterval = 200 * time.Millisecond
				}
			})
			old := r.aliceTicket(t)
			if status, reason := a.loginWith(t, old); status != http.StatusFound {
				t.Fatalf("login before the rotation: %d %s", status, reason)
			}

			r.changePassword(t)
			fresh := r.aliceTicket(t)
			if fresh.kvno != old.kvno+1 {
				t.Fatalf("after the password change the KDC issues kvno %d; want %d", fresh.kvno, old.kvno+1)
			}
			r.export(t)
			if by == "reload" {
				if status, reason := a.loginWith(t, fresh); status != http.StatusInternalServerError || reason != "kvno" {
					t.Fatalf("a new-kvno ticket before the reload: %d %s; want 500 kvno", status, reason)
				}
				p, err := a.node.Prepare(a.node.cur.Load().cfg)
				if err != nil {
					t.Fatalf("Prepare: %v", err)
				}
				a.node.Apply(p)
			}
			if by == "file" {
				// Wait for the node to notice, so that the old ticket is
				// tried well within previous_keys_ttl of the rotation.
				for deadline := time.Now().Add(time.Minute); len(a.node.cur.Load().keys.retired) == 0; time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("the node did not load the new keytab file in a minute:\n%s", a.logs)
					}
				}
			}
			if status, reason := a.loginWith(t, old); status != http.StatusFound {
				t.Fatalf("the ticket from before the password change, with the new keytab loaded: %d %s", status, reason)
			}
			a.within(t, fresh, http.StatusFound, "", "a ticket of the new key version")
			why := map[string]string{"reload": "why=reload", "file": `why="file changed"`}[by]
			logs := a.logs.String()
			for _, want := range []string{
				fmt.Sprintf("keytab=%s %s", r.keytab, why),
				fmt.Sprintf("principal=%s@%s kvno=%d enctype=aes256-cts-hmac-sha1-96\n", r.spn, env["AD_REALM"], fresh.kvno),
				fmt.Sprintf("principal=%s@%s kvno=%d enctype=aes256-cts-hmac-sha1-96 until=", r.spn, env["AD_REALM"], old.kvno),
			} {
				if !strings.Contains(logs, want) {
					t.Fatalf("the log lacks %s:\n%s", want, logs)
				}
			}

			a.within(t, old, http.StatusInternalServerError, "kvno", "the old ticket after previous_keys_ttl")
			want := fmt.Sprintf("ticket_kvno=%d keytab_kvnos=%d retired_kvnos=none", old.kvno, fresh.kvno)
			if logs := a.logs.String(); !strings.Contains(logs, want) || !strings.Contains(logs, "keytab key dropped") {
				t.Fatalf("the refusal's log line lacks %s, or the drop is not logged:\n%s", want, logs)
			}
			spn := r.spn + "@" + env["AD_REALM"]
			if got := testutil.ToFloat64(a.node.metrics.tickets.WithLabelValues(spn, "kvno")); got < 1 {
				t.Fatalf("kerberos_tickets_total{spn=%s,result=kvno} = %v", spn, got)
			}
			if status, reason := a.loginWith(t, fresh); status != http.StatusFound {
				t.Fatalf("a new-kvno ticket at the end: %d %s", status, reason)
			}
			// The KDC self-test proves the current keys.
			if rep := a.node.checkNow(t.Context()); !rep.Checks["kdc_self_test"].OK {
				t.Fatalf("self-test with the new keytab: %+v", rep.Checks["kdc_self_test"])
			}
		})
	}
}
