// Package browser drives Debian's headless Chromium through the DevTools
// protocol so that end-to-end tests can check what a real browser does
// against iwalb: follow redirect chains across host names, trust only the
// test CA, and answer a Negotiate challenge with a Kerberos ticket from the
// test domain.
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
// chain (tls.Certificate{Certificate: [][]byte{leaf, ca}}); alternatively
// Options.IgnoreCertErrorsSPKI lists leaf hashes directly. This was chosen
// over an NSS database under a private $HOME, which would need certutil
// (libnss3-tools), and over --ignore-certificate-errors, which accepts any
// certificate and so could hide a server presenting the wrong one.
package browser

import (
	"bytes"
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
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

// startTimeout bounds the wait for the DevTools line when ctx has no
// earlier deadline; a healthy Chromium prints it within a second or two.
const startTimeout = 30 * time.Second

// Options configures one Chromium process.
type Options struct {
	// Binary is the Chromium executable; DefaultBinary when empty.
	Binary string
	// UserDataDir is the profile directory. When empty Start creates a
	// temporary one and Close removes it; a given one is left in place.
	UserDataDir string
	// LocalState, when set, is written to "<UserDataDir>/Local State" before
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
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Browser is a running headless Chromium. Its methods may be called from
// several goroutines.
type Browser struct {
	cmd       *exec.Cmd
	cdp       *cdpConn
	stderr    *stderrWatcher
	exited    chan struct{} // closed when the process has been waited for
	removeDir string        // temporary profile to delete on Close, if any

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

// Start launches Chromium with opts and connects to its DevTools endpoint.
// ctx bounds the start-up only; the process lives until Close.
func Start(ctx context.Context, opts Options) (*Browser, error) {
	bin := opts.Binary
	if bin == "" {
		bin = DefaultBinary
	}
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

	b := &Browser{exited: make(chan struct{})}
	dir := opts.UserDataDir
	if dir == "" {
		dir, err = os.MkdirTemp("", "iwalb-chromium-")
		if err != nil {
			return nil, fmt.Errorf("browser: create profile directory: %w", err)
		}
		b.removeDir = dir
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("browser: create profile directory: %w", err)
	}
	fail := func(err error) (*Browser, error) {
		_ = b.Close()
		return nil, err
	}
	if opts.LocalState != nil {
		if err := os.WriteFile(filepath.Join(dir, "Local State"), opts.LocalState, 0o600); err != nil {
			return fail(fmt.Errorf("browser: write profile seed: %w", err))
		}
	}

	args := []string{
		"--headless",
		"--no-sandbox", // the test runs as root in a container, where the sandbox cannot start
		"--disable-gpu",
		"--disable-quic",
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-dev-shm-usage", // containers often have a tiny /dev/shm
		"--password-store=basic",  // no desktop keyring look-ups (they can stall)
		"--remote-debugging-port=0",
		"--user-data-dir=" + dir,
	}
	if opts.AuthServerAllowlist != "" {
		args = append(args, "--auth-server-allowlist="+opts.AuthServerAllowlist)
	}
	if opts.HostResolverRules != "" {
		args = append(args, "--host-resolver-rules="+opts.HostResolverRules)
	}
	if len(spki) > 0 {
		args = append(args, "--ignore-certificate-errors-spki-list="+strings.Join(spki, ","))
	}
	args = append(args, opts.ExtraArgs...)
	args = append(args, "about:blank")

	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	// Own process group, so Close kills the renderers and helpers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	b.stderr = newStderrWatcher()
	cmd.Stderr = b.stderr
	// Helpers that somehow outlive the group kill must not hang Close.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("browser: start %s: %w", path, err))
	}
	b.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()

	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var wsURL string
	select {
	case wsURL = <-b.stderr.url:
	case <-b.exited:
		return fail(fmt.Errorf("browser: chromium exited before DevTools was ready (%s); stderr: %s",
			cmd.ProcessState, b.stderr.tail()))
	case <-sctx.Done():
		return fail(fmt.Errorf("browser: waiting for the DevTools line on stderr: %w; stderr: %s",
			context.Cause(sctx), b.stderr.tail()))
	}
	ws, err := dialWS(sctx, wsURL)
	if err != nil {
		return fail(fmt.Errorf("browser: %w", err))
	}
	b.cdp = newCDPConn(ws)
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

// Close kills Chromium's process group, waits for it, and removes the
// temporary profile directory. It is safe to call more than once.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		if b.cdp != nil {
			b.cdp.close()
		}
		if b.cmd != nil {
			// Negative pid: the whole group (renderers, zygote, crashpad).
			if err := syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				b.closeErr = fmt.Errorf("browser: kill chromium process group %d: %w", b.cmd.Process.Pid, err)
			}
			<-b.exited
		}
		if b.removeDir != "" {
			if err := os.RemoveAll(b.removeDir); err != nil {
				b.closeErr = errors.Join(b.closeErr, fmt.Errorf("browser: remove profile directory: %w", err))
			}
		}
	})
	return b.closeErr
}

// devtoolsLine is how Chromium announces its DevTools endpoint on stderr.
var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// stderrWatcher receives Chromium's stderr: it hands over the DevTools URL
// once and keeps the last few kilobytes for error messages.
type stderrWatcher struct {
	url chan string // buffered; receives the DevTools URL once

	mu      sync.Mutex
	partial []byte // incomplete last line
	last    []byte // tail of the output
	found   bool
}

const stderrTail = 4 << 10

func newStderrWatcher() *stderrWatcher {
	return &stderrWatcher{url: make(chan string, 1)}
}

func (w *stderrWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last = append(w.last, p...)
	if len(w.last) > stderrTail {
		w.last = w.last[len(w.last)-stderrTail:]
	}
	if w.found {
		return len(p), nil
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break // incomplete last line: wait for the rest
		}
		line := w.partial[:i]
		w.partial = w.partial[i+1:]
		if m := devtoolsLine.FindSubmatch(line); m != nil {
			w.found = true
			w.url <- string(m[1])
			w.partial = nil
			break
		}
	}
	if len(w.partial) > stderrTail {
		w.partial = append([]byte(nil), w.partial[len(w.partial)-stderrTail:]...)
	}
	return len(p), nil
}

func (w *stderrWatcher) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.last))
}
