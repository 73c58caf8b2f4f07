// Package negotiate checks the blob of an HTTP "Authorization: Negotiate"
// header against a keytab and says who sent it, or precisely why not.
//
// Typical use in an HTTP handler:
//
//	kt, err := negotiate.LoadKeytab("/etc/iwalb/http.keytab")
//	v := negotiate.NewValidator(kt, negotiate.Options{})
//	...
//	blob, _ := base64.StdEncoding.DecodeString(token) // from the header
//	metricKind := negotiate.Classify(blob).String()
//	id, err := v.Validate(blob)
//	switch {
//	case errors.Is(err, negotiate.ErrNTLM): // the browser fell back to NTLM
//	case err != nil: // 401 again, log err (it names principals, never keys)
//	default: // id.User, id.Realm, id.UserSID, id.GroupSIDs; send id.ResponseToken back
//	}
//
// It speaks Kerberos only, in one round trip (SPNEGO NegTokenInit carrying a
// KRB5 AP-REQ, or a bare KRB5 GSS-API token). It does not do NTLM, does not
// accept multi-leg SPNEGO, does not do user-to-user, and does not look users
// up in the directory: it returns the ticket's client and PAC group SIDs and
// leaves authorisation to the caller.
//
// Its replay cache remembers each accepted authenticator for as long as it
// could be accepted, with a quota per client (ErrReplayQuota) so that one
// client minting fresh authenticators cannot crowd the others out, and
// refuses authenticators dated more than Options.MaxFutureSkew ahead
// (ErrClockAhead), which would otherwise be remembered for up to twice the
// skew. Strings of the blob quoted in errors are clipped to 256 bytes.
//
// It verifies tickets itself instead of calling gokrb5's service.VerifyAPREQ:
// that uses the wall clock, a process-wide replay cache keyed on an
// unencrypted name, and one opaque error for every failure. Here the clock is
// injectable, the replay cache belongs to the Validator, and each way a
// ticket can fail has its own sentinel error with an operator-readable cause.
//
// It decodes the PAC itself ([MS-PAC], its logon info in NDR) rather than
// with gokrb5's reflection-based decoder, which cost about 2 ms for a user
// in a thousand groups, and allocates what the counts of its input say
// before it finds whether the input holds that much. This decoder checks
// every count against what is left of the input, reads only what iwalb
// uses (the user's and the groups' SIDs), checks the server signature as
// gokrb5 did, and is stricter than gokrb5 where [MS-PAC] or NDR say MUST
// (buffers on 8-byte boundaries and apart, counts that agree, SIDs of
// revision 1).
//
// SelfTest proves at start-up (and for readiness) that the KDC is reachable
// and issues tickets that this keytab decrypts.
package negotiate
