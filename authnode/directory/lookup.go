package directory

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/iwalb/iwalb/authnode/internal/clip"
	"github.com/iwalb/iwalb/authnode/internal/sid"
)

// User is an Active Directory account as Lookup found it.
type User struct {
	DN                string
	SID               string // objectSid, e.g. S-1-5-21-…-1103
	SAMAccountName    string
	UserPrincipalName string
	DisplayName       string
	Mail              string
	// Groups holds the sAMAccountName of each of GroupSIDs that is a group
	// under BaseDN, sorted. It comes from the ticket: the groups the KDC
	// found the user in, nesting resolved, when it issued the ticket; the
	// primary group (usually Domain Users) is among them.
	Groups []string
	// GroupSIDs holds every group SID of the ticket (Principal.GroupSIDs),
	// once each, sorted: also those that name no group under BaseDN, such
	// as well-known SIDs (S-1-18-1) and other domains' groups.
	GroupSIDs []string
	// Disabled is true when the account is disabled, expired or locked out.
	Disabled bool
}

// Principal is who the KDC authenticated: the ticket's client name and
// realm, and the user and group SIDs from the ticket's PAC.
type Principal struct {
	// Name is the Kerberos client name: "alice", or an enterprise
	// principal (a UPN) such as "alice@example.test".
	Name string
	// Realm is the client realm, e.g. "EXAMPLE.TEST".
	Realm string
	// SID is the user's SID from the PAC's logon info, e.g.
	// "S-1-5-21-1004336348-1177238915-682003330-1103".
	SID string
	// GroupSIDs are the group SIDs of the PAC (negotiate.Identity's), in
	// the string form of package authnode/internal/sid.
	GroupSIDs []string
	// entry is the account's entry as NamedPrincipal or PrincipalBySID
	// read it (with userAttributes), so that Lookup need not search for
	// it again; nil for a ticket's principal.
	entry *ldap.Entry
}

// userAttributes are the attributes Lookup reads from the user entry.
// msDS-User-Account-Control-Computed is constructed by the server; it says
// whether the account is locked out now (lockoutTime alone does not: the
// lockout may have lapsed).
var userAttributes = []string{
	"objectSid", "sAMAccountName", "userPrincipalName", "displayName", "mail",
	"userAccountControl", "accountExpires", "msDS-User-Account-Control-Computed",
}

const (
	// matchingRuleInChain (LDAP_MATCHING_RULE_IN_CHAIN) makes AD follow
	// group nesting when it evaluates member and memberOf.
	matchingRuleInChain = "1.2.840.113556.1.4.1941"
	// uacAccountDisable is the ACCOUNTDISABLE bit of userAccountControl.
	uacAccountDisable = 0x2
	// uacLockout is the LOCKOUT bit of msDS-User-Account-Control-Computed.
	uacLockout = 0x10
)

