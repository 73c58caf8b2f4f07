package authnode

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/internal/clip"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/store"
)

// Identity is what an application learns about a user when it redeems a
// token or validates a session.
type Identity struct {
	// SID is the account's objectSid, which the KDC vouched for in the
	// ticket's PAC: unlike the names, it never changes.
	SID               string `json:"objectSid"`
	SAMAccountName    string `json:"sAMAccountName"`
	UserPrincipalName string `json:"userPrincipalName"`
	DisplayName       string `json:"displayName"`
	Mail              string `json:"mail"`
	// Groups and GroupSIDs come from the ticket (its PAC): the groups the
	// KDC found the user in, nesting resolved, when it issued the ticket.
	// GroupSIDs holds every group SID of the ticket, sorted; Groups the
	// sAMAccountName of those that are groups of the directory under the
	// base DN, sorted. Well-known SIDs and other domains' groups appear in
	// GroupSIDs only.
	Groups     []string  `json:"groups"`
	GroupSIDs  []string  `json:"groupSids"`
	Realm      string    `json:"realm"`
	AuthTime   time.Time `json:"authTime"`
	AuthMethod string    `json:"authMethod"`
	// ClientAddr is where the login came from (the PROXY header's address
	// when the node sits behind the L4 balancer).
	ClientAddr string `json:"clientAddr"`
}

// failure is how one kind of failed login is answered, logged and counted.
type failure struct {
	reason    string // metric label and log field
	status    int
	challenge bool   // answer with WWW-Authenticate: Negotiate so the client may retry
	title     string // shown to the user
	hint      string // what to check
}

