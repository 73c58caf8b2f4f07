package authnode

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// The token record is written on every login and holds every group of the
// user: for a user in 1,000 groups, encoding/json's reflection spent a
// tenth of the login's CPU on it. marshalTokenRecord writes the same bytes
// as json.Marshal (tested against it), by hand.

// marshalTokenRecord returns json.Marshal(r).
func marshalTokenRecord(r tokenRecord) ([]byte, error) {
	if y := r.Identity.AuthTime.Year(); y < 0 || y > 9999 {
		return json.Marshal(r) // its error, for a time JSON cannot hold
	}
	id := &r.Identity
	size := 256 + len(r.Node) + len(id.SID) + len(id.SAMAccountName) + len(id.UserPrincipalName) +
		len(id.DisplayName) + len(id.Mail) + len(id.Realm) + len(id.AuthMethod) + len(id.ClientAddr)
	for _, s := range id.Groups {
		size += len(s) + 3
	}
	for _, s := range id.GroupSIDs {
		size += len(s) + 3
	}
	b := make([]byte, 0, size)
	b = append(b, `{"identity":`...)
	b = appendIdentityJSON(b, id)
	b = append(b, `,"node":`...)
	b = appendJSONString(b, r.Node)
	return append(b, '}'), nil
}

// appendIdentityJSON appends id as json.Marshal writes it; id.AuthTime's
// year must be within 0 to 9999.
func appendIdentityJSON(b []byte, id *Identity) []byte {
	b = append(b, `{"objectSid":`...)
	b = appendJSONString(b, id.SID)
	b = append(b, `,"sAMAccountName":`...)
	b = appendJSONString(b, id.SAMAccountName)
	b = append(b, `,"userPrincipalName":`...)
	b = appendJSONString(b, id.UserPrincipalName)
	b = append(b, `,"displayName":`...)
	b = appendJSONString(b, id.DisplayName)
	b = append(b, `,"mail":`...)
	b = appendJSONString(b, id.Mail)
	b = append(b, `,"groups":`...)
	b = appendJSONStrings(b, id.Groups)
	b = append(b, `,"groupSids":`...)
	b = appendJSONStrings(b, id.GroupSIDs)
	b = append(b, `,"realm":`...)
	b = appendJSONString(b, id.Realm)
	b = append(b, `,"authTime":"`...)
	b = id.AuthTime.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","authMethod":`...)
	b = appendJSONString(b, id.AuthMethod)
	b = append(b, `,"clientAddr":`...)
	b = appendJSONString(b, id.ClientAddr)
	return append(b, '}')
}

// appendJSONStrings appends ss as a JSON array, or null for a nil slice.
func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// jsonSafe marks the bytes that stand for themselves in a JSON string as
// encoding/json writes it: printable ASCII but for " \\ < > &. It is never
// written after its initialisation.
var jsonSafe = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\\<>&`, rune(c))
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json quotes strings: HTML
// characters, control characters, U+2028 and U+2029 escaped, invalid UTF-8
// as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonSafe[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