// Lookup finds the account the KDC authenticated, says whether it may log
// in and names its groups. ops is how many LDAP requests it sent (searches,
// each page counted, and the StartTLS and bind of a connection it opened),
// also when it failed: one, once the SID cache knows the ticket's groups and
// the pool holds a connection, with RequiredGroupCheck GroupCheckTicket.
//
// The account is found by p.SID (objectSid is indexed, and the SID came
// signed by the KDC), not by name: a name can match another object than the
// one the KDC meant (a UPN equal to someone's sAMAccountName@realm, an
// account renamed since). The account's sAMAccountName or userPrincipalName
// must then agree with p.Name, as the KDC would have matched it; otherwise
// the login is refused with ErrIdentityMismatch. The same search reads
// whether the account is enabled, unexpired and not locked out.
//
// With GroupCheckTicket the required group's SID must be among
// p.GroupSIDs; with GroupCheckDirectory a second search asks the directory.
// The names of p.GroupSIDs come from the SID cache; the SIDs of the user's
// domain that it lacks are asked for in one search per sidBatch.
//
// Errors wrap ErrNotFound, ErrAmbiguous, ErrIdentityMismatch, ErrDisabled,
// ErrLockedOut, ErrNotInGroup, ErrUnavailable, ErrTimeout, ErrBusy or
// ErrBind. With ErrIdentityMismatch, ErrDisabled, ErrLockedOut and
// ErrNotInGroup the returned User is non-nil (without Groups), so that
// callers can log which account was refused.
func (d *Directory) Lookup(ctx context.Context, p Principal) (_ *User, ops int, _ error) {
	// Names come from the ticket: quote at most clip.Max bytes of them.
	what := fmt.Sprintf("search for %s (%s)", clip.String(p.SID), clip.String(p.Name+"@"+p.Realm))
	sid, err := parseSID(p.SID)
	if err != nil {
		return nil, 0, fmt.Errorf("ldap %s at %s: %w: %w", what, d.cfg.URL, ErrNotFound, err)
	}
	// The user's domain is the user SID without its RID.
	domain := p.SID[:strings.LastIndexByte(p.SID, '-')]
	groupSIDs := uniqueSortedSIDs(p.GroupSIDs, domain)
	var required string // SID of the required group, with GroupCheckTicket
	if d.cfg.RequiredGroup != "" && d.cfg.RequiredGroupCheck == GroupCheckTicket {
		if g := d.required.Load(); g != nil {
			required = g.sid
		} else if required, err = d.resolveRequiredGroup(ctx, d.slots, &ops); err != nil {
			if errors.Is(err, errNoSuchGroup) {
				err = fmt.Errorf("%w: %w", ErrNotInGroup, err)
			}
			return nil, ops, fmt.Errorf("%s: %w", what, err)
		}
	}
	filter := "(&(objectCategory=person)(objectClass=user)(objectSid=" + escapeBytes(sid) + "))"

	var u *User
	var refusal error
	var ambiguous bool
	// check reads the one entry found, and says whether the account may
	// go on to the required group's check.
	check := func(entry *ldap.Entry) bool {
		u = &User{
			DN:                entry.DN,
			SID:               p.SID,
			SAMAccountName:    entry.GetAttributeValue("sAMAccountName"),
			UserPrincipalName: entry.GetAttributeValue("userPrincipalName"),
			DisplayName:       entry.GetAttributeValue("displayName"),
			Mail:              entry.GetAttributeValue("mail"),
		}
		if got := entry.GetRawAttributeValue("objectSid"); !bytes.Equal(got, sid) {
			// The server matched the filter on something else: trust
			// nothing it said.
			u, refusal = nil, fmt.Errorf("%w: the entry found has objectSid %x, not %x", ErrIdentityMismatch, got, sid)
			return false
		}
		if !nameMatches(p.Name, p.Realm, u.SAMAccountName, u.UserPrincipalName) {
			refusal = fmt.Errorf("%w: the account with this SID is %s (%s), not %s", ErrIdentityMismatch,
				u.SAMAccountName, u.UserPrincipalName, clip.String(p.Name))
			return false
		}
		if refusal = accountRefusal(entry, d.now()); refusal != nil {
			u.Disabled = true
			return false
		}
		return true
	}
	askGroup := d.cfg.RequiredGroup != "" && d.cfg.RequiredGroupCheck == GroupCheckDirectory
	inGroup := func(c *ldap.Conn) error {
		ops++
		in, err := d.inGroup(c, u.DN, d.cfg.RequiredGroup)
		if err == nil && !in {
			refusal = fmt.Errorf("%w %q (asked of the directory)", ErrNotInGroup, d.cfg.RequiredGroup)
		}
		return err
	}
	if p.entry != nil {
		// Read a moment ago, in this login, by NamedPrincipal or
		// PrincipalBySID: not searched for again.
		if check(p.entry) && askGroup {
			err = d.do(ctx, d.slots, &ops, inGroup)
		}
	} else {
		err = d.do(ctx, d.slots, &ops, func(c *ldap.Conn) error {
			// Every attempt starts afresh: do may retry on a new connection.
			u, refusal, ambiguous = nil, nil, false
			ops++
			entries, err := d.findUser(c, filter)
			if err != nil || len(entries) == 0 {
				return err
			}
			if len(entries) > 1 {
				ambiguous = true
				return nil
			}
			if check(entries[0]) && askGroup {
				return inGroup(c)
			}
			return nil
		})
	}
	switch {
	case err != nil:
		return nil, ops, d.wrap(ctx, what, err)
	case ambiguous:
		return nil, ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrAmbiguous)
	case u == nil && refusal != nil:
		return nil, ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, refusal)
	case u == nil:
		return nil, ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrNotFound)
	case refusal == nil && required != "":
		if _, in := slices.BinarySearch(groupSIDs, required); !in {
			refusal = fmt.Errorf("%w %q: its SID %s is not among the ticket's %d group SIDs (a membership granted since the ticket was issued counts from the user's next logon)",
				ErrNotInGroup, d.cfg.RequiredGroup, required, len(groupSIDs))
		}
	}
	if refusal != nil {
		return u, ops, fmt.Errorf("ldap %s at %s: %s: %w", what, d.cfg.URL, u.DN, refusal)
	}
	u.GroupSIDs = groupSIDs
	if u.Groups, err = d.groupNames(ctx, groupSIDs, domain, &ops); err != nil {
		return nil, ops, fmt.Errorf("%s: %w", what, err)
	}
	return u, ops, nil
}

