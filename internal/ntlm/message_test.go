package ntlm

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// samba NEGOTIATE is what Samba 4.17's ntlmssp-client-1 sends first.
var sambaNegotiate = mustB64("TlRMTVNTUAABAAAABYIIYgAAAAAoAAAAAAAAACgAAAAGAQAAAAAADw==")

func mustB64(s string) []byte {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// authMsg builds AUTHENTICATE messages for tests: fields in order, after a
// 72-byte header (88 with a MIC).
type authMsg struct {
	lm, nt, domain, user, ws, key []byte
	flags                         uint32
	mic                           []byte // 16 bytes, or nil for none
}

func (m authMsg) bytes() []byte {
	hdr := 72
	if m.mic != nil {
		hdr = 88
	}
	b := make([]byte, hdr)
	copy(b, signature)
	binary.LittleEndian.PutUint32(b[8:], uint32(TypeAuthenticate))
	off := hdr
	for i, f := range [][]byte{m.lm, m.nt, m.domain, m.user, m.ws, m.key} {
		putField(b[12+8*i:], len(f), off)
		b = append(b, f...)
		off += len(f)
	}
	binary.LittleEndian.PutUint32(b[60:], m.flags)
	copy(b[72:], m.mic)
	return b
}

// ntlmv2 returns a structurally valid NTLMv2 response (whose proof is
// random) with the given AV pairs before MsvAvEOL.
func ntlmv2(pairs ...[]byte) []byte {
	b := make([]byte, 16+28)
	copy(b, "0123456789abcdef") // NTProofStr
	b[16], b[17] = 1, 1
	for _, p := range pairs {
		b = append(b, p...)
	}
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0) // MsvAvEOL, Reserved
}

func avPair(id uint16, v []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, id)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func validAuth() authMsg {
	return authMsg{
		lm:     make([]byte, 24),
		nt:     ntlmv2(),
		domain: utf16le("EXAMPLE"),
		user:   utf16le("alice"),
		ws:     utf16le("WS1"),
		flags:  FlagUnicode | FlagNTLM | FlagExtendedSessionSecurity,
	}
}

