package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Sentinel errors for the outcomes callers branch on. Every error returned by
// this package wraps at most one of them (plus the underlying cause) and says
// which operation, user and server it concerns. Errors that wrap none of them
// are configuration or protocol problems (for example a BaseDN that does not
// exist, or a proxy account without read access).
var (
	// ErrUnavailable means the directory is down: the connection was
	// refused, could not be made (no route, no answer to the TCP connect),
	// was reset or closed, TLS failed, or the server answered
	// busy/unavailable/unwilling. Callers answer 503. A caller's own
	// cancellation also wraps it, together with context.Canceled.
	ErrUnavailable = errors.New("directory unavailable")
	// ErrTimeout means the directory accepted the connection but did not
	// answer (TLS handshake, bind or search) within Config.Timeout or the
	// caller's deadline: it is slow, not down. Callers answer 503. A
	// caller's deadline also wraps context.DeadlineExceeded.
	ErrTimeout = errors.New("directory did not answer in time")
	// ErrBusy means every connection of the pool (Config.PoolSize) stayed
	// busy for Config.QueueTimeout: this node asks more than the directory
	// answers, and the request was not sent. Callers answer 503 with
	// Retry-After.
	ErrBusy = errors.New("all directory connections busy")
	// ErrBind means the directory rejected the proxy account's credentials
	// (result 49). Callers answer 503 and report not ready.
	ErrBind = errors.New("proxy bind rejected")
	// ErrNotFound means no user account has the user's SID.
	ErrNotFound = errors.New("user not found")
	// ErrAmbiguous means more than one account matches the user's SID.
	ErrAmbiguous = errors.New("user SID matches more than one account")
	// ErrIdentityMismatch means the account with the ticket's SID is not
	// the one the ticket's client name names.
	ErrIdentityMismatch = errors.New("ticket name and SID name different accounts")
	// ErrDisabled means the account is disabled or has expired.
	ErrDisabled = errors.New("account disabled")
	// ErrLockedOut means the account is locked out (too many bad
	// passwords), as msDS-User-Account-Control-Computed says.
	ErrLockedOut = errors.New("account locked out")
	// ErrNotInGroup means the account is not a member, directly or through
	// nested groups, of Config.RequiredGroup: by the ticket's group SIDs
	// (GroupCheckTicket) or by the directory's answer (GroupCheckDirectory).
	ErrNotInGroup = errors.New("user not in required group")
)

// adBindHints explains the "data NNN" code that Active Directory puts in the
// diagnostic message of a failed bind; it is the only place AD says why.
var adBindHints = map[string]string{
	"525": "user not found",
	"52e": "wrong password",
	"530": "logon not permitted at this time",
	"531": "logon not permitted from this workstation",
	"532": "password expired",
	"533": "account disabled",
	"701": "account expired",
	"773": "password must be reset",
	"775": "account locked out",
}

var adDataCode = regexp.MustCompile(`data ([0-9a-fA-F]+)`)

// bindHint turns AD's diagnostic message into a short explanation such as
// "AD data 52e: wrong password", or "" when there is nothing to add.
func bindHint(err error) string {
	m := adDataCode.FindStringSubmatch(err.Error())
	if m == nil {
		return ""
	}
	code := strings.ToLower(m[1])
	if hint, ok := adBindHints[code]; ok {
		return "AD data " + code + ": " + hint
	}
	return "AD data " + code
}

// isCertificateError reports whether err is a TLS certificate rejection.
// go-ldap's StartTLS formats the handshake error with %v, so the x509 error
// is only recognisable by its text there.
func isCertificateError(err error) bool {
	var verr *tls.CertificateVerificationError
	var herr x509.HostnameError
	var uerr x509.UnknownAuthorityError
	var ierr x509.CertificateInvalidError
	return errors.As(err, &verr) || errors.As(err, &herr) || errors.As(err, &uerr) ||
		errors.As(err, &ierr) || strings.Contains(err.Error(), "x509: ")
}

// isUnavailable reports whether err means the server could not be asked, as
// opposed to an answer we do not like. Such connections are never reused.
func isUnavailable(err error) bool {
	var lerr *ldap.Error
	if !errors.As(err, &lerr) {
		// Not an LDAP result at all: a net, TLS or context error.
		return true
	}
	switch lerr.ResultCode {
	case ldap.ErrorNetwork, ldap.LDAPResultBusy, ldap.LDAPResultUnavailable,
		ldap.LDAPResultUnwillingToPerform, ldap.LDAPResultServerDown,
		ldap.LDAPResultTimeout, ldap.LDAPResultConnectError,
		ldap.ErrorUnexpectedResponse, ldap.ErrorMalformedPacket:
		return true
	}
	return false
}

// errBusy marks a wait for a pool connection that ran out; errConnect a
// failure to open the TCP connection. wrap turns them into ErrBusy and
// ErrUnavailable.
var (
	errBusy    = errors.New("waited for a free connection")
	errConnect = errors.New("connect")
)

// wrap adds operator context ("ldap search for "alice" at ldaps://...") and
// the sentinel that matches err. ctx is the caller's context: when it ended,
// that is what the caller needs to know, whatever the connection said.
func (d *Directory) wrap(ctx context.Context, what string, err error) error {
	prefix := fmt.Sprintf("ldap %s at %s", what, d.cfg.URL)
	switch {
	case errors.Is(err, errBusy):
		return fmt.Errorf("%s: %w: %w", prefix, ErrBusy, err)
	case errors.Is(ctx.Err(), context.Canceled):
		return fmt.Errorf("%s: %w: %w", prefix, ErrUnavailable, ctx.Err())
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w: %w", prefix, ErrTimeout, ctx.Err())
	case ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials):
		if hint := bindHint(err); hint != "" {
			return fmt.Errorf("%s: %w (%s): %w", prefix, ErrBind, hint, err)
		}
		return fmt.Errorf("%s: %w: %w", prefix, ErrBind, err)
	case isCertificateError(err):
		return fmt.Errorf("%s: %w: TLS certificate not accepted (check TLS.RootCAs and TLS.ServerName): %w",
			prefix, ErrUnavailable, err)
	case errors.Is(err, errConnect):
		// A TCP connect that got no answer is a host that cannot be
		// reached, not a slow server.
		return fmt.Errorf("%s: %w: %w", prefix, ErrUnavailable, err)
	case isTimeout(err):
		return fmt.Errorf("%s: %w: %w", prefix, ErrTimeout, err)
	case isUnavailable(err):
		return fmt.Errorf("%s: %w: %w", prefix, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
