package ntlm

import (
	"errors"
	"strings"
)

// Outcomes of a check that callers branch on. The domain's refusals are
// told apart as far as its status says; ErrHelper is this side's failure.
var (
	// ErrNTLMv1 is an NTLMv1 (24-byte) or LM-only response: refused
	// before the domain is asked, as they are crackable from a capture.
	ErrNTLMv1 = errors.New("NTLMv1 or LM response refused")
	// ErrAnonymous is an anonymous AUTHENTICATE (no user name, or no
	// response).
	ErrAnonymous = errors.New("anonymous NTLM login refused")
	// ErrLogonFailure is a wrong password, an unknown user, or a response
	// to another challenge: the domain does not say which, to a client.
	ErrLogonFailure = errors.New("the domain refused the user name or password")
	// ErrAccountDisabled is a disabled account.
	ErrAccountDisabled = errors.New("account disabled")
	// ErrAccountLocked is an account locked out after failed logins.
	ErrAccountLocked = errors.New("account locked out")
	// ErrAccountExpired is an account past its expiry date.
	ErrAccountExpired = errors.New("account expired")
	// ErrAccountRestricted is an account the domain's restrictions keep
	// out now or from here: logon hours, workstations, logon type.
	ErrAccountRestricted = errors.New("account restricted")
	// ErrPasswordExpired is a password that expired or must be changed
	// at the next logon.
	ErrPasswordExpired = errors.New("password expired")
	// ErrMIC is an AUTHENTICATE whose MIC, or a SPNEGO mechListMIC, does
	// not match: the messages were changed on the way.
	ErrMIC = errors.New("NTLM message integrity check failed")
	// ErrHelper is a check that could not be made: ntlm_auth could not
	// start, died, timed out, answered garbage, or could not reach the
	// domain. The login may well be valid; try again later.
	ErrHelper = errors.New("NTLM helper unavailable")
)

// statuses maps the Authentication-Error text of ntlm_auth to an outcome.
// ntlm_auth prints get_friendly_nt_error_msg() of winbind's NTSTATUS:
// since Samba 4.x the [MS-ERREF] description (the first text of each
// entry, read from Samba 4.17's libsamba-errors), in older releases a
// short one (the second); the status name itself when it has no
// description. All three are matched, case-insensitively.
var statuses = []struct {
	name  string
	texts []string
	err   error
}{
	{"NT_STATUS_LOGON_FAILURE", []string{"The attempted logon is invalid. This is either due to a bad username or authentication information.", "Logon failure"}, ErrLogonFailure},
	{"NT_STATUS_WRONG_PASSWORD", []string{"When trying to update a password, this return status indicates that the value provided as the current password is not correct.", "Wrong Password"}, ErrLogonFailure},
	{"NT_STATUS_NO_SUCH_USER", []string{"The specified account does not exist.", "No such user"}, ErrLogonFailure},
	{"NT_STATUS_ACCOUNT_DISABLED", []string{"The referenced account is currently disabled and cannot be logged on to.", "Account disabled"}, ErrAccountDisabled},
	{"NT_STATUS_ACCOUNT_LOCKED_OUT", []string{"The user account has been automatically locked because too many invalid logon attempts or password change attempts have been requested.", "Account locked out"}, ErrAccountLocked},
	{"NT_STATUS_PASSWORD_EXPIRED", []string{"The user account password has expired.", "Password expired"}, ErrPasswordExpired},
	{"NT_STATUS_PASSWORD_MUST_CHANGE", []string{"The user password must be changed before logging on the first time.", "Must change password"}, ErrPasswordExpired},
	{"NT_STATUS_ACCOUNT_EXPIRED", []string{"The user account has expired.", "Account expired"}, ErrAccountExpired},
	{"NT_STATUS_ACCOUNT_RESTRICTION", []string{"Indicates a referenced user name and authentication information are valid, but some user account restriction has prevented successful authentication (such as time-of-day restrictions).", "Account restriction"}, ErrAccountRestricted},
	{"NT_STATUS_INVALID_LOGON_HOURS", []string{"The user account has time restrictions and cannot be logged onto at this time.", "Invalid logon hours"}, ErrAccountRestricted},
	{"NT_STATUS_INVALID_WORKSTATION", []string{"The user account is restricted so that it cannot be used to log on from the source workstation.", "Invalid workstation"}, ErrAccountRestricted},
	{"NT_STATUS_LOGON_TYPE_NOT_GRANTED", []string{"A user has requested a type of logon (for example, interactive or network) that has not been granted. An administrator has control over who can logon interactively and through the network.", "Logon type not granted"}, ErrAccountRestricted},
	// The domain could not be asked: winbindd down, its privileged pipe
	// out of reach, no DC.
	{"NT_STATUS_NO_LOGON_SERVERS", []string{"No logon servers are currently available to service the logon request.", "No logon servers"}, ErrHelper},
	{"NT_STATUS_UNSUCCESSFUL", []string{"Reading winbind reply failed!", "{Operation Failed} The requested operation was unsuccessful.", "Undetermined error"}, ErrHelper},
	{"NT_STATUS_TRUSTED_DOMAIN_FAILURE", []string{"The logon request failed because the trust relationship between the primary domain and the trusted domain failed."}, ErrHelper},
	{"NT_STATUS_NO_TRUST_SAM_ACCOUNT", []string{"The SAM database on the Windows Server does not have a computer account for this workstation trust relationship."}, ErrHelper},
	{"NT_STATUS_INSUFFICIENT_RESOURCES", []string{"Insufficient system resources exist to complete the API."}, ErrHelper},
}

// statusOf returns the status name of an Authentication-Error text (for
// the error text), whether the text was known, and its outcome. An unknown
// refusal counts as ErrLogonFailure: the domain did say no.
func statusOf(text string) (name string, known bool, outcome error) {
	text = strings.TrimSpace(text)
	for _, s := range statuses {
		if strings.EqualFold(text, s.name) {
			return s.name, true, s.err
		}
		for _, t := range s.texts {
			if strings.EqualFold(text, t) {
				return s.name, true, s.err
			}
		}
	}
	return "", false, ErrLogonFailure
}