func TestParseNegotiate(t *testing.T) {
	n, err := ParseNegotiate(sambaNegotiate)
	if err != nil {
		t.Fatal(err)
	}
	if n.Flags != 0x62088205 || n.Domain != "" || n.Workstation != "" {
		t.Fatalf("%+v", n)
	}
	// The 16-byte form, and OEM names when their flags say so.
	short := append([]byte(nil), sambaNegotiate[:16]...)
	if n, err := ParseNegotiate(short); err != nil || n.Flags != 0x62088205 {
		t.Fatalf("16-byte NEGOTIATE: %+v, %v", n, err)
	}
	withNames := append([]byte(nil), sambaNegotiate[:40]...)
	binary.LittleEndian.PutUint32(withNames[12:], FlagUnicode|FlagOEMDomainSupplied|FlagOEMWorkstationSupplied)
	putField(withNames[16:], 7, 40)
	putField(withNames[24:], 3, 47)
	withNames = append(withNames, "EXAMPLEWS1"...)
	if n, err := ParseNegotiate(withNames); err != nil || n.Domain != "EXAMPLE" || n.Workstation != "WS1" {
		t.Fatalf("NEGOTIATE with names: %+v, %v", n, err)
	}

	bad := map[string][]byte{
		"empty":         nil,
		"signature":     append([]byte("NTLMSSQ\x00"), sambaNegotiate[8:]...),
		"type 3":        append(append(append([]byte(nil), sambaNegotiate[:8]...), 3, 0, 0, 0), sambaNegotiate[12:]...),
		"12 bytes":      sambaNegotiate[:12],
		"too large":     append(append([]byte(nil), sambaNegotiate...), make([]byte, MaxMessageSize)...),
		"name outside":  func() []byte { b := bytes.Clone(withNames); putField(b[16:], 7, 45); return b }(),
		"name in hdr":   func() []byte { b := bytes.Clone(withNames); putField(b[16:], 7, 8); return b }(),
		"control char":  func() []byte { b := bytes.Clone(withNames); b[41] = '\n'; return b }(),
		"non-ASCII OEM": func() []byte { b := bytes.Clone(withNames); b[41] = 0xe9; return b }(),
	}
	for name, b := range bad {
		if _, err := ParseNegotiate(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestChallenge(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	srv := &Server{Domain: "EXAMPLE", DNSDomain: "example.test", Computer: "AUTH1", DNSComputer: "auth1.example.test",
		Rand: bytes.NewReader([]byte("\x01\x02\x03\x04\x05\x06\x07\x08")), Now: func() time.Time { return now }}
	neg, err := ParseNegotiate(sambaNegotiate)
	if err != nil {
		t.Fatal(err)
	}
	msg, c, err := srv.Challenge(neg)
	if err != nil {
		t.Fatal(err)
	}
	if MessageType(msg) != TypeChallenge || c.ServerChallenge != [8]byte{1, 2, 3, 4, 5, 6, 7, 8} || !bytes.Equal(msg[24:32], c.ServerChallenge[:]) {
		t.Fatalf("challenge %x in %x", c.ServerChallenge, msg)
	}
	want := FlagUnicode | FlagRequestTarget | FlagNTLM | FlagAlwaysSign | FlagTargetTypeDomain |
		FlagExtendedSessionSecurity | FlagTargetInfo | FlagVersion | Flag128 | FlagKeyExch
	if got := binary.LittleEndian.Uint32(msg[20:]); got != want || c.Flags != want {
		t.Fatalf("flags %#x (kept %#x), want %#x", got, c.Flags, want)
	}
	target, err := field(msg, 12, 56, "target")
	if err != nil || string(target) != string(utf16le("EXAMPLE")) {
		t.Fatalf("target name %q, %v", target, err)
	}
	info, err := field(msg, 40, 56, "target info")
	if err != nil {
		t.Fatal(err)
	}
	pairs := map[uint16][]byte{}
	for p := info; ; {
		id, n := binary.LittleEndian.Uint16(p), int(binary.LittleEndian.Uint16(p[2:]))
		if id == avEOL {
			break
		}
		pairs[id], p = p[4:4+n], p[4+n:]
	}
	for id, v := range map[uint16]string{avNbDomainName: "EXAMPLE", avNbComputerName: "AUTH1", avDNSDomainName: "example.test", avDNSComputerName: "auth1.example.test", avDNSTreeName: "example.test"} {
		if string(pairs[id]) != string(utf16le(v)) {
			t.Errorf("AV pair %d = %q, want %s", id, pairs[id], v)
		}
	}
	if ts := pairs[avTimestamp]; len(ts) != 8 || binary.LittleEndian.Uint64(ts) != 134168400000000000 {
		t.Errorf("timestamp %x", ts)
	}

	// OEM client: OEM target name; no echo of flags it did not ask.
	_, c, err = (&Server{Domain: "EXAMPLE", Computer: "AUTH1"}).Challenge(&Negotiate{Flags: FlagOEM | FlagNTLM | FlagLMKey})
	if err != nil || c.Flags != FlagOEM|FlagNTLM|FlagTargetInfo|FlagTargetTypeDomain {
		t.Fatalf("OEM flags %#x, %v", c.Flags, err)
	}
	// Two challenges differ.
	_, c1, _ := (&Server{Domain: "EXAMPLE", Computer: "AUTH1"}).Challenge(neg)
	_, c2, _ := (&Server{Domain: "EXAMPLE", Computer: "AUTH1"}).Challenge(neg)
	if c1.ServerChallenge == c2.ServerChallenge {
		t.Fatal("two server challenges are equal")
	}

	for name, s := range map[string]*Server{
		"no domain":   {Computer: "AUTH1"},
		"no computer": {Domain: "EXAMPLE"},
		"non-ASCII":   {Domain: "EXAMPLÉ", Computer: "AUTH1"},
		"short rand":  {Domain: "EXAMPLE", Computer: "AUTH1", Rand: strings.NewReader("1234")},
	} {
		if _, _, err := s.Challenge(neg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := srv.Challenge(nil); err == nil {
		t.Error("nil NEGOTIATE: no error")
	}
}

func TestParseAuthenticate(t *testing.T) {
	a, err := ParseAuthenticate(validAuth().bytes())
	if err != nil {
		t.Fatal(err)
	}
	if a.User != "alice" || a.Domain != "EXAMPLE" || a.Workstation != "WS1" || len(a.NTResponse) != 52 || a.MIC != nil {
		t.Fatalf("%+v", a)
	}

	// Names: UTF-16 with a surrogate pair, and OEM.
	m := validAuth()
	m.user = utf16le("jürgen𝄞")
	if a, err := ParseAuthenticate(m.bytes()); err != nil || a.User != "jürgen𝄞" {
		t.Fatalf("UTF-16 user: %q, %v", a.User, err)
	}
	m = validAuth()
	m.flags = FlagOEM | FlagNTLM
	m.user, m.domain, m.ws = []byte("alice"), []byte("EXAMPLE"), []byte("WS1")
	if a, err := ParseAuthenticate(m.bytes()); err != nil || a.User != "alice" || a.Domain != "EXAMPLE" {
		t.Fatalf("OEM names: %+v, %v", a, err)
	}

	// A MIC, when MsvAvFlags says so.
	m = validAuth()
	m.nt = ntlmv2(avPair(avFlags, []byte{2, 0, 0, 0}))
	m.mic = bytes.Repeat([]byte{0xaa}, 16)
	a, err = ParseAuthenticate(m.bytes())
	if err != nil || !bytes.Equal(a.MIC, m.mic) {
		t.Fatalf("MIC %x, %v", a.MIC, err)
	}

	// Empty fields may point anywhere, also at another field.
	b := validAuth().bytes()
	putField(b[52:], 0, 72)
	if _, err := ParseAuthenticate(b); err != nil {
		t.Fatalf("empty key at the LM response's offset: %v", err)
	}

	// An NTLMv1 response parses (Verify refuses it).
	m = validAuth()
	m.nt = make([]byte, 24)
	if _, err := ParseAuthenticate(m.bytes()); err != nil {
		t.Fatalf("NTLMv1: %v", err)
	}

	bad := map[string]func(*authMsg) []byte{
		"field past the end":  func(m *authMsg) []byte { b := m.bytes(); putField(b[36:], 10, len(b)-4); return b },
		"field in the header": func(m *authMsg) []byte { b := m.bytes(); putField(b[36:], 10, 20); return b },
		"offset overflow":     func(m *authMsg) []byte { b := m.bytes(); putField(b[36:], 10, 0xfffffff8); return b },
		// Fields share no bytes: LM inside NT, the user name on the domain's.
		"LM inside NT": func(m *authMsg) []byte { b := m.bytes(); putField(b[12:], 24, 72+24+8); return b },
		"user on domain": func(m *authMsg) []byte {
			b := m.bytes()
			copy(b[36:44], b[28:36])
			return b
		},
		"odd UTF-16":          func(m *authMsg) []byte { m.user = []byte("abc"); return m.bytes() },
		"NUL in user":         func(m *authMsg) []byte { m.user = utf16le("ali\x00ce"); return m.bytes() },
		"LF in domain":        func(m *authMsg) []byte { m.domain = utf16le("EXAMPLE\nUsername: bob"); return m.bytes() },
		"CR in workstation":   func(m *authMsg) []byte { m.ws = utf16le("WS\r"); return m.bytes() },
		"C1 control":          func(m *authMsg) []byte { m.user = utf16le("ali\u0085ce"); return m.bytes() },
		"lone surrogate":      func(m *authMsg) []byte { m.user = []byte{0x00, 0xd8, 'a', 0}; return m.bytes() },
		"low surrogate first": func(m *authMsg) []byte { m.user = []byte{0x00, 0xdc, 0x00, 0xd8}; return m.bytes() },
		"surrogate at end":    func(m *authMsg) []byte { m.user = []byte{'a', 0, 0x00, 0xd8}; return m.bytes() },
		"long user":           func(m *authMsg) []byte { m.user = utf16le(strings.Repeat("a", 257)); return m.bytes() },
		"key of 8 bytes":      func(m *authMsg) []byte { m.key = make([]byte, 8); return m.bytes() },
		"NT response of 30":   func(m *authMsg) []byte { m.nt = make([]byte, 30); return m.bytes() },
		"NTLMv2 version 2":    func(m *authMsg) []byte { m.nt[16] = 2; return m.bytes() },
		"AV pairs without EOL": func(m *authMsg) []byte {
			m.nt = append(ntlmv2()[:44], avPair(avFlags, []byte{0, 0, 0, 0})...)
			return m.bytes()
		},
		"AV pair overrun": func(m *authMsg) []byte {
			m.nt = append(ntlmv2()[:44], 6, 0, 200, 0, 1, 2)
			return m.bytes()
		},
		"EOL with data": func(m *authMsg) []byte { m.nt = append(ntlmv2()[:44], 0, 0, 1, 0, 1); return m.bytes() },
		"MsvAvFlags twice": func(m *authMsg) []byte {
			f := avPair(avFlags, []byte{0, 0, 0, 0})
			m.nt = ntlmv2(f, f)
			return m.bytes()
		},
		"MsvAvFlags of 2 bytes": func(m *authMsg) []byte { m.nt = ntlmv2(avPair(avFlags, []byte{2, 0})); return m.bytes() },
		"MIC but no room": func(m *authMsg) []byte {
			m.nt = ntlmv2(avPair(avFlags, []byte{2, 0, 0, 0}))
			return m.bytes() // payload at 72: the MIC would overlap it
		},
		"truncated header": func(m *authMsg) []byte { return m.bytes()[:60] },
		"type 1":           func(m *authMsg) []byte { b := m.bytes(); b[8] = 1; return b },
	}
	for name, mk := range bad {
		m := validAuth()
		if _, err := ParseAuthenticate(mk(&m)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestMessageType(t *testing.T) {
	if MessageType(sambaNegotiate) != TypeNegotiate || MessageType(validAuth().bytes()) != TypeAuthenticate {
		t.Fatal("types")
	}
	if IsMessage([]byte("NTLMSSP\x00")) || MessageType([]byte("hello, world")) != 0 {
		t.Fatal("short or foreign input taken for a message")
	}
}

// TestPolicy: what Verify refuses before any helper starts.
func TestPolicy(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Helper: "testdata/fake-helper", Args: []string{"hang"}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	cases := map[string]struct {
		mod  func(*authMsg)
		want error
	}{
		"anonymous flag": {func(m *authMsg) { m.flags |= FlagAnonymous }, ErrAnonymous},
		"no user":        {func(m *authMsg) { m.user = nil }, ErrAnonymous},
		"no response":    {func(m *authMsg) { m.nt, m.lm = nil, []byte{0} }, ErrAnonymous},
		"LM only":        {func(m *authMsg) { m.nt = nil }, ErrNTLMv1},
		"NTLMv1":         {func(m *authMsg) { m.nt = make([]byte, 24) }, ErrNTLMv1},
		"backslash":      {func(m *authMsg) { m.user = utf16le(`OTHER\bob`) }, ErrMalformed},
	}
	for name, tc := range cases {
		m := validAuth()
		tc.mod(&m)
		a, err := ParseAuthenticate(m.bytes())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := v.Verify(t.Context(), Challenge{}, a); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	if _, err := v.Verify(t.Context(), Challenge{}, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil: err = %v", err)
	}
	if s := v.Stats(); s.Starts != 0 {
		t.Fatalf("a helper was started for a refused response: %+v", s)
	}
}

func TestEncodeRequest(t *testing.T) {
	c := Challenge{ServerChallenge: [8]byte{1, 2, 3, 4, 5, 6, 7, 8}}
	for _, tc := range []struct {
		user, domain, want string
	}{
		{"alice", "EXAMPLE", "Username: alice\nNT-Domain: EXAMPLE\n"},
		{"alice", "", "Username: alice\nRequest"},
		{"jürgen", "EXAMPLE", "Username:: " + base64.StdEncoding.EncodeToString([]byte("jürgen")) + "\nNT-Domain: EXAMPLE\n"},
		{"a:: b", "EXAMPLE", "Username:: " + base64.StdEncoding.EncodeToString([]byte("a:: b")) + "\n"},
		{"john smith", "EX AMPLE", "Username:: am9obiBzbWl0aA==\nNT-Domain:: RVggQU1QTEU=\n"},
	} {
		req, err := encodeRequest(c, &Authenticate{User: tc.user, Domain: tc.domain, NTResponse: []byte{0xab, 0xcd}})
		if err != nil {
			t.Fatal(err)
		}
		s := string(req)
		if !strings.HasPrefix(s, "LANMAN-Challenge: 0102030405060708\nNT-Response: abcd\n") || !strings.Contains(s, tc.want) || !strings.HasSuffix(s, "Request-User-Session-Key: Yes\n.\n") {
			t.Errorf("%q: %q", tc.user, s)
		}
	}
	// Verify re-checks the names of an Authenticate not made by
	// ParseAuthenticate.
	for _, bad := range []string{"ali\nce", "ali\rce", "ali\x00ce", "\xff", "a\u0085b"} {
		if _, err := encodeRequest(c, &Authenticate{User: bad}); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err = %v", bad, err)
		}
		if _, err := encodeRequest(c, &Authenticate{User: "alice", Domain: bad}); !errors.Is(err, ErrMalformed) {
			t.Errorf("domain %q: err = %v", bad, err)
		}
	}
}

func TestStatusOf(t *testing.T) {
	for text, want := range map[string]error{
		"The referenced account is currently disabled and cannot be logged on to.": ErrAccountDisabled,
		"NT_STATUS_ACCOUNT_LOCKED_OUT":                                             ErrAccountLocked,
		"Password expired":                                                         ErrPasswordExpired,
		"The user password must be changed before logging on the first time.":      ErrPasswordExpired,
		"Reading winbind reply failed!":                                            ErrHelper,
		"The specified account does not exist.":                                    ErrLogonFailure,
		"something new":                                                            ErrLogonFailure,
	} {
		if _, _, got := statusOf(text); got != want {
			t.Errorf("%q: %v, want %v", text, got, want)
		}
	}
	if _, known, _ := statusOf("something new"); known {
		t.Error("unknown text known")
	}
}

func TestRedact(t *testing.T) {
	in := "Authentication-Error: NT_STATUS_WRONG_PASSWORD check: NT-Response: 0011223344556677889900aabbccddeeff Got 'TlRMTVNTUAADAAAAGAAYAE' user [EXAMPLE]\\[alice]\x1b"
	got := redact([]byte(in))
	if strings.Contains(got, "0011223344") || strings.Contains(got, "TlRMTVNT") || strings.ContainsRune(got, 0x1b) || !strings.Contains(got, `[EXAMPLE]\[alice]`) || !strings.HasPrefix(got, "Authentication-Error: NT_STATUS_WRONG_PASSWORD") {
		t.Fatalf("redact: %q", got)
	}
}
