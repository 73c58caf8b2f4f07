package negotiate

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"
)

// MaxRetiredKeys bounds the keys a KeyRing keeps after a rotation. A
// rotation retires one account's keys (a few enctypes per SPN); this many
// leaves room for many rotations within a ticket lifetime and still bounds
// what a keytab rewritten over and over would pile up. Beyond it the
// longest retired go first.
const MaxRetiredKeys = 4096

// KeyRing is the set of keys a node accepts tickets with across keytab
// rotations: the keys of the keytab loaded last (current) and, for a while,
// the keys that earlier keytabs held and the last one does not (retired).
// After the service account's password changes, clients keep using the
// service tickets they hold, encrypted with the previous key, until those
// expire (10 h by default in Active Directory); a retired key keeps them
// valid until then.
//
// A KeyRing is not safe for concurrent use: its owner serialises changes
// and hands validators the merged keytab (Keytab), which it never changes.
type KeyRing struct {
	current *keytab.Keytab
	retired []retiredKey // oldest first
}

// retiredKey is one entry no longer in the current keytab. The entry is
// kept inside a keytab because gokrb5 does not export its type.
type retiredKey struct {
	entry *keytab.Keytab // one entry
	id    string         // entryID of it
	since time.Time      // when it left the current keytab
}

// RetiredKey describes a retired key, for logs.
type RetiredKey struct {
	KeyInfo
	Since time.Time // when it left the current keytab
}

// NewKeyRing returns a ring whose current keys are kt's, none retired.
func NewKeyRing(kt *keytab.Keytab) *KeyRing {
	if kt == nil {
		kt = keytab.New()
	}
	return &KeyRing{current: kt}
}

// entryID identifies a keytab entry by principal, key version, enctype and
// the key's fingerprint: the same entry in two exports of one keytab has
// the same id, whatever its timestamp or position.
func entryID(components []string, realm string, kvno uint32, etype int32, fp [sha256.Size]byte) string {
	return fmt.Sprintf("%s\x00%d\x00%d\x00%s", entryPrincipal(components, realm), kvno, etype, hex.EncodeToString(fp[:]))
}

func keytabIDs(kt *keytab.Keytab) map[string]bool {
	ids := make(map[string]bool, len(kt.Entries))
	for _, e := range kt.Entries {
		ids[entryID(e.Principal.Components, e.Principal.Realm, e.KVNO, e.Key.KeyType, keyFingerprint(e.Key))] = true
	}
	return ids
}

// Rotate makes kt the current keys as of now. The previous current keys
// that kt does not hold are retired as of now; retired keys that kt holds
// again are current again. It returns the keys this call retired and those
// it dropped to stay within MaxRetiredKeys.
func (r *KeyRing) Rotate(kt *keytab.Keytab, now time.Time) (retired, dropped []RetiredKey) {
	if kt == nil {
		kt = keytab.New()
	}
	keep := keytabIDs(kt)
	// Retired keys back in the keytab are current again.
	r.retired = slices.DeleteFunc(r.retired, func(k retiredKey) bool { return keep[k.id] })
	seen := make(map[string]bool, len(r.current.Entries))
	for _, e := range r.current.Entries {
		id := entryID(e.Principal.Components, e.Principal.Realm, e.KVNO, e.Key.KeyType, keyFingerprint(e.Key))
		if keep[id] || seen[id] {
			continue
		}
		seen[id] = true
		one := keytab.New()
		one.Entries = append(one.Entries, e)
		k := retiredKey{entry: one, id: id, since: now}
		r.retired = append(r.retired, k)
		retired = append(retired, k.info())
	}
	r.current = kt
	if over := len(r.retired) - MaxRetiredKeys; over > 0 {
		for _, k := range r.retired[:over] {
			dropped = append(dropped, k.info())
		}
		r.retired = slices.Delete(r.retired, 0, over)
	}
	return retired, dropped
}

// Expire drops the keys retired ttl or longer before now and returns them.
func (r *KeyRing) Expire(now time.Time, ttl time.Duration) []RetiredKey {
	var out []RetiredKey
	r.retired = slices.DeleteFunc(r.retired, func(k retiredKey) bool {
		if now.Sub(k.since) >= ttl {
			out = append(out, k.info())
			return true
		}
		return false
	})
	return out
}

