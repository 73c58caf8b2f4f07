package ntlm

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/iwalb/iwalb/internal/testkit"
)

// Work budgets of the fuzz targets: the bytes a parser may allocate, per
// byte of input and in all (it copies its input a few times: the message
// for the MIC, the responses, the names), and the length of its error,
// which goes into a log line whatever the input's size.
const fuzzMaxErrBytes = 512

var fuzzAlloc = testkit.AllocBudget{PerByte: 16, Fixed: 64 << 10}

// sambaSPNEGOAuth is a NegTokenResp of Samba's gss-spnego-client carrying
// alice's AUTHENTICATE (NTLMv2, from the throw-away test domain).
var sambaSPNEGOAuth, _ = hex.DecodeString("a18201a8308201a4a28201a00482019c4e544c4d5353500003000000180018005800000004010401700000000e000e00740100000a000a0082010000000000008c010000100010008c01000005820862060100000000000fd64036e2ec202d82cbd2ba3864de38d500000000000000000000000000000000000000000000000082c5f6fae536bc263258b91520a6164301010000000000000071eb3a9b83dd01c95c6225163afd900000000002000e004500580041004d0050004c00450001000a0041005500540048003100040018006500780061006d0070006c0065002e00740065007300740003002400610075007400680031002e006500780061006d0070006c0065002e007400650073007400050018006500780061006d0070006c0065002e007400650073007400070008000071eb3a9b83dd01080030003000000000000000000000000000000001b11145e052e1eae67c424b5e5a210c69b4bf8210eff9e174a97ca31576e9630a00100000000000000000000000000000000000000000004500580041004d0050004c00450061006c00690063006500021f415f0b59a11e3cfe6e76f0dc8797")

func FuzzParseNegotiate(f *testing.F) {
	f.Add(sambaNegotiate)
	f.Add(sambaNegotiate[:16])
	f.Fuzz(func(t *testing.T, b []byte) {
		var n *Negotiate
		var err error
		fuzzAlloc.Within(t, "ParseNegotiate", len(b), func() { n, err = ParseNegotiate(b) })
		if err != nil {
			checkErr(t, err, len(b))
			return
		}
		if len(b) > MaxMessageSize || MessageType(b) != TypeNegotiate {
			t.Fatalf("accepted %d bytes of type %d", len(b), MessageType(b))
		}
		checkName(t, n.Domain)
		checkName(t, n.Workstation)
	})
}

func FuzzParseAuthenticate(f *testing.F) {
	s, err := ParseSPNEGO(sambaSPNEGOAuth)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Token)
	f.Add(validAuth().bytes())
	m := validAuth()
	m.nt = ntlmv2(avPair(avFlags, []byte{2, 0, 0, 0}))
	m.mic = make([]byte, 16)
	f.Add(m.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		var a *Authenticate
		var err error
		fuzzAlloc.Within(t, "ParseAuthenticate", len(b), func() { a, err = ParseAuthenticate(b) })
		if err != nil {
			checkErr(t, err, len(b))
			return
		}
		if len(b) > MaxMessageSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		for _, s := range []string{a.User, a.Domain, a.Workstation} {
			checkName(t, s)
		}
		if len(a.NTResponse)+len(a.LMResponse) > len(b) || (a.MIC != nil && len(a.MIC) != 16) ||
			(len(a.EncryptedSessionKey) != 0 && len(a.EncryptedSessionKey) != 16) {
			t.Fatalf("fields: NT %d, LM %d, MIC %d, key %d of %d bytes", len(a.NTResponse), len(a.LMResponse), len(a.MIC), len(a.EncryptedSessionKey), len(b))
		}
		// What passes the policy goes to the helper as exactly its
		// lines: no name adds one.
		if err := a.policy(); err != nil {
			checkErr(t, err, len(b))
			return
		}
		req, err := encodeRequest(Challenge{}, a)
		if err != nil {
			t.Fatalf("parsed, passed the policy, but cannot be sent: %v", err)
		}
		lines := strings.Split(strings.TrimSuffix(string(req), "\n"), "\n")
		want := []string{"LANMAN-Challenge", "NT-Response", "Username", "NT-Domain", "Request-User-Session-Key", "."}
		if a.Domain == "" {
			want = append(want[:3], want[4:]...)
		}
		if len(lines) != len(want) {
			t.Fatalf("request of %d lines, want %d: %q", len(lines), len(want), req)
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, want[i]) || strings.ContainsAny(l, "\r\x00") {
				t.Fatalf("line %d %q, want %s", i, l, want[i])
			}
		}
	})
}