var (
	failNoNegotiate = failure{"no_negotiate", http.StatusUnauthorized, true,
		"Windows sign-in is needed",
		"Your browser did not offer Kerberos. Sign in to the domain, and make sure this site is in the browser's intranet zone (or its auth-server allowlist)."}
	failNTLM = failure{"ntlm", http.StatusUnauthorized, true,
		"The browser offered NTLM instead of Kerberos",
		"No Kerberos ticket could be had for this host name: the SPN HTTP/<host name> is probably not registered on the service account, or the site is not in the intranet zone. Reach the site by its full DNS name, not an IP address or alias."}
	failMalformed = failure{"malformed", http.StatusBadRequest, false,
		"The authentication token is malformed",
		"The Authorization header could not be decoded as a SPNEGO/Kerberos token."}
	failWrongSPN = failure{"wrong_spn", http.StatusInternalServerError, false,
		"This server cannot read your Kerberos ticket",
		"The ticket was issued for a service principal that is not in this server's keytab. The administrator must add that SPN's keys to the keytab."}
	failEnctype = failure{"enctype", http.StatusInternalServerError, false,
		"This server cannot read your Kerberos ticket",
		"Encryption type not permitted: the ticket uses an encryption type for which this server's keytab has no key (check msDS-SupportedEncryptionTypes and the keytab's enctypes)."}
	failKVNO = failure{"kvno", http.StatusInternalServerError, false,
		"This server's keytab is out of date",
		"The key version (KVNO) of the ticket does not match the keytab: the service account's password changed after the keytab was exported."}
	failDecrypt = failure{"decrypt", http.StatusInternalServerError, false,
		"This server's keytab does not match the domain",
		"The ticket could not be decrypted with the keytab's key of the same version: export the keytab again."}
	failClockSkew = failure{"clock_skew", http.StatusUnauthorized, true,
		"Your computer's clock is out of step",
		"Kerberos allows only a few minutes between the clocks of your computer, this server and the domain controller."}
	failClockAhead = failure{"clock_ahead", http.StatusUnauthorized, true,
		"Your computer's clock is ahead",
		"Your sign-in is dated ahead of this server's clock by more than it accepts. Your computer, this server and the domain controller must keep the same time."}
	failReplay = failure{"replay", http.StatusUnauthorized, true,
		"This sign-in was already used",
		"The Kerberos authenticator was seen before (a replayed request). Reload the page to sign in again."}
	failExpired = failure{"ticket_expired", http.StatusUnauthorized, true,
		"Your Kerberos ticket has expired",
		"Lock and unlock your computer, or run kinit, to get a fresh ticket."}
	failAuthenticator = failure{"bad_authenticator", http.StatusUnauthorized, true,
		"The authentication token is not valid",
		"The Kerberos authenticator does not match its ticket."}
	failPAC = failure{"bad_pac", http.StatusUnauthorized, true,
		"The authentication token is not valid",
		"The ticket's PAC (the user's group list) failed its checks."}
	failReplayQuota = failure{"replay_quota", http.StatusTooManyRequests, false,
		"Too many sign-ins", "Your account has signed in here too many times in the last few minutes. Try again later."}
	failReplayCacheFull = failure{"replay_cache_full", http.StatusServiceUnavailable, false,
		"The server is busy", "Too many sign-ins at once; try again in a moment."}
	failNoPAC = failure{"no_pac", http.StatusInternalServerError, false,
		"This server cannot confirm your account",
		"The Kerberos ticket carries no PAC (the user's SID and groups). Active Directory always adds one, unless the service account is marked NO_AUTH_DATA_REQUIRED."}
	failLDAPDown = failure{"ldap_unavailable", http.StatusServiceUnavailable, false,
		"The directory cannot be reached",
		"Your ticket is valid, but Active Directory could not be asked about your account. Try again shortly."}
	failLDAPTimeout = failure{"ldap_timeout", http.StatusServiceUnavailable, false,
		"The directory is slow to answer",
		"Your ticket is valid, but Active Directory did not answer about your account in time. Try again shortly."}
	failLDAPBusy = failure{"ldap_busy", http.StatusServiceUnavailable, false,
		"The server is busy", "Too many sign-ins are waiting for the directory; try again in a moment."}
	failForeignRealm = failure{"foreign_realm", http.StatusForbidden, false,
		"Your account is from another domain", "This service accepts accounts of its own domain only."}
	failUserNotFound = failure{"user_not_found", http.StatusForbidden, false,
		"Your account was not found", "The directory has no user with this ticket's SID."}
	failIdentityMismatch = failure{"identity_mismatch", http.StatusForbidden, false,
		"Your account could not be confirmed", "The directory's account with this ticket's SID has another name than the ticket. If the account was just renamed, sign out and in again."}
	failUserDisabled = failure{"user_disabled", http.StatusForbidden, false,
		"Your account is disabled", "The account is disabled or expired in Active Directory."}
	failUserLocked = failure{"user_locked", http.StatusForbidden, false,
		"Your account is locked out", "Too many wrong passwords were tried for your account. Wait for the lockout to end, or ask the help desk to unlock it."}
	failNotInGroup = failure{"not_in_group", http.StatusForbidden, false,
		"You are not allowed to use this application", "Your account is not a member of the group this application requires."}
	failStoreFull = failure{"store_full", http.StatusServiceUnavailable, false,
		"The server is busy", "Too many sign-ins are held here; try again in a few minutes."}
	failStoreUnavailable = failure{"store_unavailable", http.StatusServiceUnavailable, false,
		"Sign-in is unavailable for a moment", "The store this server shares with the other sign-in servers cannot be reached. Try again shortly."}
	failInternal = failure{"internal", http.StatusInternalServerError, false,
		"Sign-in failed", "An internal error occurred; the administrator can find it in the log."}
)

// errFailure is how one error (a sentinel it wraps) is answered.
type errFailure struct {
	target error
	f      failure
}

// match is the failure of the first entry of table whose sentinel err
// wraps, or failInternal.
func match(err error, table []errFailure) failure {
	for _, c := range table {
		if errors.Is(err, c.target) {
			return c.f
		}
	}
	return failInternal
}

// classify maps an error from validation or the directory to its failure.
func classify(err error) failure { return match(err, failures) }

