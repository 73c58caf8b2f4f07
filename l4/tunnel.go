package l4

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// copyChunk is how many bytes one move may relay before the copy loop
// reports progress (byte counters, idle clock).
const copyChunk = 256 << 10

// How a relayed connection ended, as its log line's "end" says.
const (
	// EndClientClosed: the client closed (or half-closed) its side first
	// and the relay then finished.
	EndClientClosed = "client_closed"
	// EndBackendClosed: the backend closed (or half-closed) its side first.
	EndBackendClosed = "backend_closed"
	// EndIdleTimeout: nothing moved either way for the idle timeout, or one
	// side stopped taking bytes; the balancer closed both.
	EndIdleTimeout = "idle_timeout"
	// EndShutdown: the listener was shutting down and closed the
	// connection.
	EndShutdown = "shutdown"
	// EndError: a read or write failed (a reset, say); the log line's err
	// says which.
	EndError = "error"
)

// tunnel relays bytes both ways between a client and a backend, with
// half-close and an idle timeout.
//
// Each direction's mover relays a chunk at a time: on Linux by reads and
// writes on the raw sockets and splice(2) bursts (move_linux.go), elsewhere
// by io.Copy. Because a move is invisible until it returns, idleness is
// decided with read deadlines: a direction whose deadline passes without
// progress "suspects" the connection and pokes the other direction (sets
// its read deadline to now) so that it reports whatever it moved; only if
// that direction, asked after it armed its read, has also moved nothing
// (or it is parked, or ended) is the connection closed.
// A write deadline of twice the idle timeout per chunk ends the tunnel when
// a destination stops taking bytes.
//
// A direction whose source has given nothing for parkAfter parks
// (park_linux.go): its goroutine ends and the parker starts a new one when
// the source is readable again. While every direction is parked or
// finished, a timer keeps the idle timeout.
//
// The owner closes client or backend from outside only to shut down (with
// shutdown, which also ends parked directions); the tunnel reports such an
// end as EndShutdown.
type tunnel struct {
	idle            time.Duration // <= 0: no idle timeout
	parkAfter       time.Duration // <= 0: never park
	parker          *parker       // nil: never park
	client, backend net.Conn
	pools           *relayPools // the server's buffers and pipes; nil: io.Copy
	up, down        prometheus.Counter
	parked          prometheus.Gauge // directions parked; with parker

	started time.Time // the monotonic base of last, armed and suspect
	// moved counts the bytes each direction relayed. Each is written only
	// by its own copy, a chunk at a time, and read once run has returned.
	moved   [2]int64
	last    atomic.Int64    // since start: the last progress either way
	lastDir [2]atomic.Int64 // since start: each direction's last progress
	armed   [2]atomic.Int64 // since start: when each direction last armed its read deadline
	suspect atomic.Int64    // since start: when a direction last asked the other to report; -1: never

	finished  [2]atomic.Bool
	closing   atomic.Bool // the tunnel itself is closing both sides
	closeOnce sync.Once

	movers [2]*mover
	state  [2]atomic.Int32  // dirRunning, dirParked or dirClosed
	parkID [2]atomic.Uint64 // the parker's id of each direction's last parking
	left   atomic.Int32     // directions not yet ended
	ended  func(end string, err error)

	mu        sync.Mutex
	end       string      // one of the End* constants; "" while relaying
	endErr    error       // with EndError
	idleTimer *time.Timer // the idle timeout while nothing runs
}

// The states of a direction.
const (
	dirRunning = iota // in a goroutine of its own (or ended: see finished)
	dirParked         // waiting in the parker, without a goroutine
	dirClosed         // closed while parked: ended
)

const (
	dirUp   = 0 // client to backend
	dirDown = 1 // backend to client
)

// dirName names a direction as the bytes metric and the log line do.
func dirName(dir int) string {
	if dir == dirUp {
		return "client_to_backend"
	}
	return "backend_to_client"
}

// start relays in two goroutines, one per direction, and calls ended once
// both directions have ended and both sides are closed, with how the
// connection ended (and the error for EndError).
func (t *tunnel) start(ended func(end string, err error)) {
	t.started = time.Now()
	t.suspect.Store(-1)
	t.left.Store(2)
	t.ended = ended
	for dir, bytes := range [2]prometheus.Counter{t.up, t.down} {
		t.movers[dir] = newMover(t.pools, t.dst(dir), t.src(dir), func(n int64) {
			t.moved[dir] += n
			bytes.Add(float64(n))
			now := t.now()
			t.last.Store(now)
			t.lastDir[dir].Store(now)
		})
	}
	go t.run(dirUp)
	go t.run(dirDown)
}

