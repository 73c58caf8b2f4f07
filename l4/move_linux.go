package l4

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
)

// On Linux the relay moves bytes itself on the sockets' file descriptors,
// through the runtime's poller (syscall.RawConn), so that a connection
// waiting for bytes holds neither a buffer nor a pipe, and its goroutines
// wait in shallow stacks:
//
//   - it waits until src is readable, then reads what is there into a
//     buffer taken from a pool only for that read, and writes it to dst:
//     small messages cost one read and one write, as with HAProxy's
//     recv/send;
//   - a read that fills the buffer means a bulk transfer: the bytes that
//     follow go through a pipe with splice(2), without copying them
//     through user space, until src has nothing more to give at once; the
//     pipe then goes back to the pool, empty.
//
// Read deadlines interrupt the wait exactly as they interrupt a read, which
// the tunnel's idle logic relies on.

const (
	// moveBufSize is the buffer of one read; a read that fills it starts a
	// splice burst.
	moveBufSize = 16 << 10
	// pipeChunk is the most one splice into the pipe takes (the pipe's
	// default capacity on Linux).
	pipeChunk = 64 << 10
	// freePipes is how many empty pipes the pool keeps for later bursts.
	freePipes   = 64
	spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
)

// relayPools are the buffers and pipes that a Server's relays share.
type relayPools struct {
	bufs  sync.Pool     // of *[]byte, moveBufSize each
	pipes chan *spliceP // empty pipes, at most freePipes
}

func newRelayPools() *relayPools {
	return &relayPools{pipes: make(chan *spliceP, freePipes)}
}

// spliceP is a pipe for splice: r and w are its two ends (non-blocking).
type spliceP struct{ r, w int }

func (p *relayPools) buf() *[]byte {
	if b, ok := p.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, moveBufSize)
	return &b
}

