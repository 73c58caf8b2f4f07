package ntlm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// VerifierConfig sets up a Verifier. The zero value asks ntlm_auth from
// PATH with the default smb.conf, four helpers at most, 5 s per check.
type VerifierConfig struct {
	// Helper is the ntlm_auth program: a path, or a name looked up in
	// PATH when NewVerifier runs. Default "ntlm_auth".
	Helper string
	// Args are extra arguments, such as "--configfile=/etc/samba/smb.conf".
	// "--helper-protocol=ntlm-server-1" is added; they come from
	// configuration, never from a request.
	Args []string
	// MaxHelpers bounds the helper processes, and so the checks in
	// flight; a check waits for a free one. Default 4.
	MaxHelpers int
	// Timeout bounds one check, from sending it to the helper's answer;
	// a helper that takes longer is killed. Default 5 s.
	Timeout time.Duration
	// Logger receives the helpers' starts, exits and stderr (bounded and
	// redacted). Default: discard.
	Logger *slog.Logger
}

// Defaults of VerifierConfig.
const (
	DefaultHelper     = "ntlm_auth"
	DefaultMaxHelpers = 4
	DefaultTimeout    = 5 * time.Second
)

// maxStderrLines is how many stderr lines of one helper are logged; the
// rest is read and dropped, so a helper in a loop cannot flood the log,
// nor block on a full pipe.
const maxStderrLines = 50

// Verifier checks AUTHENTICATE messages against the domain through a
// bounded pool of long-lived ntlm_auth helpers: no process starts per
// login, and a helper that misbehaves is killed and replaced when next
// needed. It is safe for concurrent use.
type Verifier struct {
	path    string
	args    []string
	env     []string
	timeout time.Duration
	log     *slog.Logger

	slots  chan struct{} // one token per check holding a helper
	closed chan struct{}

	mu      sync.Mutex
	idle    []*helper
	running map[*helper]struct{}
	done    bool
	wg      sync.WaitGroup // reapers and stderr readers

	starts, kills, deaths, checks atomic.Uint64
	failedStart                   atomic.Int64 // UnixNano of the last helper that died unused, 0 after an answer
}

// VerifierStats counts a Verifier's helpers, for metrics.
type VerifierStats struct {
	// Running is the helper processes alive now; Idle of them wait for a
	// check.
	Running, Idle int
	// Starts counts the helpers started, Kills those killed (garbage,
	// timeout, abandoned check, Close), Deaths those that exited by
	// themselves.
	Starts, Kills, Deaths uint64
	// Checks counts the answers helpers gave (accepted or refused).
	Checks uint64
}

// Identity is the account the domain accepted. Its names are as the client
// sent them: the domain matches them case-insensitively; Domain is empty
// when the client sent none (the helper's domain was asked); and User may
// be a UPN (alice@example.test), which the domain resolves as a UPN (with
// any Domain): look it up as one, not as a sAMAccountName.
type Identity struct {
	User   string
	Domain string

	sessionKey []byte // exported session key, nil when the domain gave none
	flags      uint32 // negotiated flags
	authMIC    bool   // the AUTHENTICATE had a MIC (and so wants SPNEGO's)
}