// uniqueSorted returns the distinct values of s, sorted, in a new slice.
func uniqueSorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// uniqueSortedSIDs is uniqueSorted for SIDs most of which are RIDs of
// domain. A plain sort compares the long shared prefix again at every
// step; here each RID's digits become a number that orders as the digits
// do as text, the numbers are sorted, and the few other SIDs (well-known,
// other domains) are sorted as text and merged in. The order is
// uniqueSorted's.
func uniqueSortedSIDs(sids []string, domain string) []string {
	const indexBits = 29 // a key's low bits: the SID's index in sids
	if len(sids) >= 1<<indexBits {
		return uniqueSorted(sids)
	}
	keys := make([]uint64, 0, len(sids))
	var others []string
	for i, s := range sids {
		if k, ok := ridKey(s, domain); ok {
			keys = append(keys, k<<indexBits|uint64(i))
		} else {
			others = append(others, s)
		}
	}
	slices.Sort(keys)
	slices.Sort(others)
	merged := make([]string, 0, len(sids))
	for len(keys) > 0 || len(others) > 0 {
		var next string
		if len(keys) > 0 {
			next = sids[keys[0]&(1<<indexBits-1)]
		}
		if len(keys) == 0 || (len(others) > 0 && others[0] < next) {
			next, others = others[0], others[1:]
		} else {
			keys = keys[1:]
		}
		if len(merged) == 0 || merged[len(merged)-1] != next {
			merged = append(merged, next)
		}
	}
	return merged
}