// failures maps the validator's, the directory's and the stores' errors to
// their failures, the first match winning.
var failures = []errFailure{
	{negotiate.ErrNTLM, failNTLM},
	{negotiate.ErrMalformed, failMalformed},
	{negotiate.ErrWrongSPN, failWrongSPN},
	{negotiate.ErrEnctype, failEnctype},
	{negotiate.ErrKVNO, failKVNO},
	{negotiate.ErrDecrypt, failDecrypt},
	{negotiate.ErrClockSkew, failClockSkew},
	{negotiate.ErrClockAhead, failClockAhead},
	{negotiate.ErrReplay, failReplay},
	{negotiate.ErrReplayQuota, failReplayQuota},
	{negotiate.ErrReplayCacheFull, failReplayCacheFull},
	{negotiate.ErrAuthenticator, failAuthenticator},
	{negotiate.ErrPAC, failPAC},
	{negotiate.ErrTicketExpired, failExpired},
	{directory.ErrUnavailable, failLDAPDown},
	{directory.ErrBind, failLDAPDown},
	{directory.ErrTimeout, failLDAPTimeout},
	{directory.ErrBusy, failLDAPBusy},
	{directory.ErrLockedOut, failUserLocked},
	{directory.ErrNotFound, failUserNotFound},
	{directory.ErrAmbiguous, failUserNotFound},
	{directory.ErrIdentityMismatch, failIdentityMismatch},
	{directory.ErrDisabled, failUserDisabled},
	{directory.ErrNotInGroup, failNotInGroup},
	{store.ErrFull, failStoreFull},
	// After ErrFull: a Redis at its maxmemory fails the replay cache
	// too, and is full rather than unavailable.
	{store.ErrUnavailable, failStoreUnavailable},
	{negotiate.ErrReplayUnavailable, failStoreUnavailable},
}

// handleSSO performs the Negotiate exchange, confirms the user in the
// directory and sends the browser to the application with a one-time token.
func (n *Node) handleSSO(s *settings, w http.ResponseWriter, r *http.Request) { n.signIn(s, w, r) }

// signIn signs the browser in: by its SSO cookie, the Negotiate exchange
// (Kerberos, or NTLM when enabled) or, when it can do neither, the form.
// A sign-in for the application ends with its one-time token; one for the
// OIDC provider (signInOf) with the user handed back.
func (n *Node) signIn(s *settings, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := s.log.With("client", r.RemoteAddr, "conn", connID(r.Context()))
	if f := signInOf(r); f != nil {
		log = log.With("for", "oidc", "client_id", f.req.ClientID)
	}
	if s.cfg.SSOSession.Enabled && n.loginFromCookie(s, w, r, log, start) {
		return
	}
	if s.cfg.Form.Enabled && !negotiateOffered(s.cfg.Form.NegotiateNetworks, r.RemoteAddr) {
		// Not a network of domain machines: the form at once, and no
		// challenge a browser could answer with a password dialog.
		n.metrics.formOffered.WithLabelValues("network").Inc()
		log.Info("login", "outcome", "form", "reason", "network")
		writeForm(w, r, s, http.StatusOK, formNotice, "", "")
		return
	}
	if s.ntlm != nil {
		if blob, ok := schemeBlob(r.Header.Get("Authorization"), "NTLM"); ok {
			msg, err := ntlmBlob(blob)
			if err != nil {
				n.fail(w, r, log, mechNTLM, failMalformed, err, start)
			} else {
				n.handleNTLM(s, w, r, log, msg, nil, start)
			}
			return
		}
	}
	blob, ok := negotiateBlob(r.Header.Get("Authorization"))
	if !ok {
		n.fail(w, r, log, mechNone, failNoNegotiate, nil, start)
		return
	}
	n.metrics.headerBytes.Observe(float64(len(r.Header.Get("Authorization"))))
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		n.metrics.negotiateKinds.WithLabelValues(negotiate.KindGarbage.String()).Inc()
		n.fail(w, r, log, mechNone, failMalformed, err, start)
		return
	}
	kind := negotiate.Classify(raw)
	if s.ntlm != nil && kind != negotiate.KindKerberos {
		// Decoded once; a Kerberos token, the common case, is not parsed
		// again. Classify reads SPNEGO with gokrb5, which refuses some
		// clients' NegTokenResp (Samba's, with a mechListMIC) as
		// garbage: those are given to the NTLM parser too.
		if msg, sp := ntlmInNegotiate(raw); msg != nil {
			if kind = negotiate.KindNTLM; sp != nil {
				kind = negotiate.KindSPNEGONTLM
			}
			n.metrics.negotiateKinds.WithLabelValues(kind.String()).Inc()
			n.handleNTLM(s, w, r, log.With("kind", kind.String()), msg, sp, start)
			return
		}
	}
	n.metrics.negotiateKinds.WithLabelValues(kind.String()).Inc()
	log = log.With("kind", kind.String())

	vstart := time.Now()
	id, err := s.keys.validator.Validate(raw)
	n.metrics.kerberosSeconds.Observe(time.Since(vstart).Seconds())
	if err != nil {
		f := classify(err)
		if kind == negotiate.KindKerberos {
			// Labelled by the keytab principal the ticket was for, or
			// "other": a ticket for an SPN the keytab lacks needs no key
			// to make and says nothing about the keytab.
			spn := spnLabel(negotiate.TicketSPN(err))
			n.metrics.tickets.WithLabelValues(spn, f.reason).Inc()
			log = log.With("spn", spn)
			if f == failKVNO {
				// Which key the ticket needs and which the node has:
				// an older one is a ticket from before a password
				// change kept past previous_keys_ttl, a newer one a
				// keytab not yet exported or loaded.
				if kvno, ok := negotiate.TicketKVNO(raw); ok {
					log = log.With("ticket_kvno", kvno)
				}
				cur, ret := s.keys.kvnos(negotiate.TicketSPN(err))
				log = log.With("keytab_kvnos", cur, "retired_kvnos", ret)
			}
		}
		n.fail(w, r, log, kindMechanism(kind), f, err, start)
		return
	}
	n.metrics.tickets.WithLabelValues(spnLabel(id.SPN), "ok").Inc()
	n.completeLogin(s, w, r, log, id, start, mechKerberos, nil, 0)
}

