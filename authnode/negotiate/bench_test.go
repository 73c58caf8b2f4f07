package negotiate_test

// Benchmarks of Validate on real AES256 tickets with real PACs, from the
// test domain of scripts/ad-up (they skip without IWALB_AD_ENV: the offline
// helpers make tickets without a PAC, and decoding the PAC is most of the
// work). Run them with
//
//	IWALB_AD_ENV=/tmp/iwalb-ad/env go test -run '^$' -bench Validate -benchmem ./authnode/negotiate/
//
// They use the exported API only, as the auth node does.

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/authnode/negotiate"
)

// benchSPN is the SPN the tickets are for; the test domain's keytab holds
// it in AES256 (and the KDC picks AES256 for it).
const benchSPN = "HTTP/auth1.example.test"

// BenchmarkValidate validates fresh Negotiate blobs, one per iteration, as
// a node does for logins that reuse the browser's service ticket: each
// blob is a new authenticator for the same ticket, so the replay cache
// takes every one. The sub-benchmarks differ in the size of the PAC:
// alice is in a few groups, carol in AD_CAROL_GROUPS (1,100), and grace,
// when the domain was grown by scripts/ad-grow, in AD_SCALE_USER_GROUPS
// (1,000, some through nesting).
func BenchmarkValidate(b *testing.B) {
	env := adtest.Env(b)
	kt, err := negotiate.LoadKeytab(env["AD_HTTP_KEYTAB"])
	if err != nil {
		b.Fatal(err)
	}
	users := []struct{ name, user, password, groups string }{
		{"alice", env["AD_ALICE_USER"], env["AD_ALICE_PASSWORD"], "few"},
		{"carol", env["AD_CAROL_USER"], env["AD_CAROL_PASSWORD"], env["AD_CAROL_GROUPS"]},
	}
	if scale := scaleEnv(b); scale["AD_GRACE_USER"] != "" {
		users = append(users, struct{ name, user, password, groups string }{
			"grace", scale["AD_GRACE_USER"], scale["AD_GRACE_PASSWORD"], scale["AD_SCALE_USER_GROUPS"]})
	}
	for _, u := range users {
		b.Run(u.name, func(b *testing.B) {
			cl := adtest.Login(b, env, u.user, u.password)
			// Outside the timer: b.N fresh authenticators. The first call
			// also fetches the service ticket from the KDC.
			blobs := make([][]byte, b.N)
			for i := range blobs {
				blobs[i] = adtest.NegotiateBlob(b, cl, benchSPN)
			}
			// One client makes all b.N+1 logins within the skew window:
			// quota and cache must hold them all, or Validate refuses
			// them (ErrReplayQuota) and the benchmark measures refusals.
			v := negotiate.NewValidator(kt, negotiate.Options{
				ReplayQuota:    b.N + 1,
				ReplayCacheMax: max(b.N+1, negotiate.DefaultReplayCacheMax),
			})
			id, err := v.Validate(adtest.NegotiateBlob(b, cl, benchSPN))
			if err != nil {
				b.Fatalf("Validate a blob of %s: %v", u.user, err)
			}
			if id.Etype != 18 {
				b.Fatalf("ticket of %s has etype %d, want 18 (aes256-cts-hmac-sha1-96)", u.user, id.Etype)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if _, err := v.Validate(blobs[i]); err != nil {
					b.Fatalf("Validate blob %d of %s: %v", i, u.user, err)
				}
			}
			b.StopTimer()
			// After the loop: ResetTimer deletes reported metrics.
			b.ReportMetric(float64(len(id.GroupSIDs)), "groupSIDs")
			b.ReportMetric(float64(len(blobs[0])), "blobBytes")
		})
	}
}

// scaleEnv returns the settings scripts/ad-grow wrote next to the env
// file (scale.env), or nothing when the domain was not grown.
func scaleEnv(b *testing.B) map[string]string {
	b.Helper()
	path := filepath.Join(filepath.Dir(os.Getenv(adtest.EnvVar)), "scale.env")
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		b.Fatalf("read %s: %v", path, err)
	}
	defer f.Close()
	out := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("read %s: %v", path, err)
	}
	return out
}
