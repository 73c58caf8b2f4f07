package negotiate

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jcmturner/gofork/encoding/asn1"
	"github.com/jcmturner/gokrb5/v8/asn1tools"
	"github.com/jcmturner/gokrb5/v8/crypto"
	"github.com/jcmturner/gokrb5/v8/iana/adtype"
	"github.com/jcmturner/gokrb5/v8/iana/asnAppTag"
	"github.com/jcmturner/gokrb5/v8/iana/flags"
	"github.com/jcmturner/gokrb5/v8/iana/keyusage"
	"github.com/jcmturner/gokrb5/v8/iana/msgtype"
	"github.com/jcmturner/gokrb5/v8/keytab"
	"github.com/jcmturner/gokrb5/v8/messages"
	"github.com/jcmturner/gokrb5/v8/spnego"
	"github.com/jcmturner/gokrb5/v8/types"

	"github.com/iwalb/iwalb/authnode/internal/clip"
)

// Outcomes of Validate that callers branch on with errors.Is. The returned
// errors wrap them with a detail an operator can act on; they name
// principals, enctypes and key versions, never key material.
var (
	// ErrNTLM: the browser sent NTLM (bare or inside SPNEGO) because it
	// could not get a Kerberos ticket for this host.
	ErrNTLM = errors.New("NTLM instead of Kerberos")
	// ErrMalformed: the blob is not a well-formed single-round Kerberos
	// Negotiate token.
	ErrMalformed = errors.New("malformed Negotiate token")
	// ErrWrongSPN: the ticket is for a service principal or realm the
	// keytab does not hold.
	ErrWrongSPN = errors.New("ticket is for a service principal not in the keytab")
	// ErrEnctype: the keytab holds the principal, but not in the ticket's
	// encryption type.
	ErrEnctype = errors.New("encryption type not permitted")
	// ErrKVNO: the keytab holds the principal and enctype, but another key
	// version (the account's password changed since the keytab was made).
	ErrKVNO = errors.New("key version number mismatch")
	// ErrDecrypt: principal, enctype and kvno match but the key does not
	// decrypt the ticket (stale keytab, or made from a wrong password).
	ErrDecrypt = errors.New("ticket does not decrypt with the keytab key")
	// ErrAuthenticator: the authenticator does not decrypt with the
	// ticket's session key or names another client (forged or corrupted).
	ErrAuthenticator = errors.New("authenticator does not match the ticket")
	// ErrPAC: the ticket's PAC is undecodable or its server signature is
	// wrong.
	ErrPAC = errors.New("invalid PAC in ticket")
	// ErrClockSkew: the authenticator's time is too far from the node's
	// clock, or the ticket is not yet valid.
	ErrClockSkew = errors.New("clock skew too great")
	// ErrClockAhead: the authenticator's time is within the skew but more
	// than Options.MaxFutureSkew ahead of the node's clock. It is refused
	// because an authenticator must be remembered until its time plus the
	// skew: a future time would make it occupy the replay cache for up to
	// twice the skew.
	ErrClockAhead = errors.New("authenticator time ahead of this node's clock")
	// ErrTicketExpired: the ticket's end time (plus the skew allowance) has
	// passed.
	ErrTicketExpired = errors.New("ticket expired")
	// ErrReplay: this authenticator was already accepted.
	ErrReplay = errors.New("replayed authenticator")
	// ErrReplayQuota: the client already has Options.ReplayQuota live
	// authenticators (logins within the skew window) at this node; its
	// login is refused until the oldest expires (RetryAfter says when).
	// Other clients are not affected.
	ErrReplayQuota = errors.New("too many live authenticators for this client")
	// ErrReplayCacheFull: the replay cache holds Options.ReplayCacheMax
	// live entries, none of them of a client at its quota, so the
	// authenticator could not be recorded; it is refused rather than
	// accepted unprotected (RetryAfter says when room frees up). Raise
	// Options.ReplayCacheMax.
	ErrReplayCacheFull = errors.New("replay cache full")
)

// Defaults of Options.
const (
	DefaultMaxClockSkew   = 5 * time.Minute
	DefaultMaxFutureSkew  = 30 * time.Second
	DefaultReplayCacheMax = 100000
	DefaultReplayQuota    = 50
)

