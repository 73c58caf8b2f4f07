package ntlm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// Probe has a helper ask the domain about a login that cannot succeed (a
// random user name that no account has, a random NTLMv2 response), and
// returns nil when the domain answered, refusing it: the helper starts,
// winbindd answers, and the domain is reachable. It is for `iwalb doctor`;
// an error wraps ErrHelper with the reason (ntlm_auth missing, winbindd not
// running or not reachable, no access to its privileged pipe).
func (v *Verifier) Probe(ctx context.Context) error {
	var nonce [8]byte
	resp := make([]byte, 16+28+8) // NTProofStr, then a blob's header, timestamp and end
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("NTLM probe: %w", err)
	}
	if _, err := rand.Read(resp); err != nil {
		return fmt.Errorf("NTLM probe: %w", err)
	}
	resp[16], resp[17] = 1, 1 // blob version, as an NTLMv2 response has it
	a := &Authenticate{User: "iwalb-probe-" + hex.EncodeToString(nonce[:]), NTResponse: resp}
	req, err := encodeRequest(Challenge{ServerChallenge: nonce}, a)
	if err != nil {
		return fmt.Errorf("NTLM probe: %w", err)
	}
	ans, err := v.ask(ctx, req)
	switch {
	case err != nil:
		return fmt.Errorf("NTLM probe: %w", err)
	case ans.authenticated:
		return errors.New("NTLM probe: the helper accepted a random login; it is not checking with the domain")
	}
	if _, known, outcome := statusOf(ans.status); known && !errors.Is(outcome, ErrLogonFailure) {
		return fmt.Errorf("NTLM probe: the domain refused a random user as %w, not as unknown", outcome)
	}
	return nil
}
