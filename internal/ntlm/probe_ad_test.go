package ntlm

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestProbeAD: against the test domain, the probe's random login is asked
// and refused, which proves the helper and winbindd work; a helper that
// exits at once (a broken installation) makes it fail with ErrHelper.
func TestProbeAD(t *testing.T) {
	env := ntlmEnv(t)
	v := newADVerifier(t, env, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := v.Probe(ctx); err != nil {
		t.Fatalf("Probe against the test domain: %v", err)
	}
	if st := v.Stats(); st.Checks != 1 || st.Starts != 1 {
		t.Errorf("after one probe: %+v; want one check by one helper", st)
	}

	bad, err := NewVerifier(VerifierConfig{Helper: "false", MaxHelpers: 1, Timeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Probe(ctx); !errors.Is(err, ErrHelper) {
		t.Errorf("Probe with a helper that cannot start: %v; want ErrHelper", err)
	}
}