// Options tune a Validator. The zero value gives the defaults.
type Options struct {
	// MaxClockSkew is the allowed difference between the node's clock and
	// the client's, and the grace past a ticket's end time (default
	// DefaultMaxClockSkew).
	MaxClockSkew time.Duration
	// MaxFutureSkew is how far ahead of the node's clock an authenticator
	// may be (default DefaultMaxFutureSkew, at most MaxClockSkew). Clients
	// keep their clocks with the domain's, so this covers their drift plus
	// the node's offset from the domain controller; authenticators from
	// further ahead fail with ErrClockAhead. An accepted authenticator is
	// remembered until its time plus MaxClockSkew, hence at most
	// MaxClockSkew+MaxFutureSkew.
	MaxFutureSkew time.Duration
	// Now returns the current time (default time.Now); tests inject it.
	Now func() time.Time
	// ReplayCacheMax bounds the replay cache (default
	// DefaultReplayCacheMax entries, 100 to 250 bytes each). It should
	// exceed the number of logins of distinct clients in any
	// MaxClockSkew+MaxFutureSkew window.
	ReplayCacheMax int
	// ReplayQuota is how many live authenticators (logins in the window)
	// one client may have (default DefaultReplayQuota, at most
	// ReplayCacheMax). A client is its PAC's user SID, or its principal
	// name without a PAC.
	ReplayQuota int
	// ReplayStore, when set, remembers authenticators in place of the
	// Validator's in-memory cache (ReplayCacheMax does not apply to it):
	// a store shared by several nodes refuses at each an authenticator
	// accepted at any. It should enforce ReplayQuota.
	ReplayStore ReplayStore
}

// Identity is who a valid Negotiate blob authenticates.
type Identity struct {
	User     string    // client name without realm, e.g. "alice"
	Realm    string    // client realm, e.g. "EXAMPLE.TEST"
	SPN      string    // service principal, e.g. "HTTP/auth1.example.test@EXAMPLE.TEST"
	AuthTime time.Time // when the client logged in to the KDC
	EndTime  time.Time // when the ticket expires
	Etype    int32     // ticket encryption type
	KVNO     int       // ticket key version
	// UserSID is the user's SID from the PAC's logon info (its logon
	// domain SID and user RID), which the KDC signed; "" when the ticket
	// has no PAC (Active Directory always adds one).
	UserSID string
	// GroupSIDs are the group SIDs of the PAC's logon info, once each: its
	// groups, extra SIDs and resource groups, nesting resolved by the KDC
	// when it issued the ticket. They are written as package
	// authnode/internal/sid writes SIDs, as the directory's are.
	GroupSIDs []string
	// ResponseToken is the blob to send back base64-encoded in
	// "WWW-Authenticate: Negotiate ..." with the successful response: a
	// SPNEGO NegTokenResp (accept-completed) carrying an AP-REP when the
	// client asked for mutual authentication. For a bare KRB5 request it is
	// the bare KRB5 AP-REP token, or nil when none was asked for.
	ResponseToken []byte
}

// Validator checks Negotiate blobs against a keytab. It is safe for
// concurrent use; it keeps its own replay cache, so use one Validator per
// keytab for the life of the process.
type Validator struct {
	kt     *keytab.Keytab
	keyIDs []uint32 // per keytab entry: the same for entries with the same key
	skew   time.Duration
	future time.Duration
	now    func() time.Time
	replay *replayCache
	seen   ReplayStore // Options.ReplayStore; nil: replay
}

// NewValidator returns a Validator for the keys in kt. kt must not be
// modified afterwards.
func NewValidator(kt *keytab.Keytab, opts Options) *Validator {
	if opts.MaxClockSkew <= 0 {
		opts.MaxClockSkew = DefaultMaxClockSkew
	}
	if opts.MaxFutureSkew <= 0 {
		opts.MaxFutureSkew = DefaultMaxFutureSkew
	}
	opts.MaxFutureSkew = min(opts.MaxFutureSkew, opts.MaxClockSkew)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReplayCacheMax <= 0 {
		opts.ReplayCacheMax = DefaultReplayCacheMax
	}
	if opts.ReplayQuota <= 0 {
		opts.ReplayQuota = DefaultReplayQuota
	}
	if kt == nil {
		kt = keytab.New()
	}
	return &Validator{
		kt:     kt,
		keyIDs: keyIDs(kt),
		skew:   opts.MaxClockSkew,
		future: opts.MaxFutureSkew,
		now:    opts.Now,
		replay: newReplayCache(opts.ReplayCacheMax, opts.ReplayQuota),
		seen:   opts.ReplayStore,
	}
}

