package negotiate

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
)

// KeyInfo describes one keytab entry without its key, for logs and
// diagnostics.
type KeyInfo struct {
	Principal string // e.g. "HTTP/auth1.example.test"
	Realm     string // e.g. "EXAMPLE.TEST"
	KVNO      int
	Etype     int32
	EtypeName string    // e.g. "aes256-cts-hmac-sha1-96"
	Timestamp time.Time // when the key was written to the keytab
}

// String formats k as "HTTP/auth1.example.test@EXAMPLE.TEST kvno 2 aes256-cts-hmac-sha1-96(18)".
func (k KeyInfo) String() string {
	return fmt.Sprintf("%s@%s kvno %d %s", k.Principal, k.Realm, k.KVNO, etypeLabel(k.Etype))
}

// Summarize lists the entries of kt, sorted by principal, kvno (newest
// first) and etype. It never returns key material.
func Summarize(kt *keytab.Keytab) []KeyInfo {
	if kt == nil {
		return nil
	}
	out := make([]KeyInfo, 0, len(kt.Entries))
	for _, e := range kt.Entries {
		out = append(out, KeyInfo{
			Principal: strings.Join(e.Principal.Components, "/"),
			Realm:     e.Principal.Realm,
			KVNO:      int(e.KVNO),
			Etype:     e.Key.KeyType,
			EtypeName: EtypeName(e.Key.KeyType),
			Timestamp: e.Timestamp,
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Realm != b.Realm {
			return a.Realm < b.Realm
		}
		if a.Principal != b.Principal {
			return a.Principal < b.Principal
		}
		if a.KVNO != b.KVNO {
			return a.KVNO > b.KVNO
		}
		return a.Etype > b.Etype
	})
	return out
}

// LoadKeytab reads the keytab file at path. It refuses a keytab without
// entries, since a node could never accept a ticket with it, and one cut
// short (see ParseKeytab).
func LoadKeytab(path string) (*keytab.Keytab, error) {
	kt, _, err := ReadKeytab(path)
	return kt, err
}

// EtypeName returns the RFC 3961/MIT name of a Kerberos encryption type,
// or "etype-N" for one it does not know.
func EtypeName(etype int32) string {
	switch etype {
	case 1:
		return "des-cbc-crc"
	case 3:
		return "des-cbc-md5"
	case 16:
		return "des3-cbc-sha1"
	case 17:
		return "aes128-cts-hmac-sha1-96"
	case 18:
		return "aes256-cts-hmac-sha1-96"
	case 19:
		return "aes128-cts-hmac-sha256-128"
	case 20:
		return "aes256-cts-hmac-sha384-192"
	case 23:
		return "rc4-hmac"
	case 24:
		return "rc4-hmac-exp"
	default:
		return fmt.Sprintf("etype-%d", etype)
	}
}

func etypeLabel(etype int32) string {
	return fmt.Sprintf("%s(%d)", EtypeName(etype), etype)
}

func joinInfos(ks []KeyInfo) string {
	if len(ks) == 0 {
		return "nothing"
	}
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}
