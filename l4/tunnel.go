package l4

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// copyChunk is how many bytes one splice call may move before the copy
// loop reports progress (byte counters, idle clock).
const copyChunk = 256 << 10

// tunnel relays bytes both ways between a client and a backend, with
// half-close and an idle timeout.
//
// The copies read the raw connections through io.LimitedReader, which
// (*net.TCPConn).ReadFrom still serves with splice(2) on Linux. Because a
// splice is invisible until it returns, idleness is decided with read
// deadlines: a direction whose deadline passes without progress "suspects"
// the connection and pokes the other direction (sets its read deadline to
// now) so that it reports whatever it moved; only if that direction has also
// moved nothing is the connection closed. A write deadline of twice the idle
// timeout per chunk ends the tunnel when a destination stops taking bytes.
type tunnel struct {
	idle            time.Duration // <= 0: no idle timeout
	client, backend net.Conn
	up, down        prometheus.Counter

	last      atomic.Int64 // unix nanos of the last progress either way
	suspect   atomic.Bool
	finished  [2]atomic.Bool
	closeOnce sync.Once
}

const (
	dirUp   = 0 // client to backend
	dirDown = 1 // backend to client
)

// run relays until both directions have ended.
func (t *tunnel) run() {
	t.last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.copyHalf(dirUp, t.backend, t.client, t.up)
	}()
	t.copyHalf(dirDown, t.client, t.backend, t.down)
	<-done
	t.closeBoth()
}

// copyHalf copies src to dst until src ends, then half-closes dst. It is a
// named function so that goroutine dumps of a busy balancer read well.
func (t *tunnel) copyHalf(dir int, dst, src net.Conn, bytes prometheus.Counter) {
	for {
		var writeBy time.Time
		if t.idle > 0 {
			now := time.Now()
			src.SetReadDeadline(now.Add(t.idle))
			// A destination that takes nothing for long is gone: a client
			// that half-closed and stopped reading would otherwise pin this
			// copy in its write forever. The write deadline is later than
			// the read one so that an expiry can be told apart below.
			writeBy = now.Add(2 * t.idle)
			dst.SetWriteDeadline(writeBy)
		}
		lr := &io.LimitedReader{R: src, N: copyChunk}
		n, err := io.Copy(dst, lr)
		if n > 0 {
			bytes.Add(float64(n))
			t.last.Store(time.Now().UnixNano())
			t.suspect.Store(false)
		}
		switch {
		case err == nil && lr.N == 0:
			continue // chunk done, more to come
		case err == nil: // EOF: pass the half-close on
			t.finished[dir].Store(true)
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return
			}
			t.closeBoth()
			return
		case t.idle > 0 && errors.Is(err, os.ErrDeadlineExceeded):
			// A read deadline stops splice with its pipe empty, so the copy
			// may go on. A write deadline may strand bytes already taken
			// from src in the pipe, and splice drops them: the stream is
			// broken, so the tunnel ends.
			if time.Now().Before(writeBy) && (n > 0 || !t.idleNow(dir)) {
				continue
			}
		}
		// Idle, reset, or closed under us: end both directions.
		t.finished[dir].Store(true)
		t.closeBoth()
		return
	}
}

// idleNow decides, after dir's read deadline passed with no progress,
// whether the whole tunnel is idle.
func (t *tunnel) idleNow(dir int) bool {
	if time.Since(time.Unix(0, t.last.Load())) < t.idle {
		// The other direction moved data recently. Clear any suspicion too:
		// a stale one would let the next quiet period close a live tunnel.
		t.suspect.Store(false)
		return false
	}
	if t.finished[1-dir].Load() {
		return true // nobody else will ever report progress
	}
	if t.suspect.CompareAndSwap(false, true) {
		// Ask the other direction to report what it moved; it decides.
		t.src(1 - dir).SetReadDeadline(time.Now())
		return false
	}
	return true // the other direction was asked and has moved nothing either
}

func (t *tunnel) src(dir int) net.Conn {
	if dir == dirUp {
		return t.client
	}
	return t.backend
}

func (t *tunnel) closeBoth() {
	t.closeOnce.Do(func() {
		t.client.Close()
		t.backend.Close()
	})
}