// ReplayCacheStats returns how many authenticators the replay cache holds
// and how many it has evicted, since it was made, to make room for another
// client's (each one an authenticator that could then be replayed).
func (v *Validator) ReplayCacheStats() (live int, evicted uint64) {
	return v.replay.stats()
}

// Validate checks blob, the base64-decoded value of an "Authorization:
// Negotiate" header, and returns the client it authenticates. Errors wrap
// one of the Err* sentinels of this package; TicketSPN and RetryAfter tell
// more about some of them. Every string of the blob that an error quotes
// (principal names, realms, parser details) is cut to clip.Max bytes.
func (v *Validator) Validate(blob []byte) (*Identity, error) {
	t := parse(blob)
	switch t.kind {
	case KindKerberos:
	case KindNTLM, KindSPNEGONTLM:
		return nil, fmt.Errorf("%w (%s): the browser could not get a Kerberos ticket for this host; the SPN HTTP/<host name in the URL> is probably not registered on the service account (setspn -L), or the site is not in the browser's intranet zone (Chrome/Edge: AuthServerAllowlist)", ErrNTLM, clip.String(t.detail))
	default:
		return nil, fmt.Errorf("%w: %s", ErrMalformed, clip.String(t.detail))
	}
	ap, err := unmarshalAPReq(t.apReq)
	if err != nil {
		return nil, err
	}
	tk, err := v.decryptTicket(&ap.Ticket)
	if err != nil {
		return nil, err
	}
	id, err := v.accept(t, ap, tk)
	if err != nil {
		var te *ticketError
		if !errors.As(err, &te) {
			te = &ticketError{err: err}
			err = te
		}
		te.spn = tk.principal
		return nil, err
	}
	return id, nil
}

// ticketError carries what a caller may want to know about a refused
// ticket besides its message.
type ticketError struct {
	err   error
	spn   string        // keytab principal the ticket was for; "" when none
	retry time.Duration // how long the refusal lasts, when known
}

func (e *ticketError) Error() string { return e.err.Error() }
func (e *ticketError) Unwrap() error { return e.err }

// TicketSPN returns the keytab principal (as the keytab spells it, e.g.
// "HTTP/auth1.example.test@EXAMPLE.TEST") of the ticket that err, from
// Validate, refused; "" when the ticket named a service principal the
// keytab does not hold, or the blob did not get as far as naming one.
//
// It is a bounded label for metrics and alarms: ErrKVNO, ErrEnctype and
// ErrDecrypt for a known SPN mean the keytab may be stale, whereas a ticket
// for an unknown SPN (ErrWrongSPN) needs no key to make.
func TicketSPN(err error) string {
	var te *ticketError
	if errors.As(err, &te) {
		return te.spn
	}
	return ""
}

// RetryAfter returns how long the refusal err (ErrReplayQuota or
// ErrReplayCacheFull, from Validate) lasts at most: the client may try
// again after it. It returns 0 for other errors.
func RetryAfter(err error) time.Duration {
	var te *ticketError
	if errors.As(err, &te) {
		return te.retry
	}
	return 0
}

func unmarshalAPReq(b []byte) (ap *messages.APReq, err error) {
	defer func() {
		if r := recover(); r != nil {
			ap, err = nil, fmt.Errorf("%w: AP-REQ: ASN.1 decoder failed: %s", ErrMalformed, clip.String(fmt.Sprint(r)))
		}
	}()
	ap = new(messages.APReq)
	if err := ap.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("%w: AP-REQ: %s", ErrMalformed, clip.String(err.Error()))
	}
	if len(ap.Ticket.SName.NameString) == 0 {
		return nil, fmt.Errorf("%w: ticket has an empty service name", ErrMalformed)
	}
	if bitSet(ap.APOptions, flags.APOptionUseSessionKey) {
		return nil, fmt.Errorf("%w: user-to-user AP-REQ is not supported", ErrMalformed)
	}
	return ap, nil
}

