package directory

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// User is an Active Directory account as Lookup found it.
type User struct {
	DN                string
	SAMAccountName    string
	UserPrincipalName string
	DisplayName       string
	Mail              string
	// Groups holds the sAMAccountName of every group under BaseDN the user
	// is a member of, directly or through nested groups, sorted. The
	// primary group (usually Domain Users) is not listed: AD does not
	// record it in the member attribute.
	Groups []string
	// Disabled is true when the account is disabled or has expired.
	Disabled bool
}

// userAttributes are the attributes Lookup reads from the user entry.
var userAttributes = []string{
	"sAMAccountName", "userPrincipalName", "displayName", "mail",
	"userAccountControl", "accountExpires",
}

const (
	// matchingRuleInChain (LDAP_MATCHING_RULE_IN_CHAIN) makes AD follow
	// group nesting when it evaluates member and memberOf.
	matchingRuleInChain = "1.2.840.113556.1.4.1941"
	// uacAccountDisable is the ACCOUNTDISABLE bit of userAccountControl.
	uacAccountDisable = 0x2
)

// Lookup finds the account of a Kerberos-authenticated user and says whether
// it may log in. user is the Kerberos client name, "alice" or a UPN such as
// "alice@EXAMPLE.TEST"; realm is the client realm.
//
// Errors wrap ErrNotFound, ErrAmbiguous, ErrDisabled, ErrNotInGroup,
// ErrUnavailable or ErrBind. With ErrDisabled and ErrNotInGroup the returned
// User is non-nil (without Groups), so that callers can log which account
// was refused.
func (d *Directory) Lookup(ctx context.Context, user, realm string) (*User, error) {
	what := fmt.Sprintf("search for %q", user)
	filter, ok := userFilter(user, realm)
	if !ok {
		return nil, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrNotFound)
	}

	var u *User
	var refusal error
	var ambiguous bool
	err := d.do(ctx, func(c *ldap.Conn) error {
		// Every attempt starts afresh: do may retry on a new connection.
		u, refusal, ambiguous = nil, nil, false
		entries, err := d.findUser(c, filter)
		if err != nil || len(entries) == 0 {
			return err
		}
		if len(entries) > 1 {
			ambiguous = true
			return nil
		}
		entry := entries[0]
		u = &User{
			DN:                entry.DN,
			SAMAccountName:    entry.GetAttributeValue("sAMAccountName"),
			UserPrincipalName: entry.GetAttributeValue("userPrincipalName"),
			DisplayName:       entry.GetAttributeValue("displayName"),
			Mail:              entry.GetAttributeValue("mail"),
		}
		if refusal = accountRefusal(entry, d.now()); refusal != nil {
			u.Disabled = true
			return nil
		}
		if d.cfg.RequiredGroup != "" {
			in, err := d.inGroup(c, u.DN, d.cfg.RequiredGroup)
			if err != nil {
				return err
			}
			if !in {
				refusal = fmt.Errorf("%w %q", ErrNotInGroup, d.cfg.RequiredGroup)
				return nil
			}
		}
		u.Groups, err = d.groups(c, u.DN)
		return err
	})
	switch {
	case err != nil:
		return nil, d.wrap(ctx, what, err)
	case ambiguous:
		return nil, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrAmbiguous)
	case u == nil:
		return nil, fmt.Errorf("ldap %s at %s: %w", what, d.cfg.URL, ErrNotFound)
	case refusal != nil:
		return u, fmt.Errorf("ldap %s at %s: %s: %w", what, d.cfg.URL, u.DN, refusal)
	}
	return u, nil
}

// userFilter builds the search filter for a Kerberos client name. A bare
// name matches sAMAccountName or name@realm as UPN. A name with "@" is a UPN
// (an enterprise principal) and matches userPrincipalName as given; its part
// before "@" also matches sAMAccountName, but only when the suffix is the
// realm, so that alice@OTHER.TEST never finds this domain's alice. All
// values are escaped: "*" or "alice)(x" match nothing. ok is false for a
// name that can match nothing.
func userFilter(user, realm string) (filter string, ok bool) {
	if user == "" || strings.ContainsAny(user, "\x00") {
		return "", false
	}
	const person = "(objectCategory=person)(objectClass=user)"
	name, suffix, isUPN := cutLast(user, "@")
	var match string
	switch {
	case !isUPN && realm == "":
		match = "(sAMAccountName=" + ldap.EscapeFilter(user) + ")"
	case !isUPN:
		match = "(|(sAMAccountName=" + ldap.EscapeFilter(user) + ")(userPrincipalName=" +
			ldap.EscapeFilter(user+"@"+realm) + "))"
	case name == "" || suffix == "":
		return "", false
	case strings.EqualFold(suffix, realm):
		match = "(|(sAMAccountName=" + ldap.EscapeFilter(name) + ")(userPrincipalName=" +
			ldap.EscapeFilter(user) + "))"
	default:
		match = "(userPrincipalName=" + ldap.EscapeFilter(user) + ")"
	}
	return "(&" + person + match + ")", true
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
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
// nil. Kerberos normally refuses such accounts already; this also catches an
// account disabled after its ticket was issued.
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

// inGroup asks AD whether userDN is in groupDN, nesting included.
//
// It is a base-scope search on the user rather than a look in the Groups
// list because AD then compares the DNs itself: a RequiredGroup written with
// different case or spacing, or as <GUID=...>, still matches, and the answer
// does not depend on the group living under BaseDN.
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

// groups returns the sAMAccountName of every group under BaseDN that userDN
// is in, nesting included, sorted. One paged search: a user can be in more
// groups than AD returns in one page (MaxPageSize, 1000 by default).
func (d *Directory) groups(c *ldap.Conn, userDN string) ([]string, error) {
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 0, false, "(&(objectClass=group)(member:"+matchingRuleInChain+":="+ldap.EscapeFilter(userDN)+"))",
		[]string{"sAMAccountName"}, nil)
	res, err := c.SearchWithPaging(req, d.pageSize)
	if err != nil {
		return nil, fmt.Errorf("group search: %w", err)
	}
	names := make([]string, 0, len(res.Entries))
	for _, e := range res.Entries {
		if n := e.GetAttributeValue("sAMAccountName"); n != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