func FuzzParseSPNEGO(f *testing.F) {
	f.Add(sambaSPNEGOInit)
	f.Add(sambaSPNEGOAuth)
	f.Add(WrapChallenge(sambaNegotiate))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s *SPNEGO
		var err error
		fuzzAlloc.Within(t, "ParseSPNEGO", len(b), func() { s, err = ParseSPNEGO(b) })
		m, uerr := UnwrapSPNEGO(b)
		if err != nil {
			checkErr(t, err, len(b))
			if uerr == nil {
				t.Fatalf("UnwrapSPNEGO took what ParseSPNEGO refused: %v", err)
			}
			return
		}
		if len(b) > MaxSPNEGOSize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if len(s.Token)+len(s.MechListMIC)+len(s.MechTypes) > len(b) {
			t.Fatalf("more out than in: %+v", s)
		}
		if s.Init != (s.MechTypes != nil) || (s.MechTypes != nil && s.MechTypes[0] != 0x30) || (s.NTLMPreferred && !s.NTLMOffered) {
			t.Fatalf("inconsistent: %+v", s)
		}
		if uerr != nil || (m != nil) != IsMessage(s.Token) {
			t.Fatalf("UnwrapSPNEGO: %x, %v for %+v", m, uerr, s)
		}
	})
}

// FuzzReadAnswer reads helper output: never a panic, never more than one
// answer's worth of lines, and "authenticated" only from its line.
func FuzzReadAnswer(f *testing.F) {
	f.Add([]byte("Authenticated: Yes\nUser-Session-Key: 000102030405060708090a0b0c0d0e0f\n.\n"))
	f.Add([]byte("Authenticated: No\nAuthentication-Error: The specified account does not exist.\n.\n.\n"))
	f.Add([]byte("Error: No username supplied!\n.\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ans, err := readAnswer(bufio.NewReaderSize(bytes.NewReader(b), maxAnswerLine))
		if err != nil {
			checkErr(t, err, len(b))
			return
		}
		if ans.authenticated && !bytes.Contains(b, []byte("Authenticated: Yes\n")) {
			t.Fatalf("authenticated from %q", b)
		}
		if ans.sessionKey != nil && len(ans.sessionKey) != 16 {
			t.Fatalf("session key of %d bytes", len(ans.sessionKey))
		}
	})
}

// checkErr fails t for an error that is too long for a log line or wraps
// none of the package's sentinels (or the helper's framing errors).
func checkErr(t *testing.T, err error, n int) {
	t.Helper()
	if len(err.Error()) > fuzzMaxErrBytes {
		t.Fatalf("error of %d bytes for %d bytes of input: %.300s", len(err.Error()), n, err)
	}
	var g errGarbage
	for _, s := range []error{ErrMalformed, ErrNTLMv1, ErrAnonymous} {
		if errors.Is(err, s) {
			return
		}
	}
	if !errors.As(err, &g) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error wraps no sentinel: %v", err)
	}
}

// checkName fails t for a name that could break a protocol line or a log.
func checkName(t *testing.T, s string) {
	t.Helper()
	if !utf8.ValidString(s) || len(s) > maxNameBytes*2 {
		t.Fatalf("name %q", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Fatalf("name %q has U+%04X", s, r)
		}
	}
}