// bitSet reports whether bit i (0 = most significant of the first byte)
// of a Kerberos flags field is set; missing bytes count as clear.
func bitSet(f asn1.BitString, i int) bool {
	b := i / 8
	if b >= len(f.Bytes) {
		return false
	}
	return f.Bytes[b]&(0x80>>uint(i%8)) != 0
}

// ticketKey is the keytab entry that decrypted a ticket.
type ticketKey struct {
	key       types.EncryptionKey
	keyID     uint32 // the same for every entry with this key (see keyIDs)
	principal string // "HTTP/auth1.example.test@EXAMPLE.TEST"
}

func entryPrincipal(components []string, realm string) string {
	return strings.Join(components, "/") + "@" + realm
}

// decryptTicket finds the keytab key for tkt, checking in turn the
// unencrypted service name and realm, the enctype and the key version so
// that each mismatch gets its own error, then decrypts the ticket. Once the
// name matched a keytab entry, errors name that entry (TicketSPN).
func (v *Validator) decryptTicket(tkt *messages.Ticket) (tk ticketKey, err error) {
	var known string // keytab principal matching the ticket's name
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: ticket decryption failed on malformed input: %s", ErrMalformed, clip.String(fmt.Sprint(r)))
		}
		if err != nil && known != "" {
			err = &ticketError{err: err, spn: known}
		}
	}()
	// The ticket's service name travels in clear: anyone can write any
	// name there, of any length.
	want := clip.String(entryPrincipal(tkt.SName.NameString, tkt.Realm))
	etype, kvno := tkt.EncPart.EType, tkt.EncPart.KVNO

	var byName, byEtype []int
	for i, e := range v.kt.Entries {
		if principalMatches(e.Principal.Components, e.Principal.Realm, tkt.SName.NameString, tkt.Realm) {
			byName = append(byName, i)
		}
	}
	if len(byName) == 0 {
		return tk, fmt.Errorf("%w: ticket is for %s; the keytab holds %s (the client asked for an SPN this node has no key for: check the host name in the URL and the keytab export)",
			ErrWrongSPN, want, strings.Join(v.principals(), ", "))
	}
	first := v.kt.Entries[byName[0]].Principal
	known = entryPrincipal(first.Components, first.Realm)
	var have []string
	for _, i := range byName {
		e := v.kt.Entries[i]
		if e.Key.KeyType == etype {
			byEtype = append(byEtype, i)
		}
		have = appendUnique(have, etypeLabel(e.Key.KeyType))
	}
	if len(byEtype) == 0 {
		return tk, fmt.Errorf("%w: ticket for %s is encrypted with %s but the keytab has only %s for it (compare the account's msDS-SupportedEncryptionTypes with the enctypes exported to the keytab)",
			ErrEnctype, known, etypeLabel(etype), strings.Join(have, ", "))
	}
	var byKVNO []int
	var kvnos []string
	for _, i := range byEtype {
		e := v.kt.Entries[i]
		if kvno == 0 || e.KVNO == uint32(kvno) {
			byKVNO = append(byKVNO, i)
		}
		kvnos = appendUnique(kvnos, fmt.Sprint(e.KVNO))
	}
	if len(byKVNO) == 0 {
		return tk, fmt.Errorf("%w: ticket for %s (%s) has kvno %d but the keytab has kvno %s: the account's password changed after the keytab was exported; export a new keytab",
			ErrKVNO, known, etypeLabel(etype), kvno, strings.Join(kvnos, ", "))
	}
	var lastErr error
	for _, i := range byKVNO {
		e := v.kt.Entries[i]
		plain, err := crypto.DecryptEncPart(tkt.EncPart, e.Key, keyusage.KDC_REP_TICKET)
		if err != nil {
			lastErr = err
			continue
		}
		var enc messages.EncTicketPart
		if err := enc.Unmarshal(plain); err != nil {
			return tk, fmt.Errorf("%w: ticket for %s decrypts but its content does not decode: %s", ErrMalformed, known, clip.String(err.Error()))
		}
		tkt.DecryptedEncPart = enc
		return ticketKey{key: e.Key, keyID: v.keyIDs[i], principal: entryPrincipal(e.Principal.Components, e.Principal.Realm)}, nil
	}
	return tk, fmt.Errorf("%w: ticket for %s (%s, kvno %d) fails to decrypt with the keytab's key: the keytab is stale or was made from another password or salt; export a new keytab (%s)",
		ErrDecrypt, known, etypeLabel(etype), kvno, clip.String(lastErr.Error()))
}

