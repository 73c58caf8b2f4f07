// Package browser drives Debian's headless Chromium through
// github.com/chromedp/chromedp so that end-to-end tests can check what a
// real browser does against iwalb: follow redirect chains across host
// names, trust only the test CA, and answer a Negotiate challenge with a
// Kerberos ticket from the test domain.
//
// It is test support only: it starts a browser with test-only switches
// (no sandbox, certificate pinning by SPKI hash) and must never be used by
// the iwalb binary itself. It never installs Chromium; when the binary is
// missing Start returns an error wrapping ErrNoChromium and tests skip.
//
// Certificates: Chromium is told to accept the test certificates with
// --ignore-certificate-errors-spki-list, which accepts a server whose
// presented chain contains a certificate with one of the listed SPKI
// SHA-256 hashes (Chromium honours it only together with --user-data-dir,
// which Start always passes). Options.CACertFile lists the hashes of the CA
// certificates in a PEM file, so the test server must send its CA in the
// chain (internal/testpki's certificates do); alternatively
// Options.IgnoreCertErrorsSPKI lists leaf hashes directly. This was chosen
// over an NSS database under a private $HOME, which would need certutil
// (libnss3-tools), and over --ignore-certificate-errors, which accepts any
// certificate and so could hide a server presenting the wrong one.
package browser

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ErrNoChromium is wrapped by Start's error when the Chromium binary does not
// exist; tests skip on it (apt-get install chromium).
var ErrNoChromium = errors.New("chromium not installed")

// ErrNavigate is wrapped by Navigate's error when Chromium itself reports
// that the navigation failed (for example net::ERR_CERT_AUTHORITY_INVALID or
// net::ERR_NAME_NOT_RESOLVED), as opposed to a DevTools or context failure.
var ErrNavigate = errors.New("navigation failed")

// DefaultBinary is the Debian chromium launcher used when Options.Binary is
// empty.
const DefaultBinary = "/usr/bin/chromium"

// startTimeout bounds Chromium's start when ctx has no earlier deadline; a
// healthy Chromium is up within a second or two.
const startTimeout = 30 * time.Second

// Options configures one Chromium process.
type Options struct {
	// Binary is the Chromium executable; DefaultBinary when empty.
	Binary string
	// LocalState, when set, is written to "<profile>/Local State" before
	// Chromium starts: the profile seed that lets it do Negotiate (see the
	// test domain's chromium-local-state.json).
	LocalState []byte
	// AuthServerAllowlist is --auth-server-allowlist, e.g. "*.example.test";
	// without it Chromium on Linux never offers Kerberos credentials.
	AuthServerAllowlist string
	// HostResolverRules is --host-resolver-rules, e.g.
	// "MAP *.example.test 127.0.0.1, MAP * ~NOTFOUND".
	HostResolverRules string
	// CACertFile is a PEM file of CA certificates whose SPKI hashes are added
	// to the accepted list; servers must send the CA in their chain.
	CACertFile string
	// IgnoreCertErrorsSPKI are extra base64 SHA-256 SPKI hashes to accept
	// (see SPKIHash).
	IgnoreCertErrorsSPKI []string
	// Env is added to the inherited environment, e.g. KRB5_CONFIG and
	// KRB5CCNAME so that Chromium's GSSAPI finds the ticket cache.
	Env []string
}

// Browser is a running headless Chromium with a fresh profile. Its methods
// may be called from several goroutines.
type Browser struct {
	ctx    context.Context // chromedp's context of the browser; its tabs derive from it
	cancel func()          // ends ctx and chromedp's allocator, waiting for both
	pid    int             // Chromium's, which leads its own process group
	dir    string          // the temporary profile

	closeOnce sync.Once
	closeErr  error
}

// SPKIHash returns the base64 SHA-256 hash of cert's SubjectPublicKeyInfo,
// the form --ignore-certificate-errors-spki-list takes.
func SPKIHash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// spkiHashesFromPEM returns the SPKI hashes of every certificate in a PEM file.
func spkiHashesFromPEM(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	var hashes []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse CA file %s: %w", path, err)
		}
		hashes = append(hashes, SPKIHash(cert))
	}
	if len(hashes) == 0 {
		return nil, fmt.Errorf("CA file %s: no PEM certificates", path)
	}
	return hashes, nil
}

