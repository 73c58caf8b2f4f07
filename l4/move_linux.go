package l4

import (
	"errors"
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

	// The callbacks' arguments and results.
	buf   *[]byte // the read's buffer while it holds bytes
	n     int     // bytes read, or spliced in
	err   error   // of the last read or splice
	sp    *spliceP
	limit int // most bytes to splice in; bytes left to splice out
	out   int // bytes spliced out

	readFn, spliceInFn, spliceOutFn func(uintptr) bool
}

func newMover(pools *relayPools, dst, src net.Conn) *mover {
	m := &mover{pools: pools, dst: dst, src: src}
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
	m.readFn, m.spliceInFn, m.spliceOutFn = m.read, m.spliceIn, m.spliceOut
	return m
}

// read is the callback of the wait for bytes: it takes a buffer only to
// read what is there, and gives it back when there is nothing yet.
func (m *mover) read(fd uintptr) bool {
	m.buf = m.pools.buf()
	m.n, m.err = readFD(int(fd), *m.buf)
	if m.err == syscall.EAGAIN {
		m.pools.bufs.Put(m.buf)
		m.buf = nil
		return false // wait until readable
	}
	return true
}

// spliceIn moves what src has now into the pipe, never waiting: an empty
// src ends the burst.
func (m *mover) spliceIn(fd uintptr) bool {
	m.n, m.err = spliceFD(int(fd), m.sp.w, m.limit)
	return true
}

// spliceOut moves the pipe's bytes to dst, waiting until dst is writable.
func (m *mover) spliceOut(fd uintptr) bool {
	m.out, m.err = spliceFD(m.sp.r, int(fd), m.limit)
	return m.err != syscall.EAGAIN
}

// move moves what src has, waiting for it when it has nothing, to dst:
// at most copyChunk bytes. It returns io.EOF once src has ended (after
// moving n bytes).
func (m *mover) move() (int64, error) {
	if m.srcRaw == nil {
		return copyChunkOf(m.dst, m.src, &m.lr)
	}
	// Wait for bytes with no buffer held; take one only to read them.
	if err := m.srcRaw.Read(m.readFn); err != nil {
		return 0, err
	}
	n, rerr := m.n, m.err
	switch {
	case rerr != nil:
		m.putBuf()
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: m.src.LocalAddr(), Addr: m.src.RemoteAddr(), Err: rerr}
	case n == 0:
		m.putBuf()
		return 0, io.EOF
	}
	_, err := m.dst.Write((*m.buf)[:n])
	full := n == len(*m.buf)
	m.putBuf()
	if err != nil || !full {
		return int64(n), err // what Write took is lost with the tunnel
	}
	moved, err := m.spliceBurst(copyChunk - int64(n))
	return int64(n) + moved, err
}

func (m *mover) putBuf() {
	if m.buf != nil {
		m.pools.bufs.Put(m.buf)
		m.buf = nil
	}
}

// spliceBurst moves up to limit bytes that src has now through a pipe to
// dst, without waiting for src: it stops when src has nothing more at once
// (or at its end, which the next move sees). It waits for dst to take the
// bytes it has, within dst's write deadline.
func (m *mover) spliceBurst(limit int64) (int64, error) {
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
		in, serr := m.n, m.err
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
			if werr == nil && m.err != nil {
				werr = fmt.Errorf("splice to the destination: %w", m.err)
			}
			if werr != nil {
				// Bytes left in the pipe belong to this stream alone.
				sp.close()
				return moved, werr
			}
			in -= m.out
			moved += int64(m.out)
		}
	}
	m.pools.putPipe(sp)
	return moved, nil
}

func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, b)
		if !errors.Is(err, syscall.EINTR) {
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
		if !errors.Is(err, syscall.EINTR) {
			if m < 0 {
				m = 0
			}
			return int(m), err
		}
	}
}
