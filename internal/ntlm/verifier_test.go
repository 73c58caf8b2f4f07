package ntlm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVerifier returns a Verifier whose helper is testdata/fake-helper in
// mode, and the buffer its log goes to.
func fakeVerifier(t *testing.T, mode string, maxHelpers int, timeout time.Duration) (*Verifier, func() string) {
	t.Helper()
	log, buf := testLogBuffer(t)
	v, err := NewVerifier(VerifierConfig{Helper: "testdata/fake-helper", Args: []string{mode}, MaxHelpers: maxHelpers, Timeout: timeout, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = v.Close()
		waitNoProcs(t, "fake-helper")
	})
	return v, buf.String
}

func validAuthenticate(t *testing.T) *Authenticate {
	t.Helper()
	a, err := ParseAuthenticate(validAuth().bytes())
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, ppid, pgrp int
	comm, state     string
}

func procs(t testing.TB) []procStat {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []procStat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces and ')'.
		s := string(b)
		i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(s[j+1:])
		if len(f) < 3 {
			continue
		}
		p := procStat{pid: pid, comm: s[i+1 : j], state: f[0]}
		p.ppid, _ = strconv.Atoi(f[1])
		p.pgrp, _ = strconv.Atoi(f[2])
		out = append(out, p)
	}
	return out
}

// childPID waits up to 5 s for a live child of this process named comm and
// returns its pid.
func childPID(t *testing.T, comm string) int {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if ps := verifierProcs(t, comm); len(ps) > 0 {
			return ps[0].pid
		}
	}
	t.Fatalf("no %s child started", comm)
	return 0
}

// waitGroupGone waits up to 5 s until no process is in process group pgrp.
func waitGroupGone(t *testing.T, pgrp int) {
	t.Helper()
	var left []procStat
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		left = left[:0]
		for _, p := range procs(t) {
			if p.pgrp == pgrp {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return
		}
	}
	t.Fatalf("processes left in group %d: %+v", pgrp, left)
}

// TestHelperHangs: a helper that never answers is killed, with the
// process it started, after Timeout, and Verify says ErrHelper then.
func TestHelperHangs(t *testing.T) {
	const timeout = 500 * time.Millisecond
	v, _ := fakeVerifier(t, "hang", 2, timeout)
	a := validAuthenticate(t)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := v.Verify(context.Background(), Challenge{}, a)
		errc <- err
	}()
	pid := childPID(t, "fake-helper")
	var sleeper bool
	for _, p := range procs(t) {
		sleeper = sleeper || (p.pgrp == pid && p.comm == "sleep")
	}
	err := <-errc
	took := time.Since(start)
	if !errors.Is(err, ErrHelper) {
		t.Fatalf("err = %v, want ErrHelper", err)
	}
	if took < timeout || took > timeout+time.Second {
		t.Fatalf("Verify returned after %s, timeout %s", took, timeout)
	}
	t.Logf("%v after %s", err, took.Round(time.Millisecond))
	if !sleeper {
		t.Log("the helper's sleep had not started when looked for")
	}
	waitGroupGone(t, pid)
	if s := v.Stats(); s.Kills != 1 || s.Starts != 1 || s.Running != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHelperGarbage: a helper that answers something else is killed and
// replaced at the next check.
func TestHelperGarbage(t *testing.T) {
	v, _ := fakeVerifier(t, "garbage", 1, 2*time.Second)
	a := validAuthenticate(t)
	for i := 1; i <= 2; i++ {
		_, err := v.Verify(context.Background(), Challenge{}, a)
		if !errors.Is(err, ErrHelper) || !strings.Contains(err.Error(), "not ntlm-server-1") {
			t.Fatalf("check %d: err = %v, want ErrHelper for garbage", i, err)
		}
		waitNoProcs(t, "fake-helper")
		if s := v.Stats(); s.Starts != uint64(i) || s.Kills != uint64(i) {
			t.Fatalf("check %d: stats %+v", i, s)
		}
	}
}

// TestHelperExits: a helper that exits before answering is ErrHelper, and
// counted as a death.
func TestHelperExits(t *testing.T) {
	v, log := fakeVerifier(t, "exit", 1, 2*time.Second)
	_, err := v.Verify(context.Background(), Challenge{}, validAuthenticate(t))
	if !errors.Is(err, ErrHelper) {
		t.Fatalf("err = %v, want ErrHelper", err)
	}
	waitNoProcs(t, "fake-helper")
	for end := time.Now().Add(2 * time.Second); v.Stats().Deaths == 0 && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if s := v.Stats(); s.Deaths != 1 || s.Running != 0 {
		t.Fatalf("stats %+v\n%s", s, log())
	}
	// No new helper for a while: checks fail at once.
	if _, err := v.Verify(context.Background(), Challenge{}, validAuthenticate(t)); !errors.Is(err, ErrHelper) || v.Stats().Starts != 1 {
		t.Fatalf("during the backoff: %v, %+v", err, v.Stats())
	}
	time.Sleep(startBackoff)
	if _, err := v.Verify(context.Background(), Challenge{}, validAuthenticate(t)); !errors.Is(err, ErrHelper) || v.Stats().Starts != 2 {
		t.Fatalf("after the backoff: %v, %+v", err, v.Stats())
	}
}