// keyIDs names the keys of kt (type and bytes), one name per entry: the
// replay cache names the decrypting key by it, so that every SPN of an
// account (they share its key) is one service. The name is taken from the
// key's fingerprint, so it is the same on every node that holds the key,
// whatever its keytab's order: a replay cache shared by nodes needs that.
func keyIDs(kt *keytab.Keytab) []uint32 {
	ids := make([]uint32, len(kt.Entries))
	for i, e := range kt.Entries {
		fp := keyFingerprint(e.Key)
		ids[i] = binary.BigEndian.Uint32(fp[:4])
	}
	return ids
}

// keyFingerprint names a key without holding it, for keyIDs.
func keyFingerprint(k types.EncryptionKey) [sha256.Size]byte {
	h := sha256.New()
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], uint32(k.KeyType))
	h.Write(t[:])
	h.Write(k.KeyValue)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// principalMatches compares case-insensitively: Active Directory treats
// SPNs and realms so, and encrypts with the same account key whatever case
// the client used.
func principalMatches(components []string, realm string, name []string, tktRealm string) bool {
	if len(components) != len(name) || !strings.EqualFold(realm, tktRealm) {
		return false
	}
	for i := range components {
		if !strings.EqualFold(components[i], name[i]) {
			return false
		}
	}
	return true
}

func (v *Validator) principals() []string {
	var out []string
	for _, e := range v.kt.Entries {
		out = appendUnique(out, entryPrincipal(e.Principal.Components, e.Principal.Realm))
	}
	if len(out) == 0 {
		out = []string{"no keys at all"}
	}
	return out
}

func appendUnique(s []string, x string) []string {
	for _, y := range s {
		if y == x {
			return s
		}
	}
	return append(s, x)
}

