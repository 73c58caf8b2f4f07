package browser

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jcmturner/gokrb5/v8/gssapi"
	"github.com/jcmturner/gokrb5/v8/spnego"

	"github.com/iwalb/iwalb/authnode/adtest"
	"github.com/iwalb/iwalb/internal/testpki"
)

// resolverRules sends the test domain to loopback and nothing else anywhere.
const resolverRules = "MAP *.example.test 127.0.0.1, MAP * ~NOTFOUND"

// newTestPKI returns the file of a throw-away CA and a certificate it
// issued for hosts, whose chain holds the CA as Options.CACertFile requires.
func newTestPKI(t *testing.T, hosts ...string) (caFile string, leaf *testpki.Cert) {
	t.Helper()
	ca := testpki.NewCA(t, "iwalb browser test CA")
	return ca.CertFile(t), ca.Issue(t, hosts...)
}

// serveTLS serves h over HTTPS on 127.0.0.1 and returns the port.
func serveTLS(t *testing.T, cert tls.Certificate, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:   h,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		ErrorLog:  log.New(io.Discard, "", 0), // handshake errors are expected in the no-trust cases
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func navCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStartWithoutChromium(t *testing.T) {
	for _, bin := range []string{"/nonexistent/chromium", "no-such-chromium-binary"} {
		_, err := Start(context.Background(), Options{Binary: bin})
		if !errors.Is(err, ErrNoChromium) {
			t.Errorf("Start(Binary=%q) = %v, want an error wrapping ErrNoChromium", bin, err)
		}
	}
}

// TestNavigateRedirects proves that an HTTP redirect to another host and a
// script redirect both end on the final page, that the host resolver rules
// bring example.test names to the local server, and that only the intended
// certificate trust makes Chromium accept it.
func TestNavigateRedirects(t *testing.T) {
	caFile, leaf := newTestPKI(t, "app.example.test", "login.example.test")
	var mu sync.Mutex
	var hosts []string
	mux := http.NewServeMux()
	var port string
	mux.HandleFunc("/start", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://app.example.test:"+port+"/final?x=1", http.StatusFound)
	})
	mux.HandleFunc("/script", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<html><body>moving<script>onload = () => setTimeout(() => location.replace("/final?x=1"), 50)</script></body></html>`)
	})
	mux.HandleFunc("/final", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "<html><head><title>Final</title></head><body><p>Hello from final</p><p>x=%s</p></body></html>", r.URL.Query().Get("x"))
	})
	port = serveTLS(t, leaf.TLS(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host+r.URL.Path)
		mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	final := "https://app.example.test:" + port + "/final?x=1"

	otherCAFile, _ := newTestPKI(t, "app.example.test")
	trust := []struct {
		name    string
		opts    Options
		wantErr string // a Chromium net error, or "" for success
	}{
		{"CA file", Options{CACertFile: caFile}, ""},
		{"leaf SPKI", Options{IgnoreCertErrorsSPKI: []string{SPKIHash(leaf.X509)}}, ""},
		{"no trust", Options{}, "net::ERR_CERT_AUTHORITY_INVALID"},
		{"other CA", Options{CACertFile: otherCAFile}, "net::ERR_CERT_AUTHORITY_INVALID"},
	}
	for _, tc := range trust {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts := tc.opts
			opts.HostResolverRules = resolverRules
			b := StartT(t, opts)
			if tc.wantErr != "" {
				_, err := b.Navigate(navCtx(t), "https://login.example.test:"+port+"/start")
				if !errors.Is(err, ErrNavigate) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Navigate = %v, want ErrNavigate with %s", err, tc.wantErr)
				}
				return
			}
			login := "https://login.example.test:" + port
			for _, nav := range []struct{ start, want string }{
				{login + "/start", final},                 // 302 to another host
				{login + "/script", login + "/final?x=1"}, // script redirect 50 ms after the load event
			} {
				p, err := b.Navigate(navCtx(t), nav.start)
				if err != nil {
					t.Fatal(err)
				}
				if p.URL != nav.want {
					t.Errorf("Navigate(%s).URL = %q, want %q", nav.start, p.URL, nav.want)
				}
				if !strings.Contains(p.Text, "Hello from final") || !strings.Contains(p.Text, "x=1") {
					t.Errorf("Navigate(%s).Text = %q, want the final page", nav.start, p.Text)
				}
				if p.Title != "Final" || !strings.Contains(p.HTML, "<p>Hello from final</p>") {
					t.Errorf("Navigate(%s) Title=%q HTML=%q", nav.start, p.Title, p.HTML)
				}
			}
		})
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, want := range []string{"login.example.test:" + port + "/start", "app.example.test:" + port + "/final"} {
			if !slices.Contains(hosts, want) {
				t.Errorf("server saw %q, want a request for %s", hosts, want)
			}
		}
	})
}

// TestNavigateBoundedByContext: a server that never answers must not hold
// Navigate past its context.
func TestNavigateBoundedByContext(t *testing.T) {
	caFile, leaf := newTestPKI(t, "slow.example.test")
	release := make(chan struct{})
	port := serveTLS(t, leaf.TLS(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) })
	b := StartT(t, Options{CACertFile: caFile, HostResolverRules: resolverRules})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := b.Navigate(ctx, "https://slow.example.test:"+port+"/")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Navigate = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Navigate took %v after a 1s deadline", d)
	}
	// The browser is still usable afterwards.
	p, err := b.Navigate(navCtx(t), "data:text/html,<title>ok</title>still here")
	if err != nil || p.Text != "still here" {
		t.Fatalf("Navigate after timeout = %+v, %v", p, err)
	}
}

// processesUsing lists live processes whose command line mentions s.
func processesUsing(t *testing.T, s string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue // exited meanwhile
		}
		if strings.Contains(string(cmdline), s) {
			found = append(found, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return found
}

// TestCloseLeavesNothing: after Close no Chromium process of this profile
// is left, the temporary profile is gone, and so are the goroutines.
func TestCloseLeavesNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	b, err := Start(context.Background(), Options{HostResolverRules: resolverRules, LocalState: []byte(`{}`)})
	if errors.Is(err, ErrNoChromium) {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := b.dir
	if _, err := os.Stat(filepath.Join(dir, "Local State")); err != nil {
		t.Errorf("profile seed not written: %v", err)
	}
	p, err := b.Navigate(navCtx(t), "data:text/html,<title>T</title><p>hello</p>")
	if err != nil {
		t.Fatal(err)
	}
	if p.Title != "T" || p.Text != "hello" || !strings.HasPrefix(p.URL, "data:text/html,") {
		t.Errorf("Navigate = %+v", p)
	}
	if n := len(processesUsing(t, dir)); n < 2 {
		t.Fatalf("%d processes use %s while running, want the browser and its helpers", n, dir)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left := processesUsing(t, dir); len(left) > 0 {
		t.Errorf("processes left after Close:\n%s", strings.Join(left, "\n"))
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("profile directory %s still there: %v", dir, err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

// TestNegotiateKerberos proves that Chromium, started with the test
// domain's profile seed, allowlist and alice's ticket cache, answers a
// Negotiate challenge with a SPNEGO token carrying a Kerberos AP-REQ for
// HTTP/auth1.example.test.
func TestNegotiateKerberos(t *testing.T) {
	env := adtest.Env(t)
	seed, err := os.ReadFile(env["AD_CHROMIUM_LOCAL_STATE"])
	if err != nil {
		t.Fatalf("profile seed: %v", err)
	}
	caFile, leaf := newTestPKI(t, "auth1.example.test")
	blobs := make(chan []byte, 10)
	port := serveTLS(t, leaf.TLS(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b64, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Negotiate ")
		if !ok {
			w.Header().Set("WWW-Authenticate", "Negotiate")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, "no negotiate")
			return
		}
		blob, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			http.Error(w, "bad base64", http.StatusBadRequest)
			return
		}
		blobs <- blob
		fmt.Fprintf(w, "got negotiate %d", len(blob))
	}))

	b := StartT(t, Options{
		LocalState:          seed,
		AuthServerAllowlist: "*.example.test",
		HostResolverRules:   resolverRules,
		CACertFile:          caFile,
		Env: []string{
			"KRB5_CONFIG=" + env["KRB5_CONFIG"],
			"KRB5CCNAME=FILE:" + env["AD_ALICE_CCACHE"],
		},
	})
	p, err := b.Navigate(navCtx(t), "https://auth1.example.test:"+port+"/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Text, "got negotiate ") {
		t.Fatalf("page text %q, want \"got negotiate <len>\" (Chromium sent no Negotiate token)", p.Text)
	}
	var blob []byte
	select {
	case blob = <-blobs:
	default:
		t.Fatal("server recorded no Negotiate token")
	}
	if p.Text != fmt.Sprintf("got negotiate %d", len(blob)) {
		t.Errorf("page text %q, token length %d", p.Text, len(blob))
	}
	if blob[0] != 0x60 {
		t.Fatalf("token starts with %#x, want 0x60 (SPNEGO)", blob[0])
	}
	var tok spnego.SPNEGOToken
	if err := tok.Unmarshal(blob); err != nil || !tok.Init {
		t.Fatalf("not a SPNEGO NegTokenInit: %v", err)
	}
	if len(tok.NegTokenInit.MechTypes) == 0 || !tok.NegTokenInit.MechTypes[0].Equal(gssapi.OIDKRB5.OID()) {
		t.Errorf("mech types %v, want Kerberos 5 first", tok.NegTokenInit.MechTypes)
	}
	var krb spnego.KRB5Token
	if err := krb.Unmarshal(tok.NegTokenInit.MechTokenBytes); err != nil || !krb.IsAPReq() {
		t.Fatalf("mech token is not a Kerberos AP-REQ: %v", err)
	}
	tkt := krb.APReq.Ticket
	if got := tkt.SName.PrincipalNameString() + "@" + tkt.Realm; got != "HTTP/auth1.example.test@"+env["AD_REALM"] {
		t.Errorf("ticket for %s, want HTTP/auth1.example.test@%s", got, env["AD_REALM"])
	}
}