// completeLogin finishes a login whose Kerberos ticket was validated (from
// the browser's Negotiate header, or from a password sign-in, method
// mechPassword), or whose NTLM answer the domain accepted (mechNTLM): it confirms the user in the directory and sends the browser
// to the application with a one-time token. It reports whether it did.
// known, if not nil, is the account as the directory gave it earlier in
// this login (NTLM's search by name), whose entry the look-up reuses
// instead of searching again; dirOps counts the LDAP operations the login
// made before (that search, a UPN's).
func (n *Node) completeLogin(s *settings, w http.ResponseWriter, r *http.Request, log *slog.Logger, id *negotiate.Identity, start time.Time, method string, known *directory.Principal, dirOps int) bool {
	// Names come from the ticket: log at most clip.Max bytes of each.
	log = log.With("user", clip.String(id.User), "realm", clip.String(id.Realm), "spn", id.SPN, "sid", clip.String(id.UserSID), "method", method)
	// A trusted realm's "alice" is not this domain's alice: other realms
	// stop here.
	if !strings.EqualFold(id.Realm, s.cfg.Realm) {
		n.fail(w, r, log, method, failForeignRealm, fmt.Errorf("client realm %s is not %s", clip.String(id.Realm), s.cfg.Realm), start)
		return false
	}
	// The account is confirmed by the SID the KDC signed, not by name.
	if id.UserSID == "" {
		n.fail(w, r, log, method, failNoPAC, fmt.Errorf("ticket of %s for %s has no PAC: check that the service account %s is not marked NO_AUTH_DATA_REQUIRED", clip.String(id.User), id.SPN, s.cfg.Account), start)
		return false
	}

	p := directory.Principal{Name: id.User, Realm: id.Realm, SID: id.UserSID, GroupSIDs: id.GroupSIDs}
	if known != nil {
		p = *known
	}
	user, ops, err := n.lookup(r, s, p, dirOps)
	if err != nil {
		n.fail(w, r, log, method, classify(err), err, start)
		return false
	}

	ident := Identity{
		SID:               id.UserSID,
		SAMAccountName:    user.SAMAccountName,
		UserPrincipalName: user.UserPrincipalName,
		DisplayName:       user.DisplayName,
		Mail:              user.Mail,
		Groups:            user.Groups,
		GroupSIDs:         user.GroupSIDs,
		Realm:             id.Realm,
		AuthTime:          n.now().UTC().Truncate(time.Second),
		AuthMethod:        method,
		ClientAddr:        r.RemoteAddr,
	}
	token, ok := n.tokenFor(w, r, s, log, ident, method, start)
	if !ok {
		return false
	}
	if len(id.ResponseToken) > 0 && method == mechKerberos {
		w.Header().Set("WWW-Authenticate", "Negotiate "+base64.StdEncoding.EncodeToString(id.ResponseToken))
	}
	if s.cfg.SSOSession.Enabled {
		n.startSSOSession(r.Context(), s, w, log, ident, ident.AuthTime)
	}
	n.deliver(w, r, s, log, ident, token, method, start,
		"groups", len(user.Groups), "group_sids", len(user.GroupSIDs), "ldap_ops", ops, "kvno", id.KVNO)
	return true
}

