package authnode

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/internal/clip"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/internal/ntlm"
)

// NTLM is a challenge and a response on one TCP connection: the browser
// sends NEGOTIATE, the node answers 401 with a CHALLENGE (a random server
// challenge) and keeps it on the connection (conn.ntlm); the browser sends
// AUTHENTICATE on the same connection, which the domain controller checks
// through winbind's ntlm_auth helper. An AUTHENTICATE on another connection
// finds no challenge and fails: that is what happens behind a proxy that
// pools its connections to the nodes. After the check, the login goes on
// as a Kerberos one does: the account confirmed in the directory (its SID
// and groups from there, as there is no PAC), a token, the redirect.

// ntlmVerifier checks an AUTHENTICATE message against the domain.
type ntlmVerifier interface {
	Verify(ctx context.Context, c ntlm.Challenge, a *ntlm.Authenticate) (ntlm.Identity, error)
	Stats() ntlm.VerifierStats
	// Probe asks the domain about a login it must refuse: for doctor.
	Probe(ctx context.Context) error
	Close() error
}

// ntlmRef is the NTLM side of a node's settings: the identity its
// challenges carry and the helper processes, kept across a reload that does
// not change them.
type ntlmRef struct {
	cfg      NTLMConfig
	server   *ntlm.Server
	verifier ntlmVerifier
}

// ntlmPending is the challenge a connection was sent.
type ntlmPending struct {
	c      ntlm.Challenge
	spnego bool // sent under Negotiate, in SPNEGO
	issued time.Time
}

var (
	failNTLMNoChallenge = failure{"ntlm_no_challenge", http.StatusUnauthorized, true,
		"The sign-in was answered on another connection",
		"NTLM answers a challenge on the connection that received it. Either the answer came too late, or a proxy between your browser and this server spread the exchange over several connections: reach the service through the L4 passthrough or the redirect front door."}
	failNTLMv1 = failure{"ntlm_v1", http.StatusUnauthorized, false,
		"Your computer uses an old, insecure sign-in method",
		"NTLMv1 and LM are refused. Set \"Network security: LAN Manager authentication level\" to \"Send NTLMv2 response only\" (LmCompatibilityLevel 3 or higher)."}
	failNTLMAnonymous = failure{"ntlm_anonymous", http.StatusUnauthorized, true,
		"Windows sign-in is needed", "The browser signed in anonymously. Sign in to the domain and try again."}
	failNTLMBadCredentials = failure{"bad_credentials", http.StatusUnauthorized, true,
		"Sign-in failed", "The domain did not accept the user name and password. Check them and try again."}
	failNTLMDomain = failure{"foreign_domain", http.StatusForbidden, false,
		"Your account is from another domain", "This service accepts accounts of its own domain only."}
	failAccountRestricted = failure{"account_restricted", http.StatusForbidden, false,
		"Your account cannot sign in now or from here", "The domain's restrictions on your account (logon hours, computers) refuse this sign-in."}
	failNTLMMIC = failure{"ntlm_mic", http.StatusUnauthorized, true,
		"The sign-in was changed on its way",
		"The integrity check of the NTLM exchange failed: something between your browser and this server altered it. Try again; if it persists, tell the administrator."}
	failPasswordExpired = failure{"password_expired", http.StatusForbidden, false,
		"Your password has expired", "Change your password (press Ctrl+Alt+Del on a domain computer), then sign in again."}
	failNTLMUnavailable = failure{"ntlm_unavailable", http.StatusServiceUnavailable, false,
		"Sign-in is unavailable for a moment", "This server could not ask the domain to check the sign-in. Try again shortly."}
)

// classifyNTLM maps an error of the NTLM check to its failure; the
// directory's and the stores' errors as classify does.
func classifyNTLM(err error) failure {
	if f := match(err, ntlmFailures); f != failInternal {
		return f
	}
	return classify(err)
}

var ntlmFailures = []errFailure{
	{ntlm.ErrNTLMv1, failNTLMv1},
	{ntlm.ErrAnonymous, failNTLMAnonymous},
	{ntlm.ErrLogonFailure, failNTLMBadCredentials},
	{ntlm.ErrAccountDisabled, failUserDisabled},
	{ntlm.ErrAccountLocked, failUserLocked},
	{ntlm.ErrAccountExpired, failUserDisabled},
	{ntlm.ErrAccountRestricted, failAccountRestricted},
	{ntlm.ErrMIC, failNTLMMIC},
	{ntlm.ErrPasswordExpired, failPasswordExpired},
	{ntlm.ErrHelper, failNTLMUnavailable},
	{ntlm.ErrMalformed, failMalformed},
}

