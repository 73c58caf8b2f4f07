package negotiate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/client"
	"github.com/jcmturner/gokrb5/v8/config"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/krberror"
	"github.com/jcmturner/gokrb5/v8/spnego"
)

// Outcomes of SelfTest besides the ticket errors of Validate (ErrWrongSPN,
// ErrEnctype, ErrKVNO, ErrDecrypt, ...), which it returns for the ticket
// the KDC issued.
var (
	// ErrKDCUnreachable: no KDC of the realm answered (or none is
	// configured for it).
	ErrKDCUnreachable = errors.New("KDC unreachable")
	// ErrPreauthFailed: the KDC rejected the keytab's key for the account:
	// the keytab is stale (password changed) or belongs to another account.
	ErrPreauthFailed = errors.New("KDC rejected the keytab's key (pre-authentication failed)")
	// ErrAccountUnknown: the KDC does not know the account.
	ErrAccountUnknown = errors.New("account unknown to the KDC")
	// ErrSPNUnknown: the KDC knows no account with the SPN.
	ErrSPNUnknown = errors.New("SPN unknown to the KDC")
	// ErrKDC: the KDC refused for another reason (the detail says which).
	ErrKDC = errors.New("KDC refused the request")
)

// SelfTest proves in one step that the KDC is reachable, that it maps spn
// to the account whose keys are in kt, and that the key version and
// enctype of the tickets it issues match kt. It logs in (AS exchange) as
// account@realm with the keytab's keys, asks a service ticket for spn, and
// validates it through the same checks as Validator.Validate.
//
// An Active Directory keytab often holds only SPN entries. All SPNs of an
// account share its keys (salted with the account name), so when kt has no
// entry for account@realm the SPN entries are used under the account name.
//
// gokrb5 cannot be cancelled, so the exchange runs in its own goroutine and
// SelfTest returns when ctx is done; that goroutine still ends on its own
// within gokrb5's network timeouts (5s per KDC contacted).
func SelfTest(ctx context.Context, krb5conf *config.Config, kt *keytab.Keytab, account, realm, spn string) error {
	if krb5conf == nil || kt == nil || len(kt.Entries) == 0 {
		return errors.New("negotiate self-test: missing krb5 config or empty keytab")
	}
	loginKT := accountKeytab(kt, account, realm, spn)
	if len(loginKT.Entries) == 0 {
		return fmt.Errorf("negotiate self-test: %w: keytab has no keys for %s@%s nor any SPN of realm %s; it holds %s",
			ErrWrongSPN, account, realm, realm, joinInfos(Summarize(kt)))
	}
	conf, err := restrictASEtypes(krb5conf, loginKT)
	if err != nil {
		return fmt.Errorf("negotiate self-test for %s@%s: %w", account, realm, err)
	}
	done := make(chan error, 1) // buffered: the goroutine never blocks if we left
	go runSelfTest(done, conf, kt, loginKT, account, realm, spn)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("negotiate self-test for %s: %w: no answer before the deadline: %w", spn, ErrKDCUnreachable, ctx.Err())
		}
		return fmt.Errorf("negotiate self-test for %s: %w", spn, ctx.Err())
	}
}

// runSelfTest does the blocking Kerberos exchanges and reports on done.
func runSelfTest(done chan<- error, conf *config.Config, kt, loginKT *keytab.Keytab, account, realm, spn string) {
	done <- selfTestExchange(conf, kt, loginKT, account, realm, spn)
}

func selfTestExchange(conf *config.Config, kt, loginKT *keytab.Keytab, account, realm, spn string) error {
	who := account + "@" + realm
	cl := client.NewWithKeytab(account, realm, loginKT, conf, client.DisablePAFXFAST(true))
	defer cl.Destroy() // stops gokrb5's TGT auto-renewal goroutine
	if err := cl.Login(); err != nil {
		return kdcError("log in as "+who, err, loginKT)
	}
	tkt, key, err := cl.GetServiceTicket(spn)
	if err != nil {
		return kdcError(fmt.Sprintf("get a service ticket for %s as %s", spn, who), err, loginKT)
	}
	init, err := spnego.NewNegTokenInitKRB5(cl, tkt, key)
	if err != nil {
		return fmt.Errorf("negotiate self-test: build AP-REQ for %s: %w", spn, err)
	}
	blob, err := (&spnego.SPNEGOToken{Init: true, NegTokenInit: init}).Marshal()
	if err != nil {
		return fmt.Errorf("negotiate self-test: marshal AP-REQ for %s: %w", spn, err)
	}
	id, err := NewValidator(kt, Options{}).Validate(blob)
	if err != nil {
		return fmt.Errorf("negotiate self-test: the KDC's ticket for %s fails this node's checks: %w", spn, err)
	}
	if !strings.EqualFold(id.User, account) {
		return fmt.Errorf("negotiate self-test: ticket for %s names client %s, want %s", spn, id.User, account)
	}
	return nil
}