// tokenFor makes the application's one-time token for a login of ident,
// unless the login is for the OIDC provider, which makes its own code
// (the token is then empty). On a failure it answers, and says false.
func (n *Node) tokenFor(w http.ResponseWriter, r *http.Request, s *settings, log *slog.Logger, ident Identity, method string, start time.Time) (string, bool) {
	if signInOf(r) != nil {
		return "", true
	}
	token, err := n.issueToken(r.Context(), s, ident)
	if err != nil {
		n.fail(w, r, log, method, classify(err), err, start)
		return "", false
	}
	return token, true
}

// deliver ends a successful login: the user goes back to the OIDC
// provider (which answers), or the browser to the application with token.
// It counts the login and logs it, with attrs.
func (n *Node) deliver(w http.ResponseWriter, r *http.Request, s *settings, log *slog.Logger, ident Identity, token, method string, start time.Time, attrs ...any) {
	attrs = append([]any{"outcome", "success"}, attrs...)
	if f := signInOf(r); f != nil {
		f.user = oidcUser(&ident)
		n.metrics.logins.WithLabelValues("success", "ok", method).Inc()
	} else {
		attrs = append(attrs, "status", n.sendToApplication(w, r, s, token, method))
	}
	log.Info("login", append(attrs, "duration", time.Since(start))...)
}

// sendToApplication answers a successful login: the browser goes to the
// application with the token (303 after the form's POST, so that the
// application is fetched with GET; else 302). It counts the login and
// returns the status.
func (n *Node) sendToApplication(w http.ResponseWriter, r *http.Request, s *settings, token, mech string) int {
	noStore(w)
	// The token travels in the URL: keep it out of Referer headers.
	w.Header().Set("Referrer-Policy", "no-referrer")
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	http.Redirect(w, r, s.applicationURL(token), status)
	n.metrics.logins.WithLabelValues("success", "ok", mech).Inc()
	return status
}

// lookup confirms a login's account in the directory within the login's
// budget, and records how long it took and how many operations the login
// made: those of the look-up and the prior ones the login made before it
// (an NTLM login's search for the account by name).
func (n *Node) lookup(r *http.Request, s *settings, p directory.Principal, prior int) (*directory.User, int, error) {
	ctx, cancel := context.WithTimeout(r.Context(), s.lookupBudget())
	defer cancel()
	start := time.Now()
	user, ops, err := s.dir.dir.Lookup(ctx, p)
	n.observeLDAP("lookup", start, err)
	ops += prior
	n.metrics.ldapOpsPerLogin.Observe(float64(ops))
	return user, ops, err
}

// lookupBudget bounds one login's directory look-up in all: a wait for a
// connection (queue_timeout) and its searches (timeout each: the user, and
// the group SIDs the cache lacks), with room for one more.
func (s *settings) lookupBudget() time.Duration {
	return s.cfg.LDAP.QueueTimeout + 3*s.cfg.LDAP.Timeout
}

// maxErrLog bounds the error text of a login log line. Every string from
// the request in it is clipped already (to clip.Max); this also bounds
// what operator-made parts add (a keytab's list of SPNs).
const maxErrLog = 4 << 10

