package negotiate

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// ErrBadCredentials: the KDC refused a password sign-in: a wrong password,
// an unknown, disabled, locked or expired account, or an expired password.
// Which of them is in the error's text, for the log only: telling a
// client would tell it which accounts exist.
var ErrBadCredentials = errors.New("the KDC refused the user name and password")

// PasswordLogin checks user's password with the KDC of realm as kinit does
// (an AS exchange), asks a service ticket for spn with it, and returns the
// SPNEGO token of an AP-REQ for that ticket: what a browser would send, for
// Validator.Validate to check and read the PAC of. The password is used
// for the exchange and never kept or put in an error.
//
// gokrb5 cannot be cancelled, so the exchange runs in its own goroutine
// and PasswordLogin returns when ctx is done; that goroutine still ends
// within gokrb5's network timeouts (5s per KDC contacted).
func PasswordLogin(ctx context.Context, conf *config.Config, user, realm, password, spn string) ([]byte, error) {
	if conf == nil {
		return nil, errors.New("password sign-in: no krb5 config")
	}
	type result struct {
		blob []byte
		err  error
	}
	done := make(chan result, 1) // buffered: the goroutine never blocks if we left
	go func() {
		blob, err := passwordExchange(conf, user, realm, password, spn)
		done <- result{blob, err}
	}()
	select {
	case r := <-done:
		return r.blob, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("password sign-in: %w: no answer in time: %w", ErrKDCUnreachable, ctx.Err())
	}
}

func passwordExchange(conf *config.Config, user, realm, password, spn string) ([]byte, error) {
	cl := client.NewWithPassword(user, realm, password, conf, client.DisablePAFXFAST(true))
	defer cl.Destroy() // stops gokrb5's TGT auto-renewal goroutine
	if err := cl.Login(); err != nil {
		return nil, passwordError("log in", err)
	}
	tkt, key, err := cl.GetServiceTicket(spn)
	if err != nil {
		return nil, passwordError("get a service ticket for "+spn, err)
	}
	init, err := spnego.NewNegTokenInitKRB5(cl, tkt, key)
	if err != nil {
		return nil, fmt.Errorf("password sign-in: build the AP-REQ for %s: %w", spn, err)
	}
	blob, err := (&spnego.SPNEGOToken{Init: true, NegTokenInit: init}).Marshal()
	if err != nil {
		return nil, fmt.Errorf("password sign-in: marshal the AP-REQ for %s: %w", spn, err)
	}
	return blob, nil
}

// passwordError sorts a gokrb5 client error of a password sign-in: every
// refusal of the name and password is ErrBadCredentials, whichever the
// KDC's code (its name stays in the text, for the log); the rest as
// kdcSentinel sorts them.
func passwordError(op string, err error) error {
	sentinel := kdcSentinel(err)
	msg := err.Error()
	switch {
	case sentinel == ErrPreauthFailed, sentinel == ErrAccountUnknown,
		strings.Contains(msg, "KDC_ERR_CLIENT_REVOKED"), strings.Contains(msg, "KDC_ERR_KEY_EXPIRED"),
		strings.Contains(msg, "KDC_ERR_POLICY"):
		sentinel = ErrBadCredentials
	}
	return fmt.Errorf("password sign-in: %s: %w: %v", op, sentinel, err)
}