// ridKey returns, for "domain-RID" with 1 to 10 decimal digits, a number
// below 11^10 (under 2^35) that orders as the RIDs' digits do as text:
// each digit is d+1 in base 11, padded on the right with 0, which sorts
// before any digit, as a shorter text before its extensions.
func ridKey(s, domain string) (uint64, bool) {
	n := len(domain) + 1
	if len(s) <= n || len(s) > n+10 || s[n-1] != '-' || s[:n-1] != domain {
		return 0, false
	}
	var k uint64
	for i := n; i < n+10; i++ {
		k *= 11
		if i < len(s) {
			c := s[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			k += uint64(c-'0') + 1
		}
	}
	return k, true
}

// requiredGroup is what the directory said about Config.RequiredGroup.
type requiredGroup struct {
	sid string
}

// errNoSuchGroup: Config.RequiredGroup names no group.
var errNoSuchGroup = errors.New("the required group does not exist")

// resolveRequiredGroup reads the objectSid of Config.RequiredGroup with a
// base-scope search on its DN, so that the directory compares the DN: a DN
// written with other case or spacing, or as <GUID=…>, still resolves. The
// answer is kept for logins. When the directory says the group is gone, the
// kept SID is dropped (nobody is then a member); when it cannot be asked,
// the kept SID stays.
func (d *Directory) resolveRequiredGroup(ctx context.Context, slots chan struct{}, ops *int) (string, error) {
	const what = "search for the required group"
	var raw []byte
	err := d.do(ctx, slots, ops, func(c *ldap.Conn) error {
		raw = nil
		*ops++
		res, err := c.Search(ldap.NewSearchRequest(d.cfg.RequiredGroup, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(objectClass=group)", []string{"objectSid"}, nil))
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(res.Entries) == 1 {
			raw = res.Entries[0].GetRawAttributeValue("objectSid")
		}
		return nil
	})
	if err != nil {
		return "", d.wrap(ctx, what, err)
	}
	if raw == nil {
		d.required.Store(nil)
		return "", fmt.Errorf("ldap %s %q at %s: %w (or is not a group)", what, d.cfg.RequiredGroup, d.cfg.URL, errNoSuchGroup)
	}
	s, err := sid.FromBinary(raw)
	if err != nil {
		return "", fmt.Errorf("ldap %s %q at %s: objectSid %x: %w", what, d.cfg.RequiredGroup, d.cfg.URL, raw, err)
	}
	d.required.Store(&requiredGroup{sid: s})
	return s, nil
}

// nameMatches reports whether the Kerberos client name user (of realm)
// names the account with sAMAccountName sam and userPrincipalName upn, by
// the rules the KDC looks clients up with, case-insensitively as AD
// compares: a bare name is the sAMAccountName, or name@realm as UPN. A name
// with "@" (an enterprise principal) is a UPN as given; its part before "@"
// is also the sAMAccountName, but only when the suffix is the realm, so that
// alice@OTHER.TEST is never this domain's alice.
func nameMatches(user, realm, sam, upn string) bool {
	if user == "" {
		return false
	}
	name, suffix, isUPN := cutLast(user, "@")
	switch {
	case !isUPN:
		return sam != "" && strings.EqualFold(user, sam) ||
			realm != "" && upn != "" && strings.EqualFold(user+"@"+realm, upn)
	case name == "" || suffix == "":
		return false
	case strings.EqualFold(suffix, realm):
		return sam != "" && strings.EqualFold(name, sam) || upn != "" && strings.EqualFold(user, upn)
	default:
		return upn != "" && strings.EqualFold(user, upn)
	}
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// parseSID turns the string form of a SID (S-1-5-21-…, as the PAC's is
// written) into the binary form AD stores in objectSid: revision, count of
// sub-authorities, the 48-bit identifier authority big-endian, then each
// 32-bit sub-authority little-endian ([MS-DTYP] 2.4.2.2).
func parseSID(s string) ([]byte, error) {
	bad := func(why string) ([]byte, error) {
		return nil, fmt.Errorf("malformed SID %q: %s", clip.String(s), why)
	}
	// S-1-<authority>-<up to 15 sub-authorities of up to 10 digits>.
	if len(s) > 4+20+15*11 {
		return bad("too long")
	}
	parts := strings.Split(s, "-")
	if len(parts) < 4 || (parts[0] != "S" && parts[0] != "s") || parts[1] != "1" {
		return bad(`want S-1-<authority>-<sub-authority>…`)
	}
	subs := parts[3:]
	if len(subs) > 15 {
		return bad("more than 15 sub-authorities")
	}
	var auth uint64
	var err error
	if hex, ok := strings.CutPrefix(parts[2], "0x"); ok {
		auth, err = strconv.ParseUint(hex, 16, 48)
	} else {
		auth, err = strconv.ParseUint(parts[2], 10, 48)
	}
	if err != nil {
		return bad("identifier authority is not a 48-bit number")
	}
	b := make([]byte, 8, 8+4*len(subs))
	b[0], b[1] = 1, byte(len(subs))
	for i := range 6 {
		b[2+i] = byte(auth >> (8 * (5 - i)))
	}
	for _, p := range subs {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return bad("sub-authority is not a 32-bit number")
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b, nil
}

// escapeBytes writes b as an LDAP filter value that matches exactly those
// bytes: every byte escaped as \hh (RFC 4515), which is how a binary
// attribute such as objectSid is searched.
func escapeBytes(b []byte) string {
	const hexDigits = "0123456789abcdef"
	out := make([]byte, 0, 3*len(b))
	for _, c := range b {
		out = append(out, '\\', hexDigits[c>>4], hexDigits[c&0xf])
	}
	return string(out)
}

// findUser returns the entries that match filter, at most two: enough to
// tell one from many. AD's referrals to other partitions are not entries and
// are ignored.
func (d *Directory) findUser(c *ldap.Conn, filter string) ([]*ldap.Entry, error) {
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, filter, userAttributes, nil)
	res, err := c.Search(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil && len(res.Entries) > 1 {
		return res.Entries, nil
	}
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// accountRefusal returns why the account in entry may not log in at now, or
// nil: disabled, locked out or expired. Kerberos refuses such accounts new
// tickets already; this also catches an account disabled or locked out after
// its ticket was issued.
func accountRefusal(entry *ldap.Entry, now time.Time) error {
	if raw := entry.GetAttributeValue("userAccountControl"); raw != "" {
		uac, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: unreadable userAccountControl %q", ErrDisabled, raw)
		}
		if uac&uacAccountDisable != 0 {
			return fmt.Errorf("%w (userAccountControl 0x%x)", ErrDisabled, uac)
		}
	}
	if raw := entry.GetAttributeValue("msDS-User-Account-Control-Computed"); raw != "" {
		uac, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: unreadable msDS-User-Account-Control-Computed %q", ErrLockedOut, raw)
		}
		if uac&uacLockout != 0 {
			return fmt.Errorf("%w (msDS-User-Account-Control-Computed 0x%x)", ErrLockedOut, uac)
		}
	}
	expires, err := accountExpiry(entry.GetAttributeValue("accountExpires"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDisabled, err)
	}
	if !expires.IsZero() && !now.Before(expires) {
		return fmt.Errorf("%w: expired %s", ErrDisabled, expires.UTC().Format(time.RFC3339))
	}
	return nil
}

// accountExpiry decodes accountExpires, a count of 100 ns intervals since
// 1601-01-01 UTC. 0 and the largest int64 (and an absent value) mean never,
// returned as the zero Time.
func accountExpiry(raw string) (time.Time, error) {
	if raw == "" {
		return time.Time{}, nil
	}
	v, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("unreadable accountExpires %q", raw)
	}
	if v <= 0 || v == math.MaxInt64 {
		return time.Time{}, nil
	}
	// Seconds between 1601-01-01 and 1970-01-01.
	const epochDelta = 11644473600
	return time.Unix(v/1e7-epochDelta, (v%1e7)*100).UTC(), nil
}

// inGroup asks AD whether userDN is in groupDN now, nesting included (for
// GroupCheckDirectory).
//
// It is a base-scope search on the user, so AD compares the DNs itself: a
// RequiredGroup written with different case or spacing, or as <GUID=...>,
// still matches, and the answer does not depend on the group living under
// BaseDN.
func (d *Directory) inGroup(c *ldap.Conn, userDN, groupDN string) (bool, error) {
	req := ldap.NewSearchRequest(userDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(memberOf:"+matchingRuleInChain+":="+ldap.EscapeFilter(groupDN)+")",
		[]string{"1.1"}, nil) // 1.1: no attributes, only whether it matches
	res, err := c.Search(req)
	if err != nil {
		return false, fmt.Errorf("required group check: %w", err)
	}
	return len(res.Entries) == 1, nil
}

// AccountName returns the sAMAccountName of the user whose
// userPrincipalName is upn (compared as AD does, without regard to case),
// for a sign-in by a UPN whose suffix is not the realm: Kerberos logs in by
// account name. ErrNotFound when no user has it, ErrAmbiguous when several
// do.
func (d *Directory) AccountName(ctx context.Context, upn string) (string, int, error) {
	what := "search for userPrincipalName " + clip.String(upn)
	filter := "(&(objectCategory=person)(objectClass=user)(userPrincipalName=" + ldap.EscapeFilter(upn) + "))"
	var entries []*ldap.Entry
	var ops int
	err := d.do(ctx, d.slots, &ops, func(c *ldap.Conn) error {
		var err error
		entries, err = d.findUser(c, filter)
		return err
	})
	switch {
	case err != nil:
		return "", ops, d.wrap(ctx, what, err)
	case len(entries) == 0:
		return "", ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrNotFound)
	case len(entries) > 1:
		return "", ops, fmt.Errorf("ldap %s at %s: %w: %d users", what, d.cfg.URL, ErrAmbiguous, len(entries))
	}
	return entries[0].GetAttributeValue("sAMAccountName"), ops, nil
}

// SPNOwners returns the sAMAccountName of every account that has spn among
// its servicePrincipalName values (matched without regard to case, as AD
// does): one for a working SPN, none for one that is not registered, more
// for a duplicate (KRB_DUPLICATE_SPN: the KDC then issues no ticket).
func (d *Directory) SPNOwners(ctx context.Context, spn string) ([]string, error) {
	what := "search for servicePrincipalName " + clip.String(spn)
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		16, 0, false, "(servicePrincipalName="+ldap.EscapeFilter(spn)+")", []string{"sAMAccountName"}, nil)
	var res *ldap.SearchResult
	var ops int
	err := d.do(ctx, d.slots, &ops, func(c *ldap.Conn) error {
		var err error
		res, err = c.Search(req)
		if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil {
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, d.wrap(ctx, what, err)
	}
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.GetAttributeValue("sAMAccountName"))
	}
	return out, nil
}

// ServiceAccount is what the directory says of a service account's keys.
type ServiceAccount struct {
	// KVNO is its key version (msDS-KeyVersionNumber).
	KVNO int
	// Enctypes are the encryption types it allows
	// (msDS-SupportedEncryptionTypes; 0 when unset: the domain's default).
	Enctypes int
	// PasswordMaxAge is how long its password lasts: the domain's
	// maxPwdAge, 0 when it never expires (the domain's policy, or
	// DONT_EXPIRE_PASSWORD on the account).
	PasswordMaxAge time.Duration
}

// uacDontExpirePassword is the DONT_EXPIRE_PASSWORD bit of
// userAccountControl.
const uacDontExpirePassword = 0x10000

// AccountKeys returns what the directory says of the service account
// account's keys and password.
func (d *Directory) AccountKeys(ctx context.Context, account string) (ServiceAccount, error) {
	what := "search for the keys of " + clip.String(account)
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, 0, false, "(&(objectClass=user)(sAMAccountName="+ldap.EscapeFilter(account)+"))",
		[]string{"msDS-KeyVersionNumber", "msDS-SupportedEncryptionTypes", "userAccountControl"}, nil)
	domainReq := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{"maxPwdAge"}, nil)
	var res, domain *ldap.SearchResult
	var ops int
	err := d.do(ctx, d.slots, &ops, func(c *ldap.Conn) error {
		var err error
		if res, err = c.Search(req); err != nil {
			return err
		}
		domain, err = c.Search(domainReq)
		return err
	})
	switch {
	case err != nil:
		return ServiceAccount{}, d.wrap(ctx, what, err)
	case len(res.Entries) != 1:
		return ServiceAccount{}, fmt.Errorf("ldap %s at %s: %w: %d accounts", what, d.cfg.URL, ErrNotFound, len(res.Entries))
	}
	e := res.Entries[0]
	var a ServiceAccount
	a.KVNO, _ = strconv.Atoi(e.GetAttributeValue("msDS-KeyVersionNumber"))
	a.Enctypes, _ = strconv.Atoi(e.GetAttributeValue("msDS-SupportedEncryptionTypes"))
	uac, _ := strconv.ParseInt(e.GetAttributeValue("userAccountControl"), 10, 64)
	if uac&uacDontExpirePassword == 0 && len(domain.Entries) == 1 {
		// maxPwdAge is negative, in 100 ns units; 0 and the smallest
		// int64 mean never.
		if age, err := strconv.ParseInt(domain.Entries[0].GetAttributeValue("maxPwdAge"), 10, 64); err == nil && age < 0 && age != -1<<63 {
			a.PasswordMaxAge = time.Duration(-age) * 100
		}
	}
	return a, nil
}

