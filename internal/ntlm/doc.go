// Package ntlm lets a server accept NTLM logins ([MS-NLMP]) without ever
// holding a password hash: it builds the CHALLENGE, parses the client's
// NEGOTIATE and AUTHENTICATE messages, and has the domain check the answer
// through Samba winbind's ntlm_auth helper in its long-lived
// "ntlm-server-1" mode.
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
// Under "Authorization: Negotiate" browsers wrap the same messages in SPNEGO:
// UnwrapSPNEGO takes the NTLM message out, WrapChallenge and WrapAccept
// wrap the answers ([RFC 4178]); ParseSPNEGO, Identity.CheckMechListMIC and
// Identity.AcceptMechListMIC do the mechListMIC when the client sends one.
//
// What it refuses before asking the domain: NTLMv1 and LM responses
// (ErrNTLMv1: they are crackable from a capture), anonymous logins
// (ErrAnonymous), and any message whose offsets, lengths or strings do not
// hold together (ErrMalformed). Strings that reach the helper can contain
// no control characters, so a user name cannot add lines to its protocol.
//
// The CHALLENGE carries a timestamp (MsvAvTimestamp), so that modern clients
// protect the exchange with a MIC over the three messages; Verify checks it
// with the session key the domain returns. A client that sends no MIC is
// still accepted, as Windows servers do.
//
// It is not a general NTLMSSP: no sealing or signing of application data,
// no NTLMv1, no datagram mode, and no server that keeps state across
// connections: the caller keeps each Challenge with its connection.
//
// [MS-NLMP]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-nlmp/
// [RFC 4178]: https://www.rfc-editor.org/rfc/rfc4178
package ntlm