// run relays one direction until it ends or parks.
func (t *tunnel) run(dir int) {
	if !t.copyHalf(dir) {
		t.halfEnded()
	}
}

// halfEnded counts a direction that has ended; the last one closes both
// sides and reports how the tunnel ended.
func (t *tunnel) halfEnded() {
	if t.left.Add(-1) > 0 {
		t.quiet() // the other direction may be parked
		return
	}
	t.closeBoth()
	t.mu.Lock()
	if t.idleTimer != nil {
		t.idleTimer.Stop()
	}
	t.mu.Unlock()
	t.ended(t.result())
}

// shutdown ends the tunnel as the owner shuts down.
func (t *tunnel) shutdown() {
	t.setEnd(EndShutdown, nil)
	t.closeBoth()
}

// result is how the tunnel ended, once both directions have.
func (t *tunnel) result() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.end == "" {
		return EndError, errors.New("relay ended for no recorded reason")
	}
	return t.end, t.endErr
}

// now is the time since the tunnel started, on the monotonic clock.
func (t *tunnel) now() int64 { return int64(time.Since(t.started)) }

// copyHalf copies dir's source to its destination until the source ends,
// then half-closes the destination; it returns true if instead the
// direction parked. It is a named function so that goroutine dumps of a
// busy balancer read well.
func (t *tunnel) copyHalf(dir int) (parked bool) {
	m, dst, src := t.movers[dir], t.dst(dir), t.src(dir)
	canPark := t.parkAfter > 0 && t.parker != nil && m.source() != nil
	for {
		var armedAt, writeBy time.Time
		if t.idle > 0 || canPark {
			armedAt = time.Now()
			wait := t.idle
			if canPark && (wait <= 0 || t.parkAfter < wait) {
				wait = t.parkAfter
			}
			src.SetReadDeadline(armedAt.Add(wait))
			if t.idle > 0 {
				// A destination that takes nothing for long is gone: a
				// client that half-closed and stopped reading would
				// otherwise pin this copy in its write forever. The write
				// deadline is later than the read one so that an expiry
				// can be told apart below.
				writeBy = armedAt.Add(2 * t.idle)
				dst.SetWriteDeadline(writeBy)
			}
			// After arming: a question asked later than this is sure to
			// interrupt this read (see idleNow).
			t.armed[dir].Store(t.now())
		}
		n, err := m.move()
		switch {
		case err == nil:
			continue // chunk done, more to come
		case err == io.EOF: // pass the half-close on
			t.finished[dir].Store(true)
			t.setEnd(closedBy(dir), nil)
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				return false
			}
			t.closeBoth()
			return false
		case !armedAt.IsZero() && errors.Is(err, os.ErrDeadlineExceeded):
			// A read deadline stops a move before it takes a byte from src
			// (a splice burst with its pipe empty), so the copy may go on. A
			// write deadline may strand bytes already taken from src: the
			// stream is broken, so the tunnel ends.
			// Park once this direction has moved nothing for parkAfter,
			// whether or not this move had moved bytes before that.
			if canPark && t.now()-t.lastDir[dir].Load() >= int64(t.parkAfter) && (writeBy.IsZero() || time.Now().Before(writeBy)) {
				if t.park(dir) {
					return true
				}
				continue
			}
			if t.idle <= 0 || time.Now().Before(writeBy) && (n > 0 || !t.idleNow(dir)) {
				continue
			}
			t.setEnd(EndIdleTimeout, nil)
		case errors.Is(err, net.ErrClosed):
			if !t.closing.Load() {
				// Not the other direction's doing: the owner closed a side
				// to shut down.
				t.setEnd(EndShutdown, nil)
			}
		default:
			// Splice cannot say which side failed, and the error names the
			// destination's addresses: say which copy it was.
			t.setEnd(EndError, fmt.Errorf("%s: %w", dirName(dir), err))
		}
		// Idle, reset, or closed under us: end both directions.
		t.finished[dir].Store(true)
		t.closeBoth()
		return false
	}
}

// park hands dir to the parker, and reports whether its goroutine should
// end: it parked, or the tunnel closed meanwhile (and closeBoth counted
// the direction as ended). If the parker fails, dir goes on waiting in its
// goroutine.
func (t *tunnel) park(dir int) bool {
	t.parked.Inc() // before anything can wake it or close it
	t.state[dir].Store(dirParked)
	if t.closing.Load() {
		// closeBoth may have looked before the store: end dir here if it
		// did not.
		if t.state[dir].CompareAndSwap(dirParked, dirClosed) {
			t.parked.Dec()
			t.halfEnded()
		}
		return true
	}
	id, err := t.parker.park(t, dir, t.movers[dir].source())
	if err != nil {
		// Closed under us (closeBoth then ends dir), or no epoll to be
		// had: keep waiting here.
		if t.state[dir].CompareAndSwap(dirParked, dirRunning) {
			t.parked.Dec()
			return false
		}
		return true
	}
	if t.state[dir].Load() == dirClosed {
		t.parker.forget(id) // closeBoth may have looked before it was parked
	}
	t.quiet()
	return true
}