// NamedPrincipal returns the account whose sAMAccountName is account as a
// Principal for Lookup, for a login that carries no PAC (NTLM, which the
// domain controller checked by name): its objectSid, and from the
// constructed tokenGroups attribute the SIDs of every group it is in,
// nesting and the primary group included, as a ticket's PAC lists them.
// tokenGroups also holds the BUILTIN groups (S-1-5-32-…) that Windows adds
// on the server; a PAC does not, so they are left out. Two searches: the
// account by name, then its entry for tokenGroups (AD computes that
// attribute only for a base-scope search).
func (d *Directory) NamedPrincipal(ctx context.Context, account, realm string) (_ Principal, ops int, _ error) {
	what := "search for sAMAccountName " + clip.String(account)
	if account == "" || strings.ContainsAny(account, "\x00") {
		return Principal{}, 0, fmt.Errorf("ldap %s at %s: %w: not an account name", what, d.cfg.URL, ErrNotFound)
	}
	return d.principal(ctx, what, "(&(objectCategory=person)(objectClass=user)(sAMAccountName="+ldap.EscapeFilter(account)+"))", realm)
}

// PrincipalBySID is NamedPrincipal for the account whose objectSid is
// userSID: for a sign-in confirmed again long after its ticket (an OpenID
// Connect refresh), with the account's name and groups as they are now.
func (d *Directory) PrincipalBySID(ctx context.Context, userSID, realm string) (_ Principal, ops int, _ error) {
	what := "search for objectSid " + clip.String(userSID)
	b, err := parseSID(userSID)
	if err != nil {
		return Principal{}, 0, fmt.Errorf("ldap %s at %s: %w: %w", what, d.cfg.URL, ErrNotFound, err)
	}
	p, ops, err := d.principal(ctx, what, "(&(objectCategory=person)(objectClass=user)(objectSid="+escapeBytes(b)+"))", realm)
	// Compared as SIDs, not as strings: parseSID takes other spellings of
	// the same SID than the one principal returns.
	if want, _ := sid.FromBinary(b); err == nil && p.SID != want {
		return Principal{}, ops, fmt.Errorf("ldap %s at %s: %w: the entry found has objectSid %s", what, d.cfg.URL, ErrIdentityMismatch, p.SID)
	}
	return p, ops, err
}

