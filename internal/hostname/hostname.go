// Package hostname checks and matches DNS host names, one way for the
// whole appliance: the names clients send (SNI, Host), the names the
// configuration gives (node FQDNs, routes, front-door names), and the
// wildcard patterns routes and rules use.
//
//	hostname.Valid("auth1.example.test")            // true
//	hostname.ValidSNI([]byte("my_host.corp"))       // true: clients send such names
//	hostname.Match("*.example.test", "a.example.test") // true: one more label
//
// Every check is linear in its input and allocates nothing. Callers
// lower-case and strip a trailing dot first where they accept those.
package hostname

import "net/netip"

// MaxLen is the longest host name, in bytes.
const MaxLen = 253

// maxLabel is the longest label.
const maxLabel = 63

// Valid reports whether s is a host name as RFC 1123 has it: labels of
// letters, digits and hyphens, a hyphen neither first nor last, 1 to 63
// bytes each, 253 in all, no empty label, no trailing dot.
func Valid(s string) bool { return valid(s, false) }

// ValidSNI reports whether s is a host name as clients send it in a
// ClientHello's server_name: as Valid, but '_' counts as a letter and a
// hyphen may stand anywhere, since some internal names have them.
func ValidSNI[T ~string | ~[]byte](s T) bool { return valid(s, true) }

func valid[T ~string | ~[]byte](s T, lenient bool) bool {
	if len(s) == 0 || len(s) > MaxLen {
		return false
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			case c == '-':
				if !lenient && (i == start || i == len(s)-1 || s[i+1] == '.') {
					return false
				}
			case c == '_' && lenient:
			default:
				return false
			}
			continue
		}
		if n := i - start; n == 0 || n > maxLabel {
			return false
		}
		start = i + 1
	}
	return true
}

// FQDN reports whether s is a Valid name of at least two labels: a name a
// Kerberos SPN (HTTP/<name>) is written with.
func FQDN(s string) bool {
	if !Valid(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}

// IPLike reports whether s is an IP address, or ends in an all-digit
// label as an IPv4 address does: no SPN can name such a host, so a
// browser would not get a Kerberos ticket for it.
func IPLike(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' { // no host name has one: an IPv6 address, or nothing
			_, err := netip.ParseAddr(s)
			return err == nil
		}
	}
	i := len(s)
	for i > 0 && s[i-1] != '.' {
		if c := s[i-1]; c < '0' || c > '9' {
			return false
		}
		i--
	}
	return true
}

// ValidPattern reports whether p is a name that valid accepts, or "*." and
// such a name: a wildcard.
func ValidPattern(p string, valid func(string) bool) bool {
	if len(p) > 2 && p[0] == '*' && p[1] == '.' {
		p = p[2:]
	}
	return valid(p)
}

// Match reports whether host matches pattern: an exact name, or "*." and a
// domain, which matches a name of exactly one more (non-empty) label, as
// certificates do. A wildcard pattern matches a wildcard host only when
// they are equal. Both are lower-case.
func Match(pattern, host string) bool {
	if len(pattern) < 2 || pattern[0] != '*' || pattern[1] != '.' || (len(host) > 1 && host[0] == '*' && host[1] == '.') {
		return pattern == host
	}
	suffix := pattern[1:] // ".domain"
	i := 0
	for i < len(host) && host[i] != '.' {
		i++
	}
	return i > 0 && host[i:] == suffix
}