// unparked is the parker's call once dir's source is readable again.
func (t *tunnel) unparked(dir int) {
	if t.state[dir].CompareAndSwap(dirParked, dirRunning) {
		t.parked.Dec()
		go t.run(dir)
	}
}

// quiet arms the idle timeout's timer if no direction is running: every
// one is parked or has ended.
func (t *tunnel) quiet() {
	if t.idle <= 0 || !t.stopped() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing.Load() {
		return
	}
	wait := time.Duration(int64(t.idle) - (t.now() - t.last.Load()))
	if t.idleTimer == nil {
		t.idleTimer = time.AfterFunc(wait, t.idleExpired)
	} else {
		t.idleTimer.Reset(wait)
	}
}

// stopped reports whether no direction is running.
func (t *tunnel) stopped() bool {
	for dir := range 2 {
		if t.state[dir].Load() == dirRunning && !t.finished[dir].Load() {
			return false
		}
	}
	return true
}

// idleExpired is the idle timer's: it closes the tunnel if still nothing
// runs and nothing moved for the idle timeout. A direction that runs keeps
// the timeout itself.
func (t *tunnel) idleExpired() {
	if !t.stopped() {
		return
	}
	if t.now()-t.last.Load() < int64(t.idle) {
		t.quiet()
		return
	}
	t.setEnd(EndIdleTimeout, nil)
	t.closeBoth()
}

// copyChunkOf copies at most copyChunk bytes from src to dst through lr
// (whose R is src) with io.Copy, which (*net.TCPConn).ReadFrom serves with
// splice(2) on Linux, and reports them to progress; it returns io.EOF once
// src has ended.
func copyChunkOf(dst, src net.Conn, lr *io.LimitedReader, progress func(int64)) (int64, error) {
	lr.N = copyChunk
	n, err := io.Copy(dst, lr)
	if n > 0 {
		progress(n)
	}
	if err == nil && lr.N > 0 {
		err = io.EOF
	}
	return n, err
}

// closedBy is the end of a tunnel whose dir reached EOF first.
func closedBy(dir int) string {
	if dir == dirUp {
		return EndClientClosed
	}
	return EndBackendClosed
}

// setEnd records how the tunnel ended. The first reason stands, except
// that the balancer closing a half-closed tunnel (idle, shutdown) is the
// better answer than the half-close that came before it.
func (t *tunnel) setEnd(end string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	forced := end == EndIdleTimeout || end == EndShutdown
	if t.end == "" || forced && (t.end == EndClientClosed || t.end == EndBackendClosed) {
		t.end, t.endErr = end, err
	}
}

// idleNow decides, after dir's read deadline passed with nothing moved,
// whether the whole tunnel is idle. A direction inside a move reports what
// it moved only when the move returns, so dir asks the other direction (sets its
// read deadline to now) and that direction's next return answers: if the
// question came after it armed its read and it has moved nothing either,
// both sides have been quiet for the idle timeout. A question that came
// before the other direction re-armed (and so did not interrupt it) is
// ignored, and asked again at the next expiry.
func (t *tunnel) idleNow(dir int) bool {
	now := t.now()
	if now-t.last.Load() < int64(t.idle) {
		return false // something moved recently
	}
	if t.finished[1-dir].Load() || t.state[1-dir].Load() == dirParked {
		return true // the other direction cannot be moving bytes
	}
	if t.suspect.Load() > t.armed[dir].Load() {
		// The other direction had been quiet for the idle timeout when it
		// asked, after this read was armed; this one has moved nothing since.
		return true
	}
	t.suspect.Store(now)
	t.src(1 - dir).SetReadDeadline(time.Now())
	return false
}

func (t *tunnel) src(dir int) net.Conn {
	if dir == dirUp {
		return t.client
	}
	return t.backend
}

func (t *tunnel) dst(dir int) net.Conn { return t.src(1 - dir) }

// closeBoth closes both sides, and ends the directions that were parked
// (closing their sockets took them out of the parker's watch).
func (t *tunnel) closeBoth() {
	t.closeOnce.Do(func() {
		t.closing.Store(true)
		t.client.Close()
		t.backend.Close()
	})
	for dir := range 2 {
		if t.state[dir].CompareAndSwap(dirParked, dirClosed) {
			t.parked.Dec()
			t.parker.forget(t.parkID[dir].Load())
			t.halfEnded()
		}
	}
}
