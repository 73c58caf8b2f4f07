package authnode

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/iwalb/iwalb/authnode/directory"
	"github.com/iwalb/iwalb/authnode/internal/clip"
	"github.com/iwalb/iwalb/authnode/negotiate"
	"github.com/iwalb/iwalb/authnode/oidc"
	"github.com/iwalb/iwalb/internal/connlimit"
)

// The password sign-in form, for clients that cannot do Kerberos: a laptop
// off the domain, a phone, a browser whose allow-list lacks the site. With
// Config.Form.Enabled, the 401 that asks for Negotiate carries the form as
// its page, so a browser that does not negotiate shows it instead of a
// bare error (one that negotiates retries at once and never shows it). The
// form posts to /login: the password is checked by the KDC (an AS
// exchange, negotiate.PasswordLogin), and the ticket the node then gets
// for its own SPN goes through the same validation, directory check and
// token as a browser's.

// Defaults of FormConfig.
const (
	DefaultFormUserFailures   = 5
	DefaultFormClientFailures = 20
	DefaultFormWindow         = 15 * time.Minute
)

const (
	// formPath is where the form posts, and GET shows the form.
	formPath = "/login"
	// csrfCookie holds the form's anti-forgery token; __Host- makes
	// browsers refuse it unless Secure, for / and without Domain.
	csrfCookie = "__Host-iwalb_csrf"
	// maxFormBody bounds a posted form: its fields, and an OIDC sign-in's
	// authorization request (AuthRequest.Resume, each byte of which the
	// form's encoding may make three).
	maxFormBody = 8<<10 + 3*oidc.MaxResumeBytes
	// maxUserName and maxPassword bound the fields (a UPN is at most
	// some 300 bytes; AD passwords at most 256 characters).
	maxUserName = 320
	maxPassword = 1024
	// kdcBudget bounds one password sign-in's exchanges with the KDC.
	kdcBudget = 15 * time.Second
	// maxFormInFlight bounds the password sign-ins being checked at once:
	// each costs the KDC an AS and a TGS exchange.
	maxFormInFlight = 64
	// minRefusalTime is the least a refused name and password takes to
	// answer: an unknown account is refused by the KDC sooner than a
	// wrong password, and the time must not tell which it was.
	minRefusalTime = 400 * time.Millisecond
	// maxFailureKeys bounds the accounts and addresses whose failures are
	// remembered at once.
	maxFailureKeys = 100_000
)

// failureCounts remembers failed password sign-ins per key (an account or
// a client address) for a window each. It is safe for concurrent use and
// holds at most maxFailureKeys keys.
type failureCounts struct {
	mu   sync.Mutex
	keys map[string]*failureCount
	// nextSweep is the soonest a full table is searched again for ended
	// windows: a table kept full of live ones costs one search a second,
	// not one per failure.
	nextSweep time.Time
}

type failureCount struct {
	n    int
	ends time.Time // the window, from the first failure
}

func newFailureCounts() *failureCounts {
	return &failureCounts{keys: map[string]*failureCount{}}
}

// blocked says whether key has limit failures in its current window, and
// for how long still.
func (f *failureCounts) blocked(key string, limit int, now time.Time) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.keys[key]
	if c == nil || !now.Before(c.ends) {
		return false, 0
	}
	return c.n >= limit, c.ends.Sub(now)
}

// fail counts a failure of key. It reports false when the table is full of
// live windows: the caller must then refuse, as it cannot count.
func (f *failureCounts) fail(key string, window time.Duration, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.keys[key]
	if c == nil || !now.Before(c.ends) {
		if c == nil && len(f.keys) >= maxFailureKeys {
			if now.Before(f.nextSweep) {
				return false
			}
			f.nextSweep = now.Add(time.Second)
			for k, old := range f.keys {
				if !now.Before(old.ends) {
					delete(f.keys, k)
				}
			}
			if len(f.keys) >= maxFailureKeys {
				return false
			}
		}
		c = &failureCount{ends: now.Add(window)}
		f.keys[key] = c
	}
	c.n++
	return true
}

// forget clears key's failures (after a successful sign-in).
func (f *failureCounts) forget(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.keys, key)
}