// Start launches Chromium with opts in a fresh temporary profile. ctx
// bounds the start-up only; the process lives until Close.
func Start(ctx context.Context, opts Options) (*Browser, error) {
	bin := cmp.Or(opts.Binary, DefaultBinary)
	path, err := exec.LookPath(bin)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("browser: %s: %w (apt-get install chromium)", bin, ErrNoChromium)
		}
		return nil, fmt.Errorf("browser: %s: %w", bin, err)
	}
	spki := append([]string(nil), opts.IgnoreCertErrorsSPKI...)
	if opts.CACertFile != "" {
		h, err := spkiHashesFromPEM(opts.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("browser: %w", err)
		}
		spki = append(spki, h...)
	}

	dir, err := os.MkdirTemp("", "iwalb-chromium-")
	if err != nil {
		return nil, fmt.Errorf("browser: create profile directory: %w", err)
	}
	b := &Browser{dir: dir, cancel: func() {}}
	var cmd *exec.Cmd // set by chromedp.Do below, on this goroutine
	fail := func(err error) (*Browser, error) {
		_ = b.Close()
		return nil, err
	}
	if opts.LocalState != nil {
		if err := os.WriteFile(filepath.Join(dir, "Local State"), opts.LocalState, 0o600); err != nil {
			return fail(fmt.Errorf("browser: write profile seed: %w", err))
		}
	}

	// Not chromedp.DefaultExecAllocatorOptions: only what these tests need,
	// so that a default of chromedp's cannot change what they check.
	alloc := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(dir),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // the test runs as root in a container, where the sandbox cannot start
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), // containers often have a tiny /dev/shm
		chromedp.Flag("password-store", "basic"),     // no desktop keyring look-ups (they can stall)
		chromedp.Env(opts.Env...),
		chromedp.ModifyCmdFunc(func(c *exec.Cmd) {
			// Its own process group, so that Close kills the renderers
			// and helpers too; and killed if the test binary dies.
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			cmd = c
		}),
	}
	if opts.AuthServerAllowlist != "" {
		alloc = append(alloc, chromedp.Flag("auth-server-allowlist", opts.AuthServerAllowlist))
	}
	if opts.HostResolverRules != "" {
		alloc = append(alloc, chromedp.Flag("host-resolver-rules", opts.HostResolverRules))
	}
	if len(spki) > 0 {
		alloc = append(alloc, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")))
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), alloc...)
	bctx, bcancel := chromedp.NewContext(actx)
	// Once: chromedp's cancel functions wait for the browser, and a second
	// call of one whose browser never started would wait for ever.
	b.ctx, b.cancel = bctx, sync.OnceFunc(func() { bcancel(); acancel() })

	// The browser lives as long as bctx, so ctx may not be its parent: it
	// only cuts the start short.
	sctx, scancel := context.WithTimeout(ctx, startTimeout)
	defer scancel()
	stop := context.AfterFunc(sctx, b.cancel)
	err = chromedp.Do(bctx) // starts Chromium and opens its first tab
	if cmd != nil && cmd.Process != nil {
		b.pid = cmd.Process.Pid
	}
	if !stop() {
		err = fmt.Errorf("waiting for chromium to start: %w", context.Cause(sctx))
	}
	if err != nil {
		return fail(fmt.Errorf("browser: start %s: %w", path, err))
	}
	return b, nil
}

// StartT starts a browser for test t: it skips the test when Chromium is not
// installed, fails it on any other start error, and closes the browser (and
// reports a Close error) when the test ends.
func StartT(t testing.TB, opts Options) *Browser {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	b, err := Start(ctx, opts)
	if errors.Is(err, ErrNoChromium) {
		t.Skip("chromium not installed: apt-get install chromium")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("close browser: %v", err)
		}
	})
	return b
}

// Close kills Chromium's process group, waits for chromedp to let go of
// it, and removes the temporary profile. It is safe to call more than once.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		if b.pid > 0 {
			// Negative pid: the whole group (renderers, zygote, crashpad).
			// A graceful close could wait on a tab whose request never ends.
			if err := syscall.Kill(-b.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				b.closeErr = fmt.Errorf("browser: kill chromium process group %d: %w", b.pid, err)
			}
		}
		b.cancel()
		if err := os.RemoveAll(b.dir); err != nil {
			b.closeErr = errors.Join(b.closeErr, fmt.Errorf("browser: remove profile directory: %w", err))
		}
	})
	return b.closeErr
}
