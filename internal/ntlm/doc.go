// Package ntlm lets a server accept NTLM logins ([MS-NLMP]) without ever
// holding a password hash: it builds the CHALLENGE, parses the client's
// NEGOTIATE and AUTHENTICATE messages, and has the domain check the answer
// through Samba winbind's ntlm_auth helper in its long-lived, stateless
// "ntlm-server-1" mode: a few helper processes serve every login, none
// starts per login.
//
// Typical use, one exchange per TCP connection (NTLM authenticates the
// connection, not the request):
//
//	srv := &ntlm.Server{Domain: "EXAMPLE", DNSDomain: "example.test",
//		Computer: "AUTH1", DNSComputer: "auth1.example.test"}
//	v, _ := ntlm.NewVerifier(ntlm.VerifierConfig{Args: []string{"--configfile=/etc/samba/smb.conf"}})
//	defer v.Close()
//
//	// first request: "Authorization: NTLM <NEGOTIATE>"
//	neg, err := ntlm.ParseNegotiate(msg)
//	chal, c, err := srv.Challenge(neg) // send chal in the 401, keep c with the connection
//
//	// second request, same connection: "Authorization: NTLM <AUTHENTICATE>"
//	a, err := ntlm.ParseAuthenticate(msg)
//	id, err := v.Verify(ctx, c, a) // id.User, id.Domain, or ErrLogonFailure, ErrAccountDisabled, ...
//
// Under "Authorization: Negotiate" browsers wrap the same messages in
// SPNEGO ([RFC 4178]):
//
//	init, err := ntlm.ParseSPNEGO(blob) // NegTokenInit; init.Token is the NEGOTIATE
//	neg, err := ntlm.ParseNegotiate(init.Token)
//	chal, c, err := srv.Challenge(neg)
//	c.UseSPNEGO(init)             // the mechanism list the mechListMICs cover
//	send(ntlm.WrapChallenge(chal))
//
//	resp, err := ntlm.ParseSPNEGO(blob) // NegTokenResp; resp.Token is the AUTHENTICATE
//	a, err := ntlm.ParseAuthenticate(resp.Token)
//	id, err := v.Verify(ctx, c, a)
//	final, err := id.AcceptSPNEGO(c, resp) // checks the client's mechListMIC, signs ours
//	send(final)
//
// What it refuses before asking the domain: NTLMv1 and LM responses
// (ErrNTLMv1: they are crackable from a capture), anonymous logins
// (ErrAnonymous), and any message whose offsets, lengths or strings do not
// hold together (ErrMalformed). Names that reach the helper can hold no
// control characters, so a user name cannot add lines to its protocol.
//
// The CHALLENGE carries a timestamp (MsvAvTimestamp), so that clients that
// sign protect the exchange with a MIC over the three messages; Verify
// checks it with the session key the domain returns for the login. A
// client that sends no MIC is still accepted, as Windows servers do.
//
// It is not a general NTLMSSP: no sealing or signing of application data,
// no NTLMv1, no channel bindings, and no state kept across connections:
// the caller keeps each Challenge with its connection and uses it once.
//
// [MS-NLMP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-nlmp/
// [RFC 4178]: https://www.rfc-editor.org/rfc/rfc4178
package ntlm