// accountKeytab returns kt's keys for account@realm: its own entries if it
// has any, else the entries of spn (or, failing that, of every principal of
// realm) renamed to the account.
func accountKeytab(kt *keytab.Keytab, account, realm, spn string) *keytab.Keytab {
	out := keytab.New()
	for _, e := range kt.Entries {
		if principalMatches(e.Principal.Components, e.Principal.Realm, []string{account}, realm) {
			out.Entries = append(out.Entries, e)
		}
	}
	if len(out.Entries) > 0 {
		return out
	}
	spnParts := strings.Split(spn, "/")
	for _, onlySPN := range []bool{true, false} {
		for _, e := range kt.Entries {
			if !strings.EqualFold(e.Principal.Realm, realm) {
				continue
			}
			if onlySPN && !principalMatches(e.Principal.Components, e.Principal.Realm, spnParts, realm) {
				continue
			}
			e.Principal.Components = []string{account}
			e.Principal.NumComponents = 1
			e.Principal.NameType = 1 // KRB_NT_PRINCIPAL
			if e.Timestamp.IsZero() {
				// gokrb5's key lookup skips entries without a timestamp.
				e.Timestamp = time.Unix(1, 0)
			}
			out.Entries = append(out.Entries, e)
		}
		if len(out.Entries) > 0 {
			return out
		}
	}
	return out
}

// restrictASEtypes returns a copy of conf whose AS-REQ offers only the
// enctypes kt has keys for, so the KDC picks one the keytab can answer and a
// key missing from the keytab shows up as a precise ticket check later.
func restrictASEtypes(conf *config.Config, kt *keytab.Keytab) (*config.Config, error) {
	have := map[int32]bool{}
	var haveNames []string
	for _, e := range kt.Entries {
		if !have[e.Key.KeyType] {
			have[e.Key.KeyType] = true
			haveNames = append(haveNames, etypeLabel(e.Key.KeyType))
		}
	}
	var ids []int32
	for _, id := range conf.LibDefaults.DefaultTktEnctypeIDs {
		if have[id] {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: the keytab's enctypes (%s) are not in krb5.conf default_tkt_enctypes", ErrEnctype, strings.Join(haveNames, ", "))
	}
	c := *conf
	c.LibDefaults.DefaultTktEnctypeIDs = ids
	return &c, nil
}

// missingKey matches gokrb5's complaint that the keytab lacks the key the
// KDC used for the account.
var missingKey = regexp.MustCompile(`matching key not found in keytab.*kvno: (\d+) etype: (\d+)`)

// kdcError sorts a gokrb5 client error of the self-test: a key the KDC
// used that the keytab lacks is named, anything else by kdcSentinel.
func kdcError(op string, err error, loginKT *keytab.Keytab) error {
	msg := err.Error()
	if m := missingKey.FindStringSubmatch(msg); m != nil {
		kvno, _ := strconv.Atoi(m[1])
		etype64, _ := strconv.ParseInt(m[2], 10, 32)
		etype := int32(etype64)
		var kvnos []string
		for _, e := range loginKT.Entries {
			if e.Key.KeyType == etype {
				kvnos = appendUnique(kvnos, fmt.Sprint(e.KVNO))
			}
		}
		if len(kvnos) > 0 && kvno != 0 {
			return fmt.Errorf("negotiate self-test: %s: %w: the KDC used kvno %d (%s) for the account but the keytab has kvno %s: the password changed after the keytab was exported",
				op, ErrKVNO, kvno, etypeLabel(etype), strings.Join(kvnos, ", "))
		}
		return fmt.Errorf("negotiate self-test: %s: %w: the KDC used %s for the account but the keytab has %s",
			op, ErrEnctype, etypeLabel(etype), joinInfos(Summarize(loginKT)))
	}
	return fmt.Errorf("negotiate self-test: %s: %w: %v", op, kdcSentinel(err), err)
}

// kdcSentinel sorts a gokrb5 client error into this package's sentinels.
// gokrb5 flattens KDC errors into text, so the error code names are matched.
func kdcSentinel(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "KDC_ERR_PREAUTH_FAILED"), strings.Contains(msg, "KRB_AP_ERR_BAD_INTEGRITY"),
		strings.Contains(msg, "client password/keytab incorrect"):
		return ErrPreauthFailed
	case strings.Contains(msg, "KDC_ERR_C_PRINCIPAL_UNKNOWN"):
		return ErrAccountUnknown
	case strings.Contains(msg, "KDC_ERR_S_PRINCIPAL_UNKNOWN"):
		return ErrSPNUnknown
	case strings.Contains(msg, "KDC_ERR_ETYPE_NOSUPP"):
		return ErrEnctype
	case strings.Contains(msg, "KDC_ERR_"), strings.Contains(msg, "KRB_AP_ERR_"), strings.Contains(msg, "KRB_ERR_"):
		return ErrKDC
	}
	var ke krberror.Krberror
	if errors.As(err, &ke) && (ke.RootCause == krberror.NetworkingError || ke.RootCause == krberror.ConfigError) ||
		strings.Contains(msg, "error sending to a KDC") || strings.Contains(msg, "communication error with KDC") {
		return ErrKDCUnreachable
	}
	return ErrKDC
}