// principal finds the one account filter matches and reads its SID and
// group SIDs (see NamedPrincipal).
func (d *Directory) principal(ctx context.Context, what, filter, realm string) (_ Principal, ops int, _ error) {
	var p Principal
	var found int
	err := d.do(ctx, d.slots, &ops, func(c *ldap.Conn) error {
		p, found = Principal{}, 0
		ops++
		entries, err := d.findUser(c, filter)
		if err != nil || len(entries) != 1 {
			found = len(entries)
			return err
		}
		found = 1
		if p.SID, err = sid.FromBinary(entries[0].GetRawAttributeValue("objectSid")); err != nil {
			return fmt.Errorf("objectSid of %s: %w", entries[0].DN, err)
		}
		p.Name, p.Realm, p.entry = entries[0].GetAttributeValue("sAMAccountName"), realm, entries[0]
		ops++
		res, err := c.Search(ldap.NewSearchRequest(entries[0].DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			1, 0, false, "(objectClass=*)", []string{"tokenGroups"}, nil))
		if err != nil {
			return err
		}
		if len(res.Entries) != 1 {
			return fmt.Errorf("tokenGroups of %s: %d entries", entries[0].DN, len(res.Entries))
		}
		for _, raw := range res.Entries[0].GetRawAttributeValues("tokenGroups") {
			s, err := sid.FromBinary(raw)
			if err != nil {
				return fmt.Errorf("tokenGroups of %s: %w", entries[0].DN, err)
			}
			if !strings.HasPrefix(s, "S-1-5-32-") {
				p.GroupSIDs = append(p.GroupSIDs, s)
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return Principal{}, ops, d.wrap(ctx, what, err)
	case found == 0:
		return Principal{}, ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrNotFound)
	case found > 1:
		return Principal{}, ops, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrAmbiguous)
	}
	return p, ops, nil
}
