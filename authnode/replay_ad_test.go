package authnode

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/negotiate"
)

// TestADReplayFloodThroughTheNode: alice floods the node with thousands of
// fresh authenticators from one ticket, from several keep-alive
// connections; while she does, dave signs in with kinit and curl. She is
// stopped at her quota (429 with Retry-After, counted as replay_quota) and
// dave is not affected.
func TestADReplayFloodThroughTheNode(t *testing.T) {
	env := adtest.Env(t)
	// The flood's logins that pass Kerberos each ask the DC, which other
	// tests load too: give it time, a slow directory is not what this
	// test is about.
	a := startADNode(t, env, func(c *Config, _ *Options) { c.LDAP.Timeout = 30 * time.Second })
	const flood, workers = 2000, 4
	const spn = "HTTP/auth1.example.test"

	cl := adtest.Login(t, env, env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"])
	blobs := make(chan string, flood)
	for range flood {
		blobs <- "Negotiate " + base64.StdEncoding.EncodeToString(adtest.NegotiateBlob(t, cl, spn))
	}
	close(blobs)
	daveCC := kinit(t, env, env["AD_DAVE_USER"], env["AD_DAVE_PASSWORD"])

	var found, quota, sent atomic.Int32
	var mu sync.Mutex
	other := map[string]int{} // "status reason"
	deadline := time.Now().Add(2 * time.Minute)
	client := a.client()
	client.Timeout = time.Minute // beyond the LDAP timeout: a loaded DC is slow, not gone
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for authz := range blobs {
				if time.Now().After(deadline) {
					return
				}
				req, _ := http.NewRequest("GET", a.url("auth1.example.test", "/sso"), nil)
				req.Header.Set("Authorization", authz)
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("alice's request: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				sent.Add(1)
				switch resp.StatusCode {
				case http.StatusFound:
					found.Add(1)
				case http.StatusTooManyRequests:
					quota.Add(1)
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("429 without Retry-After")
					}
				default:
					_, reason, _ := strings.Cut(string(body), "Reason: <code>")
					reason, _, _ = strings.Cut(reason, "<")
					mu.Lock()
					other[fmt.Sprint(resp.StatusCode, " ", reason)]++
					mu.Unlock()
				}
			}
		})
	}
	// dave signs in while the flood runs.
	for sent.Load() < flood/4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	status, loc, body := a.curlNegotiate(t, env, daveCC, "auth1.example.test")
	atDave := sent.Load()
	wg.Wait()
	took := time.Since(start)
	t.Logf("alice: %d requests in %s: %d signed in, %d refused over quota, others %v; dave signed in after %d of hers",
		sent.Load(), took.Round(time.Millisecond), found.Load(), quota.Load(), other, atDave)
	if status != http.StatusFound {
		t.Fatalf("dave during alice's flood: %d %s", status, body)
	}
	if code, id := a.redeem(t, tokenOf(t, loc)); code != http.StatusOK || id.SAMAccountName != "dave" || id.SID != adtest.ObjectSID(t, env, "dave") {
		t.Fatalf("dave's redeem: %d %+v", code, id)
	}
	if atDave >= sent.Load() {
		t.Fatalf("dave signed in after the flood ended (%d requests); the test did not overlap them", atDave)
	}
	// The deadline only cuts the flood short on a very slow machine.
	if sent.Load() < flood/2 || found.Load() != negotiate.DefaultReplayQuota || quota.Load() != sent.Load()-negotiate.DefaultReplayQuota {
		t.Fatalf("alice: %d sent, %d signed in, %d refused over quota, others %v; want at least %d, %d, the rest",
			sent.Load(), found.Load(), quota.Load(), other, flood/2, negotiate.DefaultReplayQuota)
	}
	if got := testutil.ToFloat64(a.node.metrics.logins.WithLabelValues("failure", "replay_quota", "kerberos")); got != float64(quota.Load()) {
		t.Fatalf("logins_total{failure,replay_quota} = %v, want %d", got, quota.Load())
	}
}