// TestNoSecretsInText: an Identity or Authenticate printed or logged shows
// names, never the session key or the responses.
func TestNoSecretsInText(t *testing.T) {
	a := validAuthenticate(t)
	id := Identity{User: "alice", Domain: "EXAMPLE", sessionKey: []byte("0123456789abcdef")}
	var buf strings.Builder
	l := slog.New(slog.NewTextHandler(&buf, nil))
	l.Info("x", "id", id, "auth", a)
	out := fmt.Sprintf("%v %+v %s %v %+v", id, id, id, a, a) + buf.String()
	if strings.Contains(out, "0123456789abcdef") || strings.Contains(out, "[") || !strings.Contains(out, `EXAMPLE\alice`) || !strings.Contains(out, "user=alice") {
		t.Fatalf("%s", out)
	}
}

// TestHelperOneDot: a refusal without Samba's second "." is still a
// refusal, told at once; the helper, whose framing is then unknown, is
// replaced.
func TestHelperOneDot(t *testing.T) {
	v, _ := fakeVerifier(t, "onedot", 1, 5*time.Second)
	start := time.Now()
	_, err := v.Verify(context.Background(), Challenge{}, validAuthenticate(t))
	if !errors.Is(err, ErrLogonFailure) || !strings.Contains(err.Error(), "NT_STATUS_NO_SUCH_USER") {
		t.Fatalf("err = %v, want ErrLogonFailure (NT_STATUS_NO_SUCH_USER)", err)
	}
	if took := time.Since(start); took > extraDotWait+time.Second {
		t.Fatalf("took %s", took)
	}
	if s := v.Stats(); s.Kills != 1 || s.Checks != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHelperErrorLine: Samba's "Error:" answer (which echoes the field,
// here the NT response) shifts its answers; the helper is dropped and the
// error does not quote the response.
func TestHelperErrorLine(t *testing.T) {
	v, log := fakeVerifier(t, "errorline", 1, 2*time.Second)
	a := validAuthenticate(t)
	_, err := v.Verify(context.Background(), Challenge{}, a)
	if !errors.Is(err, ErrHelper) {
		t.Fatalf("err = %v, want ErrHelper", err)
	}
	nt := hexdump(a.NTResponse)
	if strings.Contains(err.Error(), nt[:16]) || strings.Contains(log(), nt[:16]) {
		t.Fatalf("the NT response appears in the error or log: %v\n%s", err, log())
	}
	if s := v.Stats(); s.Kills != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestHelperStderr: a helper's stderr is logged, redacted and bounded.
func TestHelperStderr(t *testing.T) {
	v, log := fakeVerifier(t, "stderr", 1, 300*time.Millisecond)
	if _, err := v.Verify(context.Background(), Challenge{}, validAuthenticate(t)); !errors.Is(err, ErrHelper) {
		t.Fatalf("err = %v", err)
	}
	_ = v.Close() // waits for the stderr reader
	out := log()
	if n := strings.Count(out, `"msg":"ntlm_auth stderr"`); n != maxStderrLines {
		t.Fatalf("%d stderr lines logged, want %d", n, maxStderrLines)
	}
	if !strings.Contains(out, "further lines dropped") || strings.Contains(out, "00112233") || !strings.Contains(out, "[redacted]") {
		t.Fatalf("log:\n%.2000s", out)
	}
}

// TestWaitForHelper: with every helper busy a check waits, as long as its
// context allows; Close ends the checks in flight.
func TestWaitForHelper(t *testing.T) {
	v, _ := fakeVerifier(t, "hang", 1, 10*time.Second)
	a := validAuthenticate(t)
	var wg sync.WaitGroup
	wg.Add(1)
	var first error
	go func() {
		defer wg.Done()
		_, first = v.Verify(context.Background(), Challenge{}, a)
	}()
	childPID(t, "fake-helper")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, Challenge{}, a)
	if !errors.Is(err, ErrHelper) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrHelper and the context's deadline", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("waited %s", took)
	}
	if s := v.Stats(); s.Starts != 1 || s.Running != 1 {
		t.Fatalf("a second helper past MaxHelpers 1: %+v", s)
	}

	start = time.Now()
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if !errors.Is(first, ErrHelper) || time.Since(start) > 2*time.Second {
		t.Fatalf("the check in flight at Close: %v after %s", first, time.Since(start))
	}
	if _, err := v.Verify(context.Background(), Challenge{}, a); !errors.Is(err, ErrHelper) {
		t.Fatalf("after Close: %v", err)
	}
	if s := v.Stats(); s.Running != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

// TestVerifyCancelled: a check whose context ends while the helper works
// is abandoned at once, and the helper killed (its answer would come to
// the next check).
func TestVerifyCancelled(t *testing.T) {
	v, _ := fakeVerifier(t, "hang", 1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := v.Verify(ctx, Challenge{}, validAuthenticate(t))
	if !errors.Is(err, ErrHelper) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %s", err, time.Since(start))
	}
	waitNoProcs(t, "fake-helper")
	if s := v.Stats(); s.Kills != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	for name, cfg := range map[string]VerifierConfig{
		"protocol in Args":  {Helper: "testdata/fake-helper", Args: []string{"--helper-protocol=squid-2.5-ntlmssp"}},
		"negative helpers":  {Helper: "testdata/fake-helper", MaxHelpers: -1},
		"negative timeout":  {Helper: "testdata/fake-helper", Timeout: -time.Second},
		"no such helper":    {Helper: "no-such-ntlm-auth-helper"},
		"not an executable": {Helper: "testdata"},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	v, err := NewVerifier(VerifierConfig{Helper: "testdata/fake-helper"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if cap(v.slots) != DefaultMaxHelpers || v.timeout != DefaultTimeout || !filepath.IsAbs(v.path) {
		t.Fatalf("defaults: %d helpers, %s, %s", cap(v.slots), v.timeout, v.path)
	}
	if s := v.Stats(); s != (VerifierStats{}) {
		t.Fatalf("NewVerifier started something: %+v", s)
	}
}