// clientKey is the failure key of a client address: the address, an IPv6
// one as its /64 (as the connection limits count sources).
func clientKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(remoteAddr)
		return "client " + host
	}
	a := connlimit.Source(ap.Addr().WithZone(""))
	if a.Is6() {
		return "client " + a.String() + "/64"
	}
	return "client " + a.String()
}

// accountName reads what the user typed as their account: sAMAccountName,
// DOMAIN\name, or a UPN. A UPN whose suffix is the realm gives its name
// part; any other UPN is returned in upn, for the directory to name its
// account. It says false for anything else: no sign-in is attempted then.
func accountName(typed, realm string) (name, upn string, ok bool) {
	name = strings.TrimSpace(typed)
	if _, after, found := strings.Cut(name, `\`); found {
		name = after
	}
	if before, suffix, found := strings.Cut(name, "@"); found {
		if suffix == "" || strings.ContainsAny(suffix, "@\\/") || before == "" {
			return "", "", false
		}
		if !strings.EqualFold(suffix, realm) {
			upn, name = name, ""
		} else {
			name = before
		}
	}
	checked := name + upn
	if checked == "" || len(checked) > maxUserName {
		return "", "", false
	}
	for _, r := range checked {
		if unicode.IsControl(r) || r == '/' || r == '\\' || upn == "" && r == '@' {
			return "", "", false
		}
	}
	return name, upn, true
}

// upnResolver names the account of a UPN: the directory does.
type upnResolver interface {
	AccountName(ctx context.Context, upn string) (string, int, error)
}

// formStyle is the pages' only style; the Content-Security-Policy allows
// it by its hash and nothing else.
const formStyle = `body{font-family:sans-serif;max-width:28em;margin:3em auto;line-height:1.4;padding:0 1em}` +
	`label{display:block;margin-top:1em}input{font-size:1em;width:100%;box-sizing:border-box;padding:.4em}` +
	`button{margin-top:1.2em;font-size:1em;padding:.4em 1.2em}.err{color:#a00}`

var formStyleHash = func() string {
	sum := sha256.Sum256([]byte(formStyle))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

// formCSP is the pages' Content-Security-Policy (made once per
// configuration, in settings.formCSP): their own style only, and forms
// that post to the node, whose answer may send the browser on to the
// application (browsers hold a form's redirects to form-action too).
func formCSP(s *settings) string {
	return "default-src 'none'; style-src " + formStyleHash + "; form-action 'self' " + formActions(s) +
		"; frame-ancestors 'none'; base-uri 'none'"
}

var formTemplate = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in{{with .Organisation}} to {{.}}{{end}}</title>
<style>` + formStyle + `</style>
</head><body>
<main>
<h1>Sign in{{with .Organisation}} to {{.}}{{end}}</h1>
{{with .Notice}}<p>{{.}}</p>{{end}}
{{with .Error}}<p class="err" role="alert">{{.}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
{{with .Resume}}<input type="hidden" name="oidc" value="{{.}}">
{{end}}<label for="username">User name</label>
<input id="username" name="username" value="{{.User}}" autocomplete="username" autocapitalize="none" spellcheck="false" required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p>Use your domain account: <code>name</code>, <code>DOMAIN\name</code> or <code>name@{{.Realm}}</code>.</p>
{{with .Help}}<p>{{.}}</p>{{end}}
</main>
</body></html>
`))

// writeForm answers with the sign-in form: a fresh anti-forgery token in
// its cookie and hidden field, notice and errText above the form, user
// (what was typed) kept in its field, and for a sign-in for the OIDC
// provider, its authorization request.
func writeForm(w http.ResponseWriter, r *http.Request, s *settings, status int, notice, errText, user string) {
	var resume string
	if f := signInOf(r); f != nil {
		resume = f.req.Resume
	}
	var b [24]byte
	_, _ = rand.Read(b[:])
	token := base64.RawURLEncoding.EncodeToString(b[:])
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: token, Path: "/", MaxAge: int(time.Hour / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	})
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.formCSP)
	noStore(w)
	w.WriteHeader(status)
	_ = formTemplate.Execute(w, struct {
		Organisation, Help, Notice, Error, User, CSRF, Realm, Resume string
	}{s.cfg.Form.Organisation, s.cfg.Form.Help, notice, errText, user, token, s.cfg.Realm, resume})
}

// Messages of the form. One for every refused name and password, so that
// the form does not tell which accounts exist.
const (
	formNotice        = "Windows sign-in is not available here. Sign in with your domain account."
	formBadCredential = "The user name or password is incorrect, or the account cannot sign in."
	formMissing       = "Enter your user name and password."
	formExpired       = "The sign-in form expired. Please sign in again."
	formUnavailable   = "Sign-in is unavailable for a moment. Please try again shortly."
)

// handleFormPage shows the form (GET /login).
func (n *Node) handleFormPage(s *settings, w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Form.Enabled {
		http.NotFound(w, r)
		return
	}
	writeForm(w, r, s, http.StatusOK, "", "", "")
}

// handleFormLogin checks a posted name and password (POST /login).
func (n *Node) handleFormLogin(s *settings, w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Form.Enabled {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	log := s.log.With("client", r.RemoteAddr, "conn", connID(r.Context()), "method", "password")
	outcome := func(o string) { n.metrics.formSignins.WithLabelValues(o).Inc() }

	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(ct), "application/x-www-form-urlencoded") || r.ParseForm() != nil {
		outcome("bad_request")
		writeForm(w, r, s, http.StatusBadRequest, "", formMissing, "")
		return
	}
	// The form of an OIDC sign-in ends at the provider, which checks the
	// authorization request again.
	var forOIDC *signInFor
	if resume := r.PostForm.Get("oidc"); resume != "" && s.oidc != nil {
		if err := s.oidc.CheckResume(resume); err != nil {
			// Changed on the way: no one is signed in for it.
			outcome("bad_request")
			log.Info("form sign-in", "outcome", "bad_request", "why", "oidc request", "err", err.Error())
			noStore(w)
			writePage(w, http.StatusBadRequest, "The sign-in request is not valid", err.Error(), "oidc_request")
			return
		}
		forOIDC = &signInFor{req: oidc.AuthRequest{Resume: resume}}
		r = withSignIn(r, forOIDC)
		log = log.With("for", "oidc")
	}
	typed := r.PostForm.Get("username")
	if len(typed) > maxUserName {
		typed = ""
	}
	// The anti-forgery token: the form's field must match its cookie,
	// which only this site's pages could have set; a cross-site post
	// also fails on its Origin.
	cookie, err := r.Cookie(csrfCookie)
	field := r.PostForm.Get("csrf")
	if err != nil || field == "" || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(field)) != 1 || !sameOrigin(r, s.cfg.FQDN) {
		outcome("bad_request")
		log.Info("form sign-in", "outcome", "bad_request", "why", "anti-forgery token or origin")
		writeForm(w, r, s, http.StatusForbidden, "", formExpired, typed)
		return
	}
	password := r.PostForm.Get("password")
	user, upn, ok := accountName(typed, s.cfg.Realm)
	if !ok || password == "" || len(password) > maxPassword {
		outcome("bad_request")
		writeForm(w, r, s, http.StatusBadRequest, "", formMissing, typed)
		return
	}
	select {
	case n.formSlots <- struct{}{}:
		defer func() { <-n.formSlots }()
	default:
		outcome("kdc_unavailable")
		w.Header().Set("Retry-After", "1")
		writeForm(w, r, s, http.StatusServiceUnavailable, "", formUnavailable, typed)
		return
	}
	var dirOps int // LDAP operations before the look-up
	if upn != "" {
		// A UPN of another suffix: the directory names its account.
		res, ok := s.dir.dir.(upnResolver)
		if !ok {
			user = ""
		} else {
			ctx, cancel := context.WithTimeout(r.Context(), s.lookupBudget())
			lstart := time.Now()
			user, dirOps, err = res.AccountName(ctx, upn)
			cancel()
			n.observeLDAP("upn", lstart, err)
			if err != nil && !errors.Is(err, directory.ErrNotFound) && !errors.Is(err, directory.ErrAmbiguous) {
				outcome("kdc_unavailable")
				n.metrics.logins.WithLabelValues("failure", "ldap_unavailable", mechPassword).Inc()
				log.Warn("login", "outcome", "failure", "reason", "ldap_unavailable", "err", clip.N(err.Error(), maxErrLog))
				writeForm(w, r, s, http.StatusServiceUnavailable, "", formUnavailable, typed)
				return
			}
		}
		if user == "" {
			// No such UPN: refused as a wrong password is, at the same
			// pace, without asking the KDC.
			n.refuseCredentials(w, r, s, log.With("upn", clip.String(upn)), start, typed,
				errors.New("no account has this userPrincipalName"), clientKey(r.RemoteAddr))
			return
		}
	}
	log = log.With("user", clip.String(user))

	now := n.now()
	userKey, clientKey := "user "+strings.ToLower(user), clientKey(r.RemoteAddr)
	for _, k := range []struct {
		key   string
		limit int
	}{{userKey, s.cfg.Form.UserFailures}, {clientKey, s.cfg.Form.ClientFailures}} {
		if blocked, wait := n.formFailures.blocked(k.key, k.limit, now); blocked {
			outcome("throttled")
			log.Warn("form sign-in", "outcome", "throttled", "key", strings.Fields(k.key)[0], "retry_after", wait.Round(time.Second))
			w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
			writeForm(w, r, s, http.StatusTooManyRequests, "",
				"Too many failed sign-ins. Try again in "+strconv.Itoa(int(wait/time.Minute)+1)+" minutes.", typed)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), kdcBudget)
	defer cancel()
	blob, err := negotiate.PasswordLogin(ctx, s.krb5, user, s.cfg.Realm, password, "HTTP/"+s.cfg.FQDN)
	switch {
	case errors.Is(err, negotiate.ErrBadCredentials):
		n.refuseCredentials(w, r, s, log, start, typed, err, userKey, clientKey)
		return
	case err != nil:
		outcome("kdc_unavailable")
		n.metrics.logins.WithLabelValues("failure", "kdc_unavailable", mechPassword).Inc()
		log.Warn("login", "outcome", "failure", "reason", "kdc_unavailable", "status", http.StatusServiceUnavailable,
			"err", clip.N(err.Error(), maxErrLog), "duration", time.Since(start))
		writeForm(w, r, s, http.StatusServiceUnavailable, "", formUnavailable, typed)
		return
	}
	id, err := s.keys.validator.Validate(blob)
	if err != nil {
		outcome("failed")
		n.fail(w, r, log, mechPassword, classify(err), err, start)
		return
	}
	n.metrics.tickets.WithLabelValues(spnLabel(id.SPN), "ok").Inc()
	if !n.completeLogin(s, w, r, log, id, start, mechPassword, nil, dirOps) {
		outcome("failed")
		return
	}
	n.formFailures.forget(userKey)
	outcome("success")
	if forOIDC != nil {
		s.oidc.Resume(w, r, forOIDC.req.Resume, forOIDC.user)
	}
}

// refuseCredentials answers a refused name and password: the failure is
// counted under keys, logged with why (never shown), and answered with the
// one message for every refusal, no sooner than minRefusalTime after
// start.
func (n *Node) refuseCredentials(w http.ResponseWriter, r *http.Request, s *settings, log *slog.Logger, start time.Time, typed string, why error, keys ...string) {
	now := n.now()
	counted := true
	for _, k := range keys {
		counted = n.formFailures.fail(k, s.cfg.Form.Window, now) && counted
	}
	n.metrics.formSignins.WithLabelValues("bad_credentials").Inc()
	n.metrics.logins.WithLabelValues("failure", "bad_credentials", mechPassword).Inc()
	log.Info("login", "outcome", "failure", "reason", "bad_credentials", "status", http.StatusUnauthorized,
		"err", clip.N(why.Error(), maxErrLog), "counted", counted, "duration", time.Since(start))
	if d := minRefusalTime - time.Since(start); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}
	writeForm(w, r, s, http.StatusUnauthorized, "", formBadCredential, typed)
}

// sameOrigin reports whether a request's Origin, when it has one, is the
// node itself (browsers send it on every POST).
func sameOrigin(r *http.Request, fqdn string) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	host, ok := strings.CutPrefix(o, "https://")
	if !ok {
		return false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.EqualFold(host, fqdn) || strings.EqualFold(host, hostOnly(r.Host))
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
