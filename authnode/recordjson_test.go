package authnode

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// recordJSONCases are strings that take every path of appendJSONString.
var recordJSONCases = []string{
	"", "alice", "S-1-5-21-1-2-3-1105", `quote " and \ backslash`, "<script>&amp;</script>",
	"tab\tnew\nline\rcr\bbs\fff", "\x00\x01\x1f\x7f", "é ü 漢字 🙂", "\u2028\u2029", "bad \xff\xfe utf8 \xc3",
	"Domain Users", "CN=Ünïcödé,OU=x", strings.Repeat("a", 300),
}

func recordFixture(s string, groups int) tokenRecord {
	id := Identity{
		SID: "S-1-5-21-1-2-3-1105", SAMAccountName: s, UserPrincipalName: s + "@EXAMPLE.TEST",
		DisplayName: s, Mail: s, Realm: "EXAMPLE.TEST", AuthTime: time.Date(2026, 12, 3, 10, 4, 5, 123456789, time.FixedZone("x", 3600)),
		AuthMethod: "negotiate", ClientAddr: "192.0.2.1",
	}
	for i := range groups {
		id.Groups = append(id.Groups, fmt.Sprintf("%s-%d", s, i))
		id.GroupSIDs = append(id.GroupSIDs, fmt.Sprintf("S-1-5-21-1-2-3-%d", 1000+i))
	}
	return tokenRecord{Identity: id, Node: "auth1.example.test"}
}

func checkSameAsEncodingJSON(t *testing.T, r tokenRecord) {
	t.Helper()
	want, werr := json.Marshal(r)
	got, gerr := marshalTokenRecord(r)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("json.Marshal error %v, marshalTokenRecord error %v", werr, gerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("marshalTokenRecord differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
}

// TestMarshalTokenRecordIsEncodingJSON: the hand-written encoder writes the
// bytes encoding/json writes, for every kind of character, nil and empty
// group lists, 1,000 groups, and a time JSON cannot hold (the same error).
func TestMarshalTokenRecordIsEncodingJSON(t *testing.T) {
	for _, s := range recordJSONCases {
		checkSameAsEncodingJSON(t, recordFixture(s, 3))
	}
	r := recordFixture("alice", 0)
	checkSameAsEncodingJSON(t, r) // nil slices: null
	r.Identity.Groups, r.Identity.GroupSIDs = []string{}, []string{}
	checkSameAsEncodingJSON(t, r) // empty: []
	checkSameAsEncodingJSON(t, recordFixture("grace", 1000))
	r.Identity.AuthTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	checkSameAsEncodingJSON(t, r)
	r.Identity.AuthTime = time.Time{}
	checkSameAsEncodingJSON(t, r)

	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		checkSameAsEncodingJSON(t, recordFixture(string(b), rng.IntN(3)))
	}
}

// FuzzMarshalTokenRecord: any string, same bytes as encoding/json, in time
// linear in the input.
func FuzzMarshalTokenRecord(f *testing.F) {
	for _, s := range recordJSONCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := recordFixture(s, 2)
		checkSameAsEncodingJSON(t, r)
		// Work budget: the output is at most 6 bytes per input byte per
		// copy of s (\u00XX), plus the fixed fields.
		got, _ := marshalTokenRecord(r)
		if copies := 9; len(got) > 1024+copies*6*len(s) {
			t.Fatalf("%d bytes of output for %d of input", len(got), len(s))
		}
	})
}

func BenchmarkMarshalTokenRecord(b *testing.B) {
	r := recordFixture("grace", 1000)
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(r)
		}
	})
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			marshalTokenRecord(r)
		}
	})
}
