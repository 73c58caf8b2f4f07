package oidc

import (
	"slices"
	"strings"
	"time"
)

// Sign-in methods a User may carry, as the auth node names them.
const (
	MethodKerberos = "kerberos"
	MethodPassword = "password"
	MethodNTLM     = "ntlm"
	MethodCookie   = "cookie"
)

// User is the signed-in user as the auth node confirmed it in Active
// Directory. The claims made from it are the table in doc.go.
type User struct {
	// SID is the account's objectSid: the sub claim, because unlike
	// every name it never changes and is never reused.
	SID            string
	SAMAccountName string
	UPN            string
	Email          string
	DisplayName    string
	// Groups are group names (sAMAccountName); GroupSIDs every group SID
	// of the user's ticket.
	Groups    []string
	GroupSIDs []string
	// AuthTime is when the user last authenticated with a credential (a
	// ticket, a password, an NTLM answer); a sign-in by the node's cookie
	// keeps the time of the sign-in that set it.
	AuthTime time.Time
	// Method is how the user authenticated at AuthTime: kerberos,
	// password, ntlm, or cookie when the node cannot say more.
	Method string
}

// amr maps a sign-in method to the amr claim (RFC 8176 values where one
// fits): a Kerberos ticket is "kerberos" (RFC 8176 has no value for it;
// the issue names it so), the form's password is "pwd", NTLM is "ntlm"
// (a challenge answered with the password's hash; not "pwd", so a relying
// party can tell the weaker protocol apart). A cookie sign-in without the
// original method has no amr: saying nothing is better than a guess.
func amr(method string) []string {
	switch method {
	case MethodKerberos:
		return []string{"kerberos"}
	case MethodPassword:
		return []string{"pwd"}
	case MethodNTLM:
		return []string{"ntlm"}
	}
	return nil
}

// hasGroup reports whether u is in group: a SID (S-1-…) compared exactly
// with GroupSIDs, or a name compared with Groups without regard to case
// (as Active Directory compares sAMAccountName).
func (u *User) hasGroup(group string) bool {
	if strings.HasPrefix(group, "S-1-") {
		return slices.Contains(u.GroupSIDs, group)
	}
	return slices.ContainsFunc(u.Groups, func(g string) bool { return strings.EqualFold(g, group) })
}

// userClaims are the claims about the user that a grant carries, chosen by
// its scopes when the code is issued; the ID token and /userinfo both
// answer them. Empty values are left out.
type userClaims struct {
	Sub               string   `json:"sub"`
	Name              string   `json:"name,omitempty"`
	PreferredUsername string   `json:"preferred_username,omitempty"`
	UPN               string   `json:"upn,omitempty"`
	Email             string   `json:"email,omitempty"`
	Groups            []string `json:"groups,omitempty"`
	GroupSIDs         []string `json:"group_sids,omitempty"`
}

// claimsFor maps u to the claims that scopes grant client.
func claimsFor(u *User, scopes []string, client *Client) userClaims {
	c := userClaims{Sub: u.SID}
	if slices.Contains(scopes, ScopeProfile) {
		c.Name, c.PreferredUsername, c.UPN = u.DisplayName, u.SAMAccountName, u.UPN
	}
	if slices.Contains(scopes, ScopeEmail) {
		c.Email = u.Email
	}
	if slices.Contains(scopes, ScopeGroups) {
		c.Groups = slices.Clone(u.Groups)
		if client.GroupSIDs {
			c.GroupSIDs = slices.Clone(u.GroupSIDs)
		}
	}
	return c
}

// claimsSupported is discovery's claims_supported.
var claimsSupported = []string{
	"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "at_hash",
	"name", "preferred_username", "upn", "email", "groups", "group_sids",
}
