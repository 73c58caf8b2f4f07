package ntlm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The ntlm-server-1 protocol of ntlm_auth (Samba's source3/utils/
// ntlm_auth.c, manage_ntlm_server_1_request): the server sends "Key: value"
// lines ending with a line ".", the helper answers lines ending with ".":
//
//	LANMAN-Challenge: 0123456789abcdef      Authenticated: Yes
//	NT-Response: <hex>                      User-Session-Key: <hex>
//	Username: alice                         .
//	NT-Domain: EXAMPLE
//	Request-User-Session-Key: Yes           or: Authenticated: No
//	.                                           Authentication-Error: <text>
//	                                            .
//	                                            .
//
// "Key:: <base64>" carries a value that is not plain ASCII. A refusal ends
// with two "." lines (the helper prints one after Authentication-Error and
// one for every answer); a line the helper does not understand gets
// "Error: ..." and "." at once, which shifts every later answer by one: a
// helper that says Error is never used again.

// Bounds of an answer: ntlm_auth's longest line is an Authentication-Error
// of about 250 bytes, its longest answer four lines.
const (
	maxAnswerLine  = 4096
	maxAnswerLines = 8
	// extraDotWait is how long to wait for the second "." of a refusal
	// after the first: it is written at once, so waiting longer only
	// delays a refusal by a helper that does not send it (which is then
	// replaced, as its framing is unknown).
	extraDotWait = 250 * time.Millisecond
)

// errDied is a helper that exited, or whose pipes closed, before it
// answered.
var errDied = errors.New("ntlm_auth exited")

// encodeRequest returns the ntlm-server-1 lines asking the domain to check
// a's response to c. The response goes in hex, names in plain text when
// they are printable ASCII without ':', else in base64 (so that no name can
// end a line, start another key, or be read as "Key:: ..."). The client's
// workstation is not sent: the protocol has no field for it.
func encodeRequest(c Challenge, a *Authenticate) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(128 + 2*len(a.NTResponse))
	b.WriteString("LANMAN-Challenge: ")
	b.WriteString(hex.EncodeToString(c.ServerChallenge[:]))
	b.WriteString("\nNT-Response: ")
	b.WriteString(hex.EncodeToString(a.NTResponse))
	b.WriteByte('\n')
	if err := writeName(&b, "Username", a.User); err != nil {
		return nil, err
	}
	// With no domain the helper asks for its own (winbind's) domain.
	if a.Domain != "" {
		if err := writeName(&b, "NT-Domain", a.Domain); err != nil {
			return nil, err
		}
	}
	b.WriteString("Request-User-Session-Key: Yes\n.\n")
	return b.Bytes(), nil
}

func writeName(b *bytes.Buffer, key, v string) error {
	if !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, key)
	}
	plain := v != ""
	for _, r := range v {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %s has the control character U+%04X", ErrMalformed, key, r)
		}
		plain = plain && r > 0x20 && r < 0x7f && r != ':'
	}
	if plain {
		fmt.Fprintf(b, "%s: %s\n", key, v)
	} else {
		fmt.Fprintf(b, "%s:: %s\n", key, base64.StdEncoding.EncodeToString([]byte(v)))
	}
	return nil
}

// answer is what a helper said about one check.
type answer struct {
	authenticated bool
	status        string // the Authentication-Error text of a refusal
	sessionKey    []byte // the NTLMv2 session base key, when returned
	// keep says the helper may serve another check: false after an Error
	// line or a refusal without its second ".".
	keep bool
}

// helper is one ntlm_auth process and the parent's ends of its pipes.
type helper struct {
	pid    int
	stdin  *os.File
	stdout *os.File
	out    *bufio.Reader
	checks int // answered so far (used by one check at a time)

	mu     sync.Mutex // guards reaped and the kill
	reaped bool
	killed bool          // signalled by kill
	exited chan struct{} // closed once the process has exited (reaped or not)
	gone   chan struct{} // closed once it is reaped and counted
}

func (h *helper) alive() bool {
	select {
	case <-h.exited:
		return false
	default:
		return true
	}
}

// kill ends the helper's process group and closes its pipes. The group is
// signalled only while its leader is not reaped, so its pid (and group id)
// cannot have been reused by another process.
func (h *helper) kill() {
	h.mu.Lock()
	if !h.reaped && !h.killed && h.alive() {
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
		h.killed = true
	}
	h.mu.Unlock()
	_ = h.stdin.Close()
	_ = h.stdout.Close()
}