func (p *relayPools) pipe() (*spliceP, error) {
	select {
	case sp := <-p.pipes:
		return sp, nil
	default:
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	return &spliceP{r: fds[0], w: fds[1]}, nil
}

// putPipe keeps an empty pipe for the next burst, or closes it.
func (p *relayPools) putPipe(sp *spliceP) {
	select {
	case p.pipes <- sp:
	default:
		sp.close()
	}
}

// close closes the pipes kept; pipes in use are closed by their relays.
func (p *relayPools) close() {
	for {
		select {
		case sp := <-p.pipes:
			sp.close()
		default:
			return
		}
	}
}

func (sp *spliceP) close() {
	syscall.Close(sp.r)
	syscall.Close(sp.w)
}

// mover moves one direction's bytes. It is made once per direction, with
// its callbacks bound once, so that moving a message allocates nothing.
type mover struct {
	pools          *relayPools
	dst, src       net.Conn
	dstRaw, srcRaw syscall.RawConn // nil: io.Copy through lr
	lr             io.LimitedReader
	progress       func(int64) // bytes written to dst

	// The callbacks' arguments and results.
	moved int64 // bytes relayed by this move
	eof   bool  // src has ended
	full  bool  // a read filled the buffer: more is waiting
	rerr  error // of the read, or the splice in
	werr  error // of the write
	sp    *spliceP
	n     int // bytes spliced in, or out
	limit int // most bytes to splice in; bytes left to splice out

	readFn, spliceInFn, spliceOutFn func(uintptr) bool
}

func newMover(pools *relayPools, dst, src net.Conn, progress func(int64)) *mover {
	m := &mover{pools: pools, dst: dst, src: src, progress: progress}
	m.lr.R = src
	sc, ok1 := src.(syscall.Conn)
	dc, ok2 := dst.(syscall.Conn)
	if !ok1 || !ok2 || pools == nil {
		return m
	}
	srcRaw, err1 := sc.SyscallConn()
	dstRaw, err2 := dc.SyscallConn()
	if err1 != nil || err2 != nil {
		return m
	}
	m.srcRaw, m.dstRaw = srcRaw, dstRaw
	m.readFn, m.spliceInFn, m.spliceOutFn = m.relay, m.spliceIn, m.spliceOut
	return m
}

// source is src's raw connection, for parking; nil when the mover copies
// with io.Copy.
func (m *mover) source() syscall.RawConn { return m.srcRaw }

// relay is the callback of the wait for bytes. Each time src is readable
// it reads what is there into a buffer lent for that read and writes it to
// dst, until a read finds nothing (EAGAIN: it waits again, without a
// buffer, and is called back when src is readable). It ends the move
// (returns true) at src's end, on an error, once a read fills the buffer
// (a bulk transfer, for spliceBurst), or after copyChunk bytes. Messages
// that follow each other stay in this loop: the move's deadlines and
// locks are set up once for them all.
//
// The read that finds nothing cannot be skipped after a short one: the
// poller is edge-triggered, and an end of stream (or a reset) that came
// with the last bytes raises no new edge.
func (m *mover) relay(fd uintptr) bool {
	for {
		buf := m.pools.buf()
		n, err := readFD(int(fd), *buf)
		switch {
		case err == syscall.EAGAIN:
			m.pools.bufs.Put(buf)
			return false // wait until readable
		case err != nil:
			m.pools.bufs.Put(buf)
			m.rerr = err
			return true
		case n == 0:
			m.pools.bufs.Put(buf)
			m.eof = true
			return true
		}
		_, werr := m.dst.Write((*buf)[:n])
		m.full = n == len(*buf)
		m.pools.bufs.Put(buf)
		m.moved += int64(n)
		m.progress(int64(n)) // what Write did not take is lost with the tunnel
		if werr != nil {
			m.werr = werr
			return true
		}
		if m.full || m.moved >= copyChunk {
			return true
		}
	}
}

// spliceIn moves what src has now into the pipe, never waiting: an empty
// src ends the burst.
func (m *mover) spliceIn(fd uintptr) bool {
	m.n, m.rerr = spliceFD(int(fd), m.sp.w, m.limit)
	return true
}

// spliceOut moves the pipe's bytes to dst, waiting until dst is writable.
func (m *mover) spliceOut(fd uintptr) bool {
	m.n, m.werr = spliceFD(m.sp.r, int(fd), m.limit)
	return m.werr != syscall.EAGAIN
}

// move relays what src has, waiting for it when it has nothing, to dst,
// reporting each write to progress. It returns the bytes it relayed (about
// copyChunk at most), io.EOF once src has ended, or the first error (a
// read deadline, which ends the wait, among them).
func (m *mover) move() (int64, error) {
	if m.srcRaw == nil {
		return copyChunkOf(m.dst, m.src, &m.lr, m.progress)
	}
	m.moved, m.eof, m.full, m.rerr, m.werr = 0, false, false, nil, nil
	err := m.srcRaw.Read(m.readFn)
	switch {
	case err != nil:
		return m.moved, err
	case m.werr != nil:
		return m.moved, m.werr
	case m.rerr != nil:
		return m.moved, &net.OpError{Op: "read", Net: "tcp", Source: m.src.LocalAddr(), Addr: m.src.RemoteAddr(), Err: m.rerr}
	case m.eof:
		return m.moved, io.EOF
	case !m.full:
		return m.moved, nil
	}
	burst, err := m.spliceBurst(copyChunk - m.moved)
	return m.moved + burst, err
}

// spliceBurst moves up to limit bytes that src has now through a pipe to
// dst, without waiting for src: it stops when src has nothing more at once
// (or at its end, which the next move sees). It waits for dst to take the
// bytes it has, within dst's write deadline.
func (m *mover) spliceBurst(limit int64) (int64, error) {
	if limit <= 0 {
		return 0, nil
	}
	sp, err := m.pools.pipe()
	if err != nil {
		return 0, nil // no pipe to be had: the next move reads instead
	}
	m.sp = sp
	defer func() { m.sp = nil }()
	var moved int64
	for moved < limit {
		m.limit = int(min(limit-moved, pipeChunk))
		err := m.srcRaw.Read(m.spliceInFn)
		in, serr := m.n, m.rerr
		switch {
		case err != nil:
			m.pools.putPipe(sp) // empty
			return moved, err
		case serr == syscall.EAGAIN, serr == nil && in == 0:
			m.pools.putPipe(sp)
			return moved, nil
		case serr != nil:
			m.pools.putPipe(sp)
			return moved, fmt.Errorf("splice from the source: %w", serr)
		}
		for in > 0 {
			m.limit = in
			werr := m.dstRaw.Write(m.spliceOutFn)
			if werr == nil && m.werr != nil {
				werr = fmt.Errorf("splice to the destination: %w", m.werr)
			}
			if werr != nil {
				// Bytes left in the pipe belong to this stream alone.
				sp.close()
				return moved, werr
			}
			in -= m.n
			moved += int64(m.n)
			m.progress(int64(m.n))
		}
	}
	m.pools.putPipe(sp)
	return moved, nil
}

// readFD and spliceFD compare the system call's error itself (an Errno)
// with EINTR: errors.Is, on every read that finds nothing, showed in
// profiles of small keep-alive requests.
func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		if err != syscall.EINTR {
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}
}

func spliceFD(from, to, n int) (int, error) {
	for {
		m, err := syscall.Splice(from, nil, to, nil, n, spliceFlags)
		if err != syscall.EINTR {
			if m < 0 {
				m = 0
			}
			return int(m), err
		}
	}
}