// fail answers a failed login by mechanism mech, logs it once and counts
// it.
func (n *Node) fail(w http.ResponseWriter, r *http.Request, log *slog.Logger, mech string, f failure, err error, start time.Time) {
	n.metrics.logins.WithLabelValues("failure", f.reason, mech).Inc()
	attrs := []any{"outcome", "failure", "reason", f.reason, "status", f.status, "duration", time.Since(start)}
	if err != nil {
		attrs = append(attrs, "err", clip.N(err.Error(), maxErrLog))
	}
	level := slog.LevelInfo
	if f.status >= 500 {
		level = slog.LevelWarn
	}
	log.Log(r.Context(), level, "login", attrs...)
	s := n.cur.Load()
	if s.cfg.Form.Enabled && (f == failNoNegotiate || f == failNTLM) {
		// The page of the 401 is the sign-in form. After NTLM (which
		// this node does not take) no new challenge: the browser would
		// only try NTLM again, or ask for a password in a dialog instead
		// of showing the form. A 401 must carry a challenge (RFC 9110,
		// 15.5.2), so the form comes as a plain page, 200.
		why, status := "ntlm", http.StatusOK
		if f == failNoNegotiate {
			challenge(w, s)
			why, status = "no_negotiate", f.status
		}
		n.metrics.formOffered.WithLabelValues(why).Inc()
		writeForm(w, r, s, status, formNotice, "", "")
		return
	}
	if f.challenge {
		challenge(w, s)
	}
	if d := negotiate.RetryAfter(err); d > 0 {
		// Whole seconds, past the instant the refusal ends.
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
	} else if f == failLDAPBusy {
		// The pool frees up as logins finish: moments, not minutes.
		w.Header().Set("Retry-After", "1")
	}
	noStore(w)
	writePage(w, f.status, f.title, f.hint, f.reason)
}

// challenge offers the schemes the node takes: Negotiate, and NTLM when
// it is enabled (after Negotiate: a browser that can do Kerberos does).
func challenge(w http.ResponseWriter, s *settings) {
	w.Header().Set("WWW-Authenticate", "Negotiate")
	if s.ntlm != nil {
		w.Header().Add("WWW-Authenticate", "NTLM")
	}
}

// negotiateOffered says whether a client at remoteAddr is offered
// Negotiate: every client when networks is empty, else those in one.
func negotiateOffered(networks []netip.Prefix, remoteAddr string) bool {
	if len(networks) == 0 {
		return true
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range networks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// negotiateBlob returns the base64 token of an "Authorization: Negotiate"
// header.
func negotiateBlob(h string) (string, bool) { return schemeBlob(h, "Negotiate") }

// schemeBlob returns the base64 token of an Authorization header of
// scheme. The scheme is case-insensitive (RFC 9110).
func schemeBlob(h, scheme string) (string, bool) {
	sch, blob, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(sch, scheme) {
		return "", false
	}
	blob = strings.TrimSpace(blob)
	return blob, blob != ""
}

// applicationURL is the configured application URL with the token added to
// its query.
func (s *settings) applicationURL(token string) string {
	u := *s.appURL
	q := u.Query()
	q.Set(s.cfg.TokenParam, token)
	u.RawQuery = q.Encode()
	return u.String()
}

// spnLabel is the metric label of the keytab principal a ticket was for
// (from negotiate.TicketSPN or Identity.SPN, which name only keytab
// entries, as the keytab spells them): "other" when there is none, so that
// the label set stays bounded.
func spnLabel(spn string) string {
	if spn == "" {
		return "other"
	}
	return spn
}

func (n *Node) observeLDAP(op string, start time.Time, err error) {
	result := "ok"
	if err != nil && (errors.Is(err, directory.ErrUnavailable) || errors.Is(err, directory.ErrBind) ||
		errors.Is(err, directory.ErrTimeout) || errors.Is(err, directory.ErrBusy)) {
		result = "error"
	}
	n.metrics.ldapSeconds.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// parseAppURL checks the application URL once, at start-up.
func parseAppURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("must be an absolute http(s) URL")
	}
	return u, nil
}

// The mechanism label of iwalb_authnode_logins_total, and a login's
// authMethod.
const (
	mechKerberos = "kerberos"
	mechNTLM     = "ntlm"
	mechPassword = "password"
	mechCookie   = "cookie"
	mechNone     = "none"
)

// kindMechanism is the mechanism of a Negotiate token of kind k: NTLM for
// NTLM, bare or in SPNEGO, Kerberos for the rest, which the Kerberos
// validator read or refused.
func kindMechanism(k negotiate.Kind) string {
	switch k {
	case negotiate.KindNTLM, negotiate.KindSPNEGONTLM:
		return mechNTLM
	case negotiate.KindGarbage:
		return mechNone
	}
	return mechKerberos
}