// accept runs the checks that need the decrypted ticket: authenticator,
// times, PAC, replay; then builds the response token.
func (v *Validator) accept(t token, ap *messages.APReq, tk ticketKey) (id *Identity, err error) {
	defer func() {
		if r := recover(); r != nil {
			id, err = nil, fmt.Errorf("%w: failed on malformed ticket content: %s", ErrMalformed, clip.String(fmt.Sprint(r)))
		}
	}()
	ep := ap.Ticket.DecryptedEncPart
	client := clip.String(ep.CName.PrincipalNameString() + "@" + ep.CRealm)

	plain, err := crypto.DecryptEncPart(ap.EncryptedAuthenticator, ep.Key, keyusage.AP_REQ_AUTHENTICATOR)
	if err != nil {
		return nil, fmt.Errorf("%w: authenticator of %s for %s does not decrypt with the ticket's session key: %s", ErrAuthenticator, client, tk.principal, clip.String(err.Error()))
	}
	var auth types.Authenticator
	if err := auth.Unmarshal(plain); err != nil {
		return nil, fmt.Errorf("%w: authenticator of %s for %s does not decode: %s", ErrAuthenticator, client, tk.principal, clip.String(err.Error()))
	}
	if !auth.CName.Equal(ep.CName) || auth.CRealm != ep.CRealm {
		return nil, fmt.Errorf("%w: authenticator names %s but the ticket was issued to %s", ErrAuthenticator, clip.String(auth.CName.PrincipalNameString()+"@"+auth.CRealm), client)
	}

	now := v.now().UTC()
	if now.After(ep.EndTime.Add(v.skew)) {
		return nil, fmt.Errorf("%w: ticket of %s for %s ended at %s, now is %s (allowance %s): the client must get a new ticket",
			ErrTicketExpired, client, tk.principal, ep.EndTime.UTC().Format(time.RFC3339), now.Format(time.RFC3339), v.skew)
	}
	start := ep.StartTime
	if start.IsZero() {
		start = ep.AuthTime
	}
	if start.Sub(now) > v.skew || bitSet(ep.Flags, flags.Invalid) {
		return nil, fmt.Errorf("%w: ticket of %s for %s is not yet valid (starts %s, now is %s): check this node's clock against the domain controller (NTP)",
			ErrClockSkew, client, tk.principal, start.UTC().Format(time.RFC3339), now.Format(time.RFC3339))
	}
	ctime := auth.CTime.Add(time.Duration(auth.Cusec) * time.Microsecond)
	if d := now.Sub(ctime); d > v.skew || -d > v.skew {
		return nil, fmt.Errorf("%w: authenticator of %s was made at %s, this node's clock says %s (off by %s, max %s): synchronise client and node clocks with the domain (NTP)",
			ErrClockSkew, client, ctime.UTC().Format(time.RFC3339), now.Format(time.RFC3339), d.Round(time.Second), v.skew)
	}
	if ahead := ctime.Sub(now); ahead > v.future {
		return nil, fmt.Errorf("%w: authenticator of %s was made at %s, %s ahead of this node's clock (%s); at most %s ahead is accepted: synchronise the client's and this node's clocks with the domain (NTP)",
			ErrClockAhead, client, ctime.UTC().Format(time.RFC3339Nano), ahead.Round(time.Millisecond), now.Format(time.RFC3339Nano), v.future)
	}

	info, err := readPAC(&ap.Ticket, tk.key)
	if err != nil {
		return nil, fmt.Errorf("%w: ticket of %s for %s: %s", ErrPAC, client, tk.principal, clip.String(err.Error()))
	}

	key := ReplayKey{
		Client: quotaID(info.userSID, ep.CName.PrincipalNameString(), ep.CRealm),
		CTime:  auth.CTime.Unix(),
		Cusec:  int32(auth.Cusec),
		Key:    tk.keyID,
	}
	// The authenticator stays acceptable until ctime+skew (it is at most
	// MaxFutureSkew ahead, so that is at most skew+MaxFutureSkew away):
	// that is exactly how long it must be remembered.
	res, retry, err := v.record(key, now, ctime.Add(v.skew))
	if err != nil {
		return nil, fmt.Errorf("%w: authenticator of %s for %s not recorded, so refused: %w", ErrReplayUnavailable, client, tk.principal, err)
	}
	switch res {
	case replayed:
		return nil, fmt.Errorf("%w: authenticator of %s for %s made at %s was already used", ErrReplay, client, tk.principal, ctime.UTC().Format(time.RFC3339Nano))
	case overQuota:
		return nil, &ticketError{retry: retry, err: fmt.Errorf("%w: %s already has %d live authenticators (logins within %s); refused for up to %s",
			ErrReplayQuota, client, v.replay.quota, v.skew+v.future, retry.Round(time.Second))}
	case cacheFull:
		return nil, &ticketError{retry: retry, err: fmt.Errorf("%w: %d live authenticators within the %s window, none of a client at its quota; refusing %s rather than risk a replay (raise the replay cache size)",
			ErrReplayCacheFull, v.replay.max, v.skew+v.future, client)}
	}

	resp, err := responseToken(t, ap, &auth, ep.Key)
	if err != nil {
		return nil, fmt.Errorf("build Negotiate response token for %s: %w", client, err)
	}
	return &Identity{
		User:          ep.CName.PrincipalNameString(),
		Realm:         ep.CRealm,
		SPN:           tk.principal,
		AuthTime:      ep.AuthTime,
		EndTime:       ep.EndTime,
		Etype:         ap.Ticket.EncPart.EType,
		KVNO:          ap.Ticket.EncPart.KVNO,
		UserSID:       info.userSID,
		GroupSIDs:     info.groupSIDs,
		ResponseToken: resp,
	}, nil
}

// quotaID names the client whose live authenticators count against one
// quota: the account's SID when the ticket has a PAC, so that "alice",
// "ALICE" and alice's enterprise name are one client; else the principal
// name, lower-cased for the same reason.
func quotaID(userSID, name, realm string) string {
	if userSID != "" {
		return userSID
	}
	return strings.ToLower(name + "@" + realm)
}

// pacInfo is what a ticket's PAC says about its client.
type pacInfo struct {
	userSID   string
	groupSIDs []string
}