// String returns DOMAIN\user, or the user alone: never the session key.
func (id Identity) String() string {
	if id.Domain == "" {
		return id.User
	}
	return id.Domain + `\` + id.User
}

// LogValue logs the names only.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", id.User), slog.String("domain", id.Domain))
}

// startBackoff is how long no helper starts after one exited before its
// first answer (a wrong --configfile, winbind's pipe out of reach): checks
// fail at once meanwhile, instead of each starting a process that fails
// and logs its stderr.
const startBackoff = time.Second

// NewVerifier checks cfg and returns a Verifier. It starts no process:
// helpers start at the first checks.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Helper == "" {
		cfg.Helper = DefaultHelper
	}
	path, err := exec.LookPath(cfg.Helper)
	if err == nil {
		// Helpers run in "/": a relative path would not find them there.
		path, err = filepath.Abs(path)
	}
	if err != nil {
		return nil, fmt.Errorf("NTLM helper %q: %w", cfg.Helper, err)
	}
	for _, a := range cfg.Args {
		if strings.HasPrefix(a, "--helper-protocol") {
			return nil, fmt.Errorf("NTLM helper argument %q: the protocol is always ntlm-server-1", a)
		}
	}
	switch {
	case cfg.MaxHelpers == 0:
		cfg.MaxHelpers = DefaultMaxHelpers
	case cfg.MaxHelpers < 0:
		return nil, fmt.Errorf("NTLM helpers: MaxHelpers %d is negative", cfg.MaxHelpers)
	}
	switch {
	case cfg.Timeout == 0:
		cfg.Timeout = DefaultTimeout
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("NTLM helpers: Timeout %s is negative", cfg.Timeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{
		path: path,
		args: append(append([]string(nil), cfg.Args...), "--helper-protocol=ntlm-server-1"),
		// The helper gets PATH only: nothing of the node's environment,
		// which may name secrets.
		env:     []string{"PATH=" + os.Getenv("PATH")},
		timeout: cfg.Timeout,
		log:     cfg.Logger,
		slots:   make(chan struct{}, cfg.MaxHelpers),
		closed:  make(chan struct{}),
		running: make(map[*helper]struct{}),
	}, nil
}

// Verify asks the domain whether a answers the challenge c, and returns
// the account it accepted. It refuses anonymous, NTLMv1 and LM-only
// responses without asking (ErrAnonymous, ErrNTLMv1); the domain's
// refusals are ErrLogonFailure, ErrAccountDisabled, ErrAccountLocked,
// ErrAccountExpired, ErrAccountRestricted or ErrPasswordExpired; an
// AUTHENTICATE whose MIC does not match is ErrMIC; a check that could not
// be made (no helper within ctx, helper died, timed out or answered
// garbage, domain unreachable) is ErrHelper. Errors name no password,
// response or key.
func (v *Verifier) Verify(ctx context.Context, c Challenge, a *Authenticate) (Identity, error) {
	if a == nil {
		return Identity{}, fmt.Errorf("%w: no AUTHENTICATE message", ErrMalformed)
	}
	if err := a.policy(); err != nil {
		return Identity{}, err
	}
	req, err := encodeRequest(c, a)
	if err != nil {
		return Identity{}, err
	}
	ans, err := v.ask(ctx, req)
	if err != nil {
		return Identity{}, err
	}
	if !ans.authenticated {
		name, known, outcome := statusOf(ans.status)
		if !known {
			name = redact(clipBytes([]byte(ans.status), 200))
			v.log.Warn("ntlm_auth refused a login with a status this package does not know; counted as a logon failure", "status", name)
		}
		return Identity{}, fmt.Errorf("%w (%s)", outcome, name)
	}
	id := Identity{User: a.User, Domain: a.Domain, flags: c.Flags & a.Flags, authMIC: a.MIC != nil}
	if ans.sessionKey != nil {
		if id.sessionKey, err = exportedSessionKey(c, a, ans.sessionKey); err != nil {
			return Identity{}, err
		}
	}
	if a.MIC != nil {
		if id.sessionKey == nil {
			return Identity{}, fmt.Errorf("%w: the AUTHENTICATE has a MIC, but the domain returned no session key to check it with", ErrMIC)
		}
		if err := checkMIC(c, a, id.sessionKey); err != nil {
			return Identity{}, err
		}
	}
	return id, nil
}

// ask has a helper answer req. A helper found dead when reused (it exited
// while idle) is replaced and the request sent again, once.
func (v *Verifier) ask(ctx context.Context, req []byte) (answer, error) {
	for attempt := 1; ; attempt++ {
		h, err := v.acquire(ctx)
		if err != nil {
			return answer{}, err
		}
		// The timeout runs from the request, not from the wait for a
		// helper: a healthy helper is never killed for a queue.
		deadline := time.Now().Add(v.timeout)
		reused := h.checks > 0
		ans, err := h.exchange(ctx, req, deadline)
		h.checks++
		if err == nil {
			v.checks.Add(1)
			v.failedStart.Store(0)
			v.release(h, ans.keep)
			return ans, nil
		}
		if !reused && errors.Is(err, errDied) {
			v.failedStart.Store(time.Now().UnixNano())
		}
		if errors.Is(err, errDied) {
			// Its pipes broke: it has most likely exited. Let the
			// reaper see that first, so that it counts as a death,
			// not as a kill of ours.
			select {
			case <-h.exited:
			case <-time.After(100 * time.Millisecond):
			}
		}
		v.release(h, false)
		if attempt == 1 && reused && errors.Is(err, errDied) && ctx.Err() == nil && time.Now().Before(deadline) {
			v.log.Info("ntlm_auth helper had exited; asking a new one", "pid", h.pid)
			continue
		}
		return answer{}, fmt.Errorf("%w: ntlm_auth (pid %d): %w", ErrHelper, h.pid, err)
	}
}

// acquire returns a helper for one check: an idle one, or a new one while
// fewer than MaxHelpers run; else it waits for one, as long as ctx allows.
func (v *Verifier) acquire(ctx context.Context) (*helper, error) {
	select {
	case v.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a free ntlm_auth helper: %w", ErrHelper, ctx.Err())
	case <-v.closed:
		return nil, fmt.Errorf("%w: verifier closed", ErrHelper)
	}
	v.mu.Lock()
	if v.done {
		v.mu.Unlock()
		<-v.slots
		return nil, fmt.Errorf("%w: verifier closed", ErrHelper)
	}
	for n := len(v.idle); n > 0; n = len(v.idle) {
		h := v.idle[n-1]
		v.idle = v.idle[:n-1]
		if h.alive() {
			v.mu.Unlock()
			return h, nil
		}
	}
	v.mu.Unlock()
	if last := v.failedStart.Load(); last != 0 && time.Since(time.Unix(0, last)) < startBackoff {
		<-v.slots
		return nil, fmt.Errorf("%w: the last ntlm_auth exited before its first answer (its stderr is logged); none starts for %s after that", ErrHelper, startBackoff)
	}
	h, err := v.start()
	if err != nil {
		<-v.slots
		return nil, fmt.Errorf("%w: start %s: %w", ErrHelper, v.path, err)
	}
	return h, nil
}

// release gives h back after a check: to the idle helpers when keep, else
// it is killed.
func (v *Verifier) release(h *helper, keep bool) {
	if keep {
		v.mu.Lock()
		if !v.done && h.alive() {
			v.idle = append(v.idle, h)
			v.mu.Unlock()
			<-v.slots
			return
		}
		v.mu.Unlock()
	}
	h.kill()
	// Wait for the reaper, so that a check that killed its helper
	// returns with the process gone and counted.
	select {
	case <-h.gone:
	case <-time.After(time.Second):
	}
	<-v.slots
}

// start runs a new helper in a process group of its own (so that a kill
// reaches anything it started), with a reaper and a stderr reader.
func (v *Verifier) start() (*helper, error) {
	var files []*os.File // the pipes' ends, closed on failure
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		files = append(files, r, w)
		return r, w, err
	}
	closeAll := func() {
		for _, f := range files {
			if f != nil {
				_ = f.Close()
			}
		}
	}
	inR, inW, err1 := pipe()
	outR, outW, err2 := pipe()
	errR, errW, err3 := pipe()
	if err := errors.Join(err1, err2, err3); err != nil {
		closeAll()
		return nil, err
	}
	cmd := exec.Command(v.path, v.args...)
	cmd.Env = v.env
	cmd.Dir = "/"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		closeAll()
		return nil, err
	}
	// The child's ends: the child has its own copies.
	_, _, _ = inR.Close(), outW.Close(), errW.Close()
	h := &helper{
		pid:    cmd.Process.Pid,
		stdin:  inW,
		stdout: outR,
		out:    bufio.NewReaderSize(outR, maxAnswerLine),
		exited: make(chan struct{}),
		gone:   make(chan struct{}),
	}
	v.starts.Add(1)

	v.mu.Lock()
	if v.done { // closed while starting
		v.mu.Unlock()
		h.kill()
		_ = errR.Close()
		_ = cmd.Wait()
		close(h.gone)
		return nil, errors.New("verifier closed")
	}
	v.running[h] = struct{}{}
	v.wg.Add(2)
	v.mu.Unlock()
	go v.reap(h, cmd)
	go v.logStderr(h.pid, errR)
	v.log.Debug("ntlm_auth started", "pid", h.pid)
	return h, nil
}

// reap waits for h's process to exit, marks it exited (so that kill no
// longer signals its group), reaps it, and counts it: killed when it ended
// by the SIGKILL of kill, died otherwise (even by someone else's SIGKILL).
func (v *Verifier) reap(h *helper, cmd *exec.Cmd) {
	defer v.wg.Done()
	defer close(h.gone)
	werr := waitExited(h.pid)
	close(h.exited)
	h.mu.Lock()
	h.reaped = true
	killed := h.killed
	err := cmd.Wait()
	h.mu.Unlock()
	if werr != nil && err == nil {
		err = werr
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		killed = false
	}
	// A check using it finds its pipes closed; an idle one is dropped.
	_, _ = h.stdin.Close(), h.stdout.Close()
	v.mu.Lock()
	delete(v.running, h)
	for i, x := range v.idle {
		if x == h {
			v.idle = append(v.idle[:i], v.idle[i+1:]...)
			break
		}
	}
	done := v.done
	v.mu.Unlock()
	if killed {
		v.kills.Add(1)
		v.log.Debug("ntlm_auth killed", "pid", h.pid)
		return
	}
	v.deaths.Add(1)
	if done {
		v.log.Debug("ntlm_auth ended", "pid", h.pid, "status", fmt.Sprint(err))
	} else {
		v.log.Warn("ntlm_auth exited by itself; a new one starts at the next check", "pid", h.pid, "status", fmt.Sprint(err))
	}
}

// logStderr logs the first maxStderrLines lines a helper writes to stderr,
// redacted, and drains the rest.
func (v *Verifier) logStderr(pid int, r *os.File) {
	defer v.wg.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 512)
	n := 0
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			switch n++; {
			case n <= maxStderrLines:
				v.log.Warn("ntlm_auth stderr", "pid", pid, "line", redact(bytesTrimEOL(line)))
			case n == maxStderrLines+1:
				v.log.Warn("ntlm_auth stderr: further lines dropped", "pid", pid)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func bytesTrimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Close kills every helper and waits until each is reaped: no process is
// left behind. Checks in flight fail with ErrHelper, later ones too.
func (v *Verifier) Close() error {
	v.mu.Lock()
	if !v.done {
		v.done = true
		close(v.closed)
	}
	hs := make([]*helper, 0, len(v.running))
	for h := range v.running {
		hs = append(hs, h)
	}
	v.idle = nil
	v.mu.Unlock()
	for _, h := range hs {
		h.kill()
	}
	v.wg.Wait()
	return nil
}

// Stats returns the helpers' counts now.
func (v *Verifier) Stats() VerifierStats {
	v.mu.Lock()
	s := VerifierStats{Running: len(v.running), Idle: len(v.idle)}
	v.mu.Unlock()
	s.Starts, s.Kills, s.Deaths, s.Checks = v.starts.Load(), v.kills.Load(), v.deaths.Load(), v.checks.Load()
	return s
}