// NextExpiry returns when Expire with ttl will next drop a key; the zero
// time when no key is retired.
func (r *KeyRing) NextExpiry(ttl time.Duration) time.Time {
	var next time.Time
	for _, k := range r.retired {
		if at := k.since.Add(ttl); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

// Current returns the current keys. The caller must not modify them.
func (r *KeyRing) Current() *keytab.Keytab { return r.current }

// Retired lists the retired keys, the longest retired first.
func (r *KeyRing) Retired() []RetiredKey {
	out := make([]RetiredKey, len(r.retired))
	for i, k := range r.retired {
		out[i] = k.info()
	}
	return out
}

// Keytab returns a new keytab of the current keys followed by the retired
// ones: what a Validator accepts tickets with. The ring does not change it
// afterwards.
func (r *KeyRing) Keytab() *keytab.Keytab {
	kt := keytab.New()
	kt.Entries = slices.Grow(kt.Entries, len(r.current.Entries)+len(r.retired))
	kt.Entries = append(kt.Entries, r.current.Entries...)
	for _, k := range r.retired {
		kt.Entries = append(kt.Entries, k.entry.Entries...)
	}
	return kt
}

func (k retiredKey) info() RetiredKey {
	return RetiredKey{KeyInfo: Summarize(k.entry)[0], Since: k.since}
}

// WithKeytab returns a Validator that accepts tickets with the keys of kt
// and otherwise is v: the same options and the same replay cache, so that
// an authenticator accepted by either is a replay to the other. A key keeps
// its name in the replay cache (its fingerprint) whichever keytab holds it.
// kt must not be modified afterwards; v is not changed.
func (v *Validator) WithKeytab(kt *keytab.Keytab) *Validator {
	if kt == nil {
		kt = keytab.New()
	}
	nv := *v
	nv.kt, nv.keyIDs = kt, keyIDs(kt)
	return &nv
}

// ReadKeytab reads and parses the keytab file at path, and returns it with
// the SHA-256 of the bytes it was parsed from, so that a caller watching
// the file can tell a new content from the one it holds. A file that does
// not parse (being written, say), or that holds no keys, is an error.
func ReadKeytab(path string) (*keytab.Keytab, [sha256.Size]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, [sha256.Size]byte{}, fmt.Errorf("load keytab: %w", err)
	}
	sum := sha256.Sum256(data)
	kt, err := ParseKeytab(data)
	if err != nil {
		return nil, sum, fmt.Errorf("load keytab %s: %w", path, err)
	}
	return kt, sum, nil
}

// ParseKeytab parses a keytab file's content. It refuses one without
// entries, as LoadKeytab does, and one that ends inside an entry (a file
// being written). Its errors never quote the content: gokrb5's parser
// errors and panics may, key bytes included, so they are not passed on.
func ParseKeytab(data []byte) (kt *keytab.Keytab, err error) {
	defer func() {
		if r := recover(); r != nil {
			kt, err = nil, errors.New("malformed keytab (its parser failed)")
		}
	}()
	switch {
	case len(data) < 2 || data[0] != 5:
		return nil, errors.New("not a keytab (a keytab file starts with byte 0x05)")
	case data[1] != 1 && data[1] != 2:
		return nil, fmt.Errorf("keytab format version %d is unknown (1 and 2 are)", data[1])
	case !wholeEntries(data):
		return nil, errors.New("malformed keytab: it ends inside an entry (cut short, or still being written)")
	}
	kt = keytab.New()
	if err := kt.Unmarshal(data); err != nil {
		return nil, errors.New("malformed keytab: an entry does not decode (corrupt file)")
	}
	if len(kt.Entries) == 0 {
		return nil, errors.New("it holds no keys (export the SPN keys with ktpass or samba-tool domain exportkeytab)")
	}
	return kt, nil
}

// wholeEntries reports whether a version 2 keytab's content ends where an
// entry does, following the entries' length prefixes (a negative one is a
// hole left by a deleted entry); gokrb5 ignores up to three stray bytes at
// the end. Other versions are left to the parser.
func wholeEntries(data []byte) bool {
	if data[1] != 2 {
		return true
	}
	n := 2
	for len(data)-n >= 4 {
		l := int64(int32(binary.BigEndian.Uint32(data[n:])))
		n += 4
		if l == 0 {
			return true // end marker
		}
		l = max(l, -l)
		if l > int64(len(data)-n) {
			return false
		}
		n += int(l)
	}
	return n == len(data)
}

// TicketKVNO returns the key version of the ticket in blob (a Negotiate
// blob, as Validate takes), read from the ticket's unencrypted part, for
// logging why a ticket was refused. ok is false when blob holds no
// Kerberos ticket.
func TicketKVNO(blob []byte) (kvno int, ok bool) {
	t := parse(blob)
	if t.kind != KindKerberos {
		return 0, false
	}
	ap, err := unmarshalAPReq(t.apReq)
	if err != nil {
		return 0, false
	}
	return ap.Ticket.EncPart.KVNO, true
}
