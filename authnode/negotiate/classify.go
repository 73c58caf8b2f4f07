package negotiate

// Kind says what a Negotiate blob carries, as far as can be told without
// keys. Its String is a stable label for metrics.
type Kind int

// The kinds of Negotiate blob.
const (
	// KindGarbage is anything that is not a recognisable token.
	KindGarbage Kind = iota
	// KindKerberos is a SPNEGO NegTokenInit whose mech token is a KRB5
	// AP-REQ, or a bare KRB5 GSS-API AP-REQ token.
	KindKerberos
	// KindSPNEGONTLM is SPNEGO carrying or proposing NTLMSSP.
	KindSPNEGONTLM
	// KindNTLM is a bare NTLMSSP message (header "Negotiate TlRMTVNT...").
	KindNTLM
	// KindSPNEGOOther is SPNEGO without a usable Kerberos mech token, such
	// as a NegTokenResp or a NegTokenInit that only lists mechanisms.
	KindSPNEGOOther
)

// String returns the metric label of k.
func (k Kind) String() string {
	switch k {
	case KindKerberos:
		return "kerberos"
	case KindSPNEGONTLM:
		return "spnego_ntlm"
	case KindNTLM:
		return "ntlm"
	case KindSPNEGOOther:
		return "spnego_other"
	default:
		return "garbage"
	}
}

// Classify tells what blob (the base64-decoded Negotiate header value)
// carries, without validating it. It never panics.
func Classify(blob []byte) Kind {
	return parse(blob).kind
}