// newNTLMRef makes the NTLM side of settings for cfg, reusing prev's
// helpers when their settings did not change. Nothing is started: helpers
// start at the first login.
func (n *Node) newNTLMRef(cfg *Config, prev *ntlmRef) (*ntlmRef, error) {
	if !cfg.NTLM.Enabled {
		return nil, nil
	}
	computer, _, _ := strings.Cut(cfg.FQDN, ".")
	if len(computer) > 15 {
		computer = computer[:15]
	}
	r := &ntlmRef{cfg: cfg.NTLM, server: &ntlm.Server{
		Domain:      cfg.NTLM.Domain,
		DNSDomain:   strings.ToLower(cfg.Realm),
		Computer:    strings.ToUpper(computer),
		DNSComputer: strings.ToLower(cfg.FQDN),
	}}
	if prev != nil && prev.cfg == cfg.NTLM {
		r.verifier = prev.verifier
		return r, nil
	}
	var args []string
	if cfg.NTLM.SMBConf != "" {
		args = append(args, "--configfile="+cfg.NTLM.SMBConf)
	}
	v, err := ntlm.NewVerifier(ntlm.VerifierConfig{
		Helper:     cfg.NTLM.Helper,
		Args:       args,
		MaxHelpers: cfg.NTLM.MaxHelpers,
		Timeout:    cfg.NTLM.Timeout,
		Logger:     n.log.With("node", cfg.FQDN, "component", "ntlm_auth"),
	})
	if err != nil {
		return nil, fmt.Errorf("NTLM helper: %w", err)
	}
	r.verifier = v
	return r, nil
}

// retire closes old's helpers when new no longer uses them, once the checks
// in flight with them have had their time.
func (old *ntlmRef) retire(new *ntlmRef) {
	if old == nil || (new != nil && new.verifier == old.verifier) {
		return
	}
	time.AfterFunc(old.cfg.Timeout+time.Second, func() { _ = old.verifier.Close() })
}

// ntlmBlob decodes the token of an "Authorization: NTLM" header, which
// must be an NTLMSSP message.
func ntlmBlob(blob string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(blob)
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: base64: %w", ntlm.ErrMalformed, err)
	case !ntlm.IsMessage(raw):
		return nil, fmt.Errorf("%w: not an NTLMSSP message", ntlm.ErrMalformed)
	}
	return raw, nil
}

// ntlmInNegotiate returns the NTLMSSP message of a Negotiate token that is
// not Kerberos: bare, or in SPNEGO with the SPNEGO token it
// came in (nil when bare). A token that carries none (garbage, a
// NegTokenInit that only proposes NTLMSSP) gives nil, for the Kerberos
// path to answer.
func ntlmInNegotiate(raw []byte) (msg []byte, sp *ntlm.SPNEGO) {
	if ntlm.IsMessage(raw) {
		return raw, nil
	}
	if sp, err := ntlm.ParseSPNEGO(raw); err == nil && ntlm.IsMessage(sp.Token) {
		return sp.Token, sp
	}
	return nil, nil
}