// readPAC returns the user SID and group SIDs of the ticket's PAC,
// verifying its server signature with the key that decrypted the ticket. A
// ticket without a PAC (a non-AD KDC, or a service account marked
// NO_AUTH_DATA_REQUIRED) gives an empty pacInfo and no error.
func readPAC(tkt *messages.Ticket, key types.EncryptionKey) (pacInfo, error) {
	b, ok := ticketPAC(tkt)
	if !ok {
		return pacInfo{}, nil
	}
	return pacIdentity(b, key)
}

// pacIdentity checks the PAC b with the key that decrypted its ticket and
// returns the user SID and group SIDs of its logon info.
func pacIdentity(b []byte, key types.EncryptionKey) (pacInfo, error) {
	k, err := parsePAC(b, key)
	if err != nil {
		return pacInfo{}, err
	}
	user := k.userSID()
	if user == "" {
		return pacInfo{}, errors.New("PAC logon info has no user RID")
	}
	return pacInfo{userSID: user, groupSIDs: k.groupSIDs()}, nil
}

// ticketPAC returns the first PAC (AD-WIN2K-PAC inside AD-IF-RELEVANT) of
// the decrypted ticket, and whether it has one (an empty one is a PAC, and
// refused as such).
func ticketPAC(tkt *messages.Ticket) ([]byte, bool) {
	for _, ad := range tkt.DecryptedEncPart.AuthorizationData {
		if ad.ADType != adtype.ADIfRelevant {
			continue
		}
		var inner types.AuthorizationData
		if err := inner.Unmarshal(ad.ADData); err != nil {
			continue
		}
		for _, e := range inner {
			if e.ADType == adtype.ADWin2KPAC {
				return e.ADData, true
			}
		}
	}
	return nil, false
}

// encAPRepPart is RFC 4120 EncAPRepPart without the optional subkey:
// the initiator's subkey (or the session key) stays the context key.
type encAPRepPart struct {
	CTime     time.Time `asn1:"generalized,explicit,tag:0"`
	Cusec     int       `asn1:"explicit,tag:1"`
	SeqNumber int64     `asn1:"explicit,optional,tag:3"`
}

// responseToken builds what goes back in WWW-Authenticate. When the client
// set mutual-required (MIT GSSAPI, hence curl, always does) it must get an
// AP-REP proving this node could read the authenticator, or it fails.
func responseToken(t token, ap *messages.APReq, auth *types.Authenticator, sessionKey types.EncryptionKey) ([]byte, error) {
	var gssTok []byte
	if bitSet(ap.APOptions, flags.APOptionMutualRequired) {
		var seq [4]byte
		if _, err := rand.Read(seq[:]); err != nil {
			return nil, err
		}
		part := encAPRepPart{
			CTime:     auth.CTime.UTC(),
			Cusec:     auth.Cusec,
			SeqNumber: int64(binary.BigEndian.Uint32(seq[:]) & 0x3fffffff),
		}
		pb, err := asn1.Marshal(part)
		if err != nil {
			return nil, fmt.Errorf("marshal EncAPRepPart: %w", err)
		}
		pb = asn1tools.AddASNAppTag(pb, asnAppTag.EncAPRepPart)
		ed, err := crypto.GetEncryptedData(pb, sessionKey, keyusage.AP_REP_ENCPART, 0)
		if err != nil {
			return nil, fmt.Errorf("encrypt EncAPRepPart: %w", err)
		}
		rep := messages.APRep{PVNO: 5, MsgType: msgtype.KRB_AP_REP, EncPart: ed}
		rb, err := asn1.Marshal(rep)
		if err != nil {
			return nil, fmt.Errorf("marshal AP-REP: %w", err)
		}
		rb = asn1tools.AddASNAppTag(rb, asnAppTag.APREP)
		if gssTok, err = wrapGSS(oidKRB5, tokIDAPRep, rb); err != nil {
			return nil, err
		}
	}
	if !t.spnego {
		return gssTok, nil
	}
	mech := t.mech
	if !isKRB5(mech) {
		mech = oidKRB5
	}
	resp := spnego.NegTokenResp{
		NegState:      asn1.Enumerated(spnego.NegStateAcceptCompleted),
		SupportedMech: mech,
		ResponseToken: gssTok,
	}
	return resp.Marshal()
}