// waitExited blocks until process pid has exited, without reaping it
// (waitid with WNOWAIT, as os.Process.Wait does before it reaps), so that
// kill can still signal its group safely in the meantime.
func waitExited(pid int) error {
	const pPID = 1            // P_PID
	const wNOWAIT = 0x1000000 // WNOWAIT
	var info [128]byte        // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid), uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|wNOWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// exchange sends one request and reads its answer, within deadline and
// ctx. Any error leaves the helper's framing unknown: the caller kills it.
func (h *helper) exchange(ctx context.Context, req []byte, deadline time.Time) (answer, error) {
	if !h.alive() {
		return answer{}, errDied
	}
	_ = h.stdin.SetWriteDeadline(deadline)
	_ = h.stdout.SetReadDeadline(deadline)
	cancelled := false
	stop := context.AfterFunc(ctx, func() {
		past := time.Unix(1, 0)
		_ = h.stdin.SetWriteDeadline(past)
		_ = h.stdout.SetReadDeadline(past)
	})
	ans, err := h.roundTrip(req, deadline)
	if !stop() {
		// ctx ended during the exchange: the deadlines may be set to
		// the past at any moment, even after this check is over.
		cancelled = true
		ans.keep = false
	}
	if err != nil {
		if cancelled && ctx.Err() != nil {
			return answer{}, fmt.Errorf("check abandoned: %w", ctx.Err())
		}
		return answer{}, err
	}
	return ans, nil
}

func (h *helper) roundTrip(req []byte, deadline time.Time) (answer, error) {
	if _, err := h.stdin.Write(req); err != nil {
		return answer{}, ioError("write the request", err, deadline)
	}
	ans, err := readAnswer(h.out)
	if err != nil {
		return answer{}, ioError("read the answer", err, deadline)
	}
	if ans.status != "" && ans.keep {
		// The second "." of a refusal.
		_ = h.stdout.SetReadDeadline(minTime(deadline, time.Now().Add(extraDotWait)))
		if line, err := readLine(h.out); err != nil || line != "." {
			ans.keep = false
		}
	}
	return ans, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// ioError names what failed talking to a helper.
func ioError(what string, err error, deadline time.Time) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: no answer before the deadline (%s)", what, deadline.Format(time.StampMilli))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE), errors.Is(err, os.ErrClosed):
		return fmt.Errorf("%s: %w", what, errDied)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// errGarbage is an answer that is not the ntlm-server-1 protocol.
type errGarbage string

func (e errGarbage) Error() string { return "answer is not ntlm-server-1: " + string(e) }

// readAnswer reads the lines of one answer up to ".". It never quotes the
// helper's lines in an error but for a few redacted bytes: an Error line
// can echo the request's hex.
func readAnswer(r *bufio.Reader) (answer, error) {
	ans := answer{keep: true}
	var said, errLine bool
	for range maxAnswerLines {
		line, err := readLine(r)
		if err != nil {
			return answer{}, err
		}
		k, v, _ := strings.Cut(line, ": ")
		switch {
		case line == ".":
			if errLine {
				return answer{}, errGarbage("Error: the helper did not accept the request")
			}
			if !said {
				return answer{}, errGarbage("no Authenticated line")
			}
			if ans.authenticated && ans.status != "" {
				return answer{}, errGarbage("Authenticated: Yes with an Authentication-Error")
			}
			return ans, nil
		case k == "Authenticated" && !said && (v == "Yes" || v == "No"):
			said, ans.authenticated = true, v == "Yes"
		case k == "Authentication-Error" && ans.status == "" && v != "":
			ans.status = v
		case k == "User-Session-Key" && ans.sessionKey == nil:
			key, err := hex.DecodeString(v)
			if err != nil || len(key) != 16 {
				return answer{}, errGarbage("User-Session-Key is not 16 bytes of hex")
			}
			ans.sessionKey = key
		case k == "LANMAN-Session-Key":
		case k == "Error":
			// Samba answers a field it cannot take with Error and "."
			// at once; the request's "." then gets another answer.
			errLine = true
		default:
			return answer{}, errGarbage(fmt.Sprintf("unexpected line %q", redact(clipBytes([]byte(line), 40))))
		}
	}
	return answer{}, errGarbage(fmt.Sprintf("more than %d lines", maxAnswerLines))
}

// readLine returns one line without its end, refusing lines longer than
// the reader's buffer.
func readLine(r *bufio.Reader) (string, error) {
	b, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errGarbage(fmt.Sprintf("a line longer than %d bytes", r.Size()))
	}
	if err != nil {
		if errors.Is(err, io.EOF) && len(b) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
	return string(b), nil
}

// clipBytes returns at most n bytes of b.
func clipBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// redact makes a line of the helper fit for a log: control characters
// become '?', and any word of 16 or more hex or base64 characters (which
// could be a response, a key or a challenge echoed by a debug message) is
// replaced by "[redacted]".
func redact(b []byte) string {
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, string(b))
	words := strings.Split(s, " ")
	for i, w := range words {
		if looksEncoded(strings.Trim(w, "'\",.:;()[]")) {
			words[i] = "[redacted]"
		}
	}
	return strings.Join(words, " ")
}

// looksEncoded reports whether w is 16 or more base64 (or hex) characters
// with a digit or both cases: not a word of a message.
func looksEncoded(w string) bool {
	if len(w) < 16 {
		return false
	}
	var digit, upper, lower bool
	for _, c := range []byte(w) {
		switch {
		case c >= '0' && c <= '9':
			digit = true
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c == '+' || c == '/' || c == '=':
		default:
			return false
		}
	}
	return digit || (upper && lower)
}