// handleNTLM answers one leg of an NTLM exchange: a NEGOTIATE gets the
// challenge, an AUTHENTICATE is checked and, accepted, completes the login.
func (n *Node) handleNTLM(s *settings, w http.ResponseWriter, r *http.Request, log *slog.Logger, msg []byte, sp *ntlm.SPNEGO, start time.Time) {
	spnego := sp != nil
	log = log.With("mechanism", mechNTLM, "spnego", spnego)
	c := connOf(r.Context())
	switch ntlm.MessageType(msg) {
	case ntlm.TypeNegotiate:
		neg, err := ntlm.ParseNegotiate(msg)
		if err != nil {
			n.fail(w, r, log, mechNTLM, failMalformed, err, start)
			return
		}
		if spnego && !sp.Init {
			n.fail(w, r, log, mechNTLM, failMalformed, fmt.Errorf("%w: a NEGOTIATE in a NegTokenResp, not a NegTokenInit", ntlm.ErrMalformed), start)
			return
		}
		chal, pc, err := s.ntlm.server.Challenge(neg)
		if spnego {
			pc.UseSPNEGO(sp)
		}
		if err != nil || c == nil {
			n.fail(w, r, log, mechNTLM, failInternal, fmt.Errorf("NTLM challenge: %w (connection state: %t)", err, c != nil), start)
			return
		}
		c.mu.Lock()
		c.ntlm = &ntlmPending{c: pc, spnego: spnego, issued: n.now()}
		c.mu.Unlock()
		n.metrics.ntlmChallenges.Inc()
		log.Debug("ntlm challenge sent")
		if spnego {
			w.Header().Set("WWW-Authenticate", "Negotiate "+base64.StdEncoding.EncodeToString(ntlm.WrapChallenge(chal)))
		} else {
			w.Header().Set("WWW-Authenticate", "NTLM "+base64.StdEncoding.EncodeToString(chal))
		}
		noStore(w)
		writePage(w, http.StatusUnauthorized, "Signing in", "Your browser is signing in with Windows sign-on (NTLM).", "ntlm_challenge")
		return
	case ntlm.TypeAuthenticate:
	default:
		n.fail(w, r, log, mechNTLM, failMalformed, fmt.Errorf("%w: an NTLM message that is neither NEGOTIATE nor AUTHENTICATE", ntlm.ErrMalformed), start)
		return
	}
	if spnego && sp.Init {
		n.fail(w, r, log, mechNTLM, failMalformed, fmt.Errorf("%w: an AUTHENTICATE in a NegTokenInit", ntlm.ErrMalformed), start)
		return
	}

	// The challenge is used once, answered or not.
	var p *ntlmPending
	if c != nil {
		c.mu.Lock()
		p, c.ntlm = c.ntlm, nil
		c.mu.Unlock()
	}
	if p == nil || p.spnego != spnego || n.now().Sub(p.issued) > s.cfg.NTLM.ChallengeTTL {
		n.fail(w, r, log, mechNTLM, failNTLMNoChallenge, errors.New("an AUTHENTICATE with no challenge outstanding on this connection"), start)
		return
	}
	a, err := ntlm.ParseAuthenticate(msg)
	if err != nil {
		n.fail(w, r, log, mechNTLM, classifyNTLM(err), err, start)
		return
	}
	// As the client sent them; a successful login adds the account's
	// names from the directory.
	log = log.With("ntlm_user", clip.String(a.User), "ntlm_domain", clip.String(a.Domain), "workstation", clip.String(a.Workstation))
	if !ntlmDomainMatches(a.Domain, s) {
		n.fail(w, r, log, mechNTLM, failNTLMDomain, fmt.Errorf("domain %q is not %s", clip.String(a.Domain), s.cfg.NTLM.Domain), start)
		return
	}
	vctx, cancel := context.WithTimeout(r.Context(), s.cfg.NTLM.Timeout+time.Second)
	vstart := time.Now()
	id, err := s.ntlm.verifier.Verify(vctx, p.c, a)
	cancel()
	n.metrics.ntlmSeconds.Observe(time.Since(vstart).Seconds())
	if err != nil {
		n.fail(w, r, log, mechNTLM, classifyNTLM(err), err, start)
		return
	}
	var accept []byte
	if spnego {
		if accept, err = id.AcceptSPNEGO(p.c, sp); err != nil {
			n.fail(w, r, log, mechNTLM, classifyNTLM(err), err, start)
			return
		}
	}
	// The account the domain accepted, by the name it gave: its SID and
	// groups come from the directory, as a ticket's PAC would give them.
	pr, ops, err := n.ntlmPrincipal(r.Context(), s, id.User)
	if err != nil {
		n.fail(w, r, log, mechNTLM, classify(err), err, start)
		return
	}
	if spnego {
		w.Header().Set("WWW-Authenticate", "Negotiate "+base64.StdEncoding.EncodeToString(accept))
	}
	n.completeLogin(s, w, r, log, &negotiate.Identity{User: pr.Name, Realm: pr.Realm, UserSID: pr.SID, GroupSIDs: pr.GroupSIDs}, start, mechNTLM, &pr, ops)
}

// ntlmPrincipal finds the account an NTLM login named, as a sAMAccountName
// or as a UPN (whose account the directory names first), with its SID and
// groups, within the login's directory budget; with the LDAP operations it
// made.
func (n *Node) ntlmPrincipal(ctx context.Context, s *settings, user string) (directory.Principal, int, error) {
	res, ok := s.dir.dir.(principalResolver)
	if !ok {
		return directory.Principal{}, 0, errors.New("the directory cannot find accounts by name")
	}
	ctx, cancel := context.WithTimeout(ctx, s.lookupBudget())
	defer cancel()
	var upnOps int
	if strings.Contains(user, "@") {
		up, ok := s.dir.dir.(upnResolver)
		if !ok {
			return directory.Principal{}, 0, errors.New("the directory cannot find accounts by UPN")
		}
		start := time.Now()
		account, ops, err := up.AccountName(ctx, user)
		n.observeLDAP("upn", start, err)
		if err != nil {
			return directory.Principal{}, ops, err
		}
		user, upnOps = account, ops
	}
	start := time.Now()
	p, ops, err := res.NamedPrincipal(ctx, user, s.cfg.Realm)
	n.observeLDAP("principal", start, err)
	return p, upnOps + ops, err
}

// ntlmDomainMatches says whether the domain an AUTHENTICATE names is the
// node's: its NetBIOS name, its DNS name (the realm), or none (the helper
// then takes its own domain).
func ntlmDomainMatches(d string, s *settings) bool {
	return d == "" || strings.EqualFold(d, s.cfg.NTLM.Domain) || strings.EqualFold(d, s.cfg.Realm)
}

// principalResolver finds an account by name with its SID and groups
// (directory.Directory does).
type principalResolver interface {
	NamedPrincipal(ctx context.Context, account, realm string) (directory.Principal, int, error)
}
