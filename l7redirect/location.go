package l7redirect

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/iwalb/iwalb/internal/hostname"
)

// cleanPath returns the escaped request path p with dot segments removed
// (plain or percent-encoded, as browsers remove them) and exactly one
// leading slash: leading empty segments and leading "\", "%2F" and "%5C"
// are dropped, so the path can never read as "//host" or "/\host", whatever
// a browser or a later relative resolution makes of it. Slashes inside the
// path are kept as sent.
//
// It runs in one pass, linear in len(p) (RFC 3986 §5.2.4 with an output
// stack): first the dot segments go, then the front is trimmed. Trimming can
// turn the first segment into a dot segment ("/%2F.." → ".."); at the root
// that segment removes nothing before it, so it is dropped and the next
// segment becomes the front, until the front is clean.
func cleanPath(p string) string {
	if alreadyClean(p) {
		return p
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		switch {
		case isDot(s):
		case isDotDot(s):
			// The segment before, possibly the empty one before the
			// leading "/": ".." at the root stays at the root.
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if i == len(segs)-1 {
			// "/a/b/.." is the directory "/a/", not "/a".
			out = append(out, "")
		}
	}
	// out is never empty: the last segment always leaves one behind.
	for {
		s := trimSlashLike(out[0])
		switch {
		case len(out) == 1 && (isDot(s) || isDotDot(s)):
			return "/"
		case len(out) > 1 && (s == "" || isDot(s) || isDotDot(s)):
			out = out[1:]
		default:
			out[0] = s
			return "/" + strings.Join(out, "/")
		}
	}
}

// alreadyClean reports whether cleanPath(p) is p, for the paths browsers
// send: a leading "/" then no dot, no escape, no backslash and no empty
// segment. Any other path takes the full pass.
func alreadyClean(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '.', '%', '\\':
			return false
		case '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return false
			}
		}
	}
	return true
}

func isDot(s string) bool { return s == "." || strings.EqualFold(s, "%2e") }

func isDotDot(s string) bool {
	switch len(s) {
	case 2:
		return s == ".."
	case 4:
		return strings.EqualFold(s, ".%2e") || strings.EqualFold(s, "%2e.")
	case 6:
		return strings.EqualFold(s, "%2e%2e")
	}
	return false
}

// trimSlashLike strips leading characters that some client would read as a
// path separator.
func trimSlashLike(s string) string {
	for {
		switch {
		case strings.HasPrefix(s, `\`):
			s = s[1:]
		case len(s) >= 3 && (strings.EqualFold(s[:3], "%2f") || strings.EqualFold(s[:3], "%5c")):
			s = s[3:]
		default:
			return s
		}
	}
}

// cleanQuery returns the raw query q with every byte that RFC 3986 does not
// allow in a query percent-encoded (a lone "%" included), so the Location
// header carries nothing but URI characters.
func cleanQuery(q string) string {
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '%' && i+2 < len(q) && isHex(q[i+1]) && isHex(q[i+2]):
			b.WriteString(q[i : i+3])
			i += 2
		case queryChar(c):
			b.WriteByte(c)
		default:
			const hexDigits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// queryChar reports whether c may appear unescaped in a URI query:
// unreserved, sub-delims, ":", "@", "/" and "?".
func queryChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@/?", c) >= 0
}

// targetURL builds the redirect target on host (a configured node FQDN) and
// port (0 or 443: omitted). escapedPath must already be cleaned.
func targetURL(host string, port int, escapedPath, rawQuery string) string {
	return targetOn(authority(host, port), escapedPath, rawQuery)
}

// authority is the host[:port] of a redirect target to host and port.
func authority(host string, port int) string {
	if port != 0 && port != 443 {
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	return host
}

// targetOn is targetURL with the authority already made.
func targetOn(authority, escapedPath, rawQuery string) string {
	u := url.URL{Scheme: "https", Host: authority, RawQuery: cleanQuery(rawQuery)}
	p, err := url.PathUnescape(escapedPath)
	if err != nil {
		// EscapedPath never yields a bad escape; refuse rather than guess.
		escapedPath, p = "/", "/"
	}
	u.Path, u.RawPath = p, escapedPath
	return u.String()
}

// isDNSName reports whether s is a host name a node or a front door can
// have: a valid name whose last label is not all digits (that is an IPv4
// address, and Kerberos needs a name an SPN can match).
func isDNSName(s string) bool { return hostname.Valid(s) && !hostname.IPLike(s) }

// requestHost returns the host of a Host header without port, lower-cased
// and without a trailing dot; "" if it is not a valid DNS name.
func requestHost(hostport string) string {
	h := hostport
	if strings.IndexByte(hostport, ':') >= 0 {
		if host, _, err := net.SplitHostPort(hostport); err == nil {
			h = host
		}
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if !isDNSName(h) {
		return ""
	}
	return h
}

// validHostPattern reports whether p is "", an exact DNS name or "*." and a
// DNS name.
func validHostPattern(p string) bool {
	return p == "" || hostname.ValidPattern(p, isDNSName)
}
