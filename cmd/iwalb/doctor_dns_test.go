package main

import (
	"context"
	"crypto/x509"
	"net"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/iwalb/iwalb/cmd/iwalb/internal/config"
	"github.com/iwalb/iwalb/internal/testpki"
)

// testDNS answers A queries on a loopback UDP port from records: a name
// maps to an IPv4 address, or to "cname:TARGET", whose own record is then
// added to the answer; anything else is NXDOMAIN. It returns a resolver
// that asks it only.
func testDNS(t *testing.T, records map[string]string) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			name := strings.TrimSuffix(q.Name.String(), ".")
			found := false
			for hops := 0; hops < 4; hops++ {
				v, ok := records[name]
				if !ok {
					break
				}
				rh := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(name + "."), Class: dnsmessage.ClassINET, TTL: 60}
				if target, isCNAME := strings.CutPrefix(v, "cname:"); isCNAME {
					b.CNAMEResource(rh, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(target + ".")})
					name = target
					continue
				}
				if q.Type == dnsmessage.TypeA {
					ip := net.ParseIP(v).To4()
					b.AResource(rh, dnsmessage.AResource{A: [4]byte(ip)})
				}
				found = true
				break
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			if !found {
				// NXDOMAIN for a name it does not know.
				var m dnsmessage.Message
				if m.Unpack(msg) == nil {
					m.Header.RCode = dnsmessage.RCodeNameError
					m.Answers = nil
					msg, _ = m.Pack()
				}
			}
			pc.WriteTo(msg, from)
		}
	}()
	addr := pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// TestDoctorDNS: a name served through a CNAME is a problem naming the
// SPN browsers will ask for; a name with an A record passes; one that
// does not resolve is a warning.
func TestDoctorDNS(t *testing.T) {
	r := testDNS(t, map[string]string{
		"sso.corp.test":   "cname:web.corp.test",
		"web.corp.test":   "192.0.2.10",
		"auth1.corp.test": "192.0.2.11",
	})
	lines := resolveNames(context.Background(), r, []string{"auth1.corp.test", "sso.corp.test", "gone.corp.test", "*.apps.corp.test", "intranet", "192.0.2.10"})
	if len(lines) != 5 {
		t.Fatalf("lines = %+v; want one per name, wildcards left out", lines)
	}
	want := []struct{ status, msg, fix string }{
		{"ok", "A/AAAA: 192.0.2.11", ""},
		{"problem", "is an alias (CNAME) of web.corp.test: browsers ask a Kerberos ticket for HTTP/web.corp.test, not HTTP/sso.corp.test",
			"make sso.corp.test an A/AAAA record of its own"},
		{"warning", "does not resolve from here", "give it an A/AAAA record"},
		{"problem", "is an IP address or a short name", "serve the fully qualified name"},
		{"problem", "is an IP address or a short name", "serve the fully qualified name"},
	}
	for i, w := range want {
		l := lines[i]
		if l.Status != w.status || !strings.Contains(l.Message, w.msg) || !strings.Contains(l.Fix, w.fix) {
			t.Errorf("line %d = %+v; want %s %q (fix %q)", i, l, w.status, w.msg, w.fix)
		}
	}
}

// TestDoctorCertChain: a certificate whose CA the machine trusts
// verifies; one whose CA it does not know is a warning with the fix.
func TestDoctorCertChain(t *testing.T) {
	root := testpki.NewCA(t, "doctor root")
	leaf := root.Issue(t, "sso.example.test")
	roots := x509.NewCertPool()
	roots.AddCert(root.X509)
	c := config.Certificate{Server: "l7redirect/sso", Name: "sso.example.test", Chain: []*x509.Certificate{leaf.X509}}
	if l := certChain(c, roots); l.Status != "ok" || l.Message != "verifies to doctor root" {
		t.Errorf("trusted root: %+v", l)
	}
	if l := certChain(c, x509.NewCertPool()); l.Status != "warning" || !strings.Contains(l.Fix, "intermediates") {
		t.Errorf("unknown root: %+v", l)
	}
}
