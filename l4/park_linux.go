package l4

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// A relayed connection that has been quiet for a while holds no goroutine:
// each direction whose source has given nothing for parkAfter "parks" — it
// asks the parker to watch its source socket and its goroutine ends — and
// the parker starts a new goroutine for it once the socket is readable (or
// has ended, or failed). An idle connection then costs its sockets and its
// tunnel (some 2-3 KiB), not two goroutine stacks on top.
//
// The parker watches with an epoll instance of its own, in which each
// parked socket is registered level-triggered and one-shot: bytes that
// arrived between the last read and the registration wake it at once, and
// each registration wakes it once. The epoll descriptor itself waits in the
// runtime's poller (it is readable when an event is ready), so the parker
// needs no thread of its own. It runs while something is parked, and for
// a while (linger) after the last parked socket left, so that one
// connection that parks and wakes again and again does not open and close
// an epoll descriptor each time.

// parkable reports whether this platform can park relays.
const parkable = true

// parker watches the parked directions of a Server's relays.
type parker struct {
	linger time.Duration // how long wait goes on with nothing parked

	mu     sync.Mutex
	ep     *os.File // the epoll descriptor; nil when wait is not running
	epfd   int      // ep's descriptor (ep.Fd would make it blocking)
	nextID uint64
	parked map[uint64]parkedDir // by the id each registration carries
}

// parkedDir is a direction waiting in the parker.
type parkedDir struct {
	t   *tunnel
	dir int
}

func newParker(linger time.Duration) *parker {
	return &parker{linger: linger, parked: make(map[uint64]parkedDir)}
}

// parkEvents are what wakes a parked direction: bytes, the peer's end of
// stream, and (always reported) hang-ups and errors.
const parkEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// park registers src (t's source in direction dir) and returns the id the
// registration carries (also in t.parkID[dir]). Once src is readable, the
// parker calls t.unparked(dir), unless forget(id) came first.
func (p *parker) park(t *tunnel, dir int, src syscall.RawConn) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.register(t, dir, src)
}

// register is park's work, with p.mu held.
func (p *parker) register(t *tunnel, dir int, src syscall.RawConn) (uint64, error) {
	if p.ep == nil {
		if err := p.start(); err != nil {
			return 0, err
		}
	}
	p.nextID++
	id := p.nextID
	// Before the registration, which may wake at once: once woken, dir may
	// park again with another id.
	t.parkID[dir].Store(id)
	ev := syscall.EpollEvent{Events: parkEvents, Fd: int32(id), Pad: int32(id >> 32)}
	var ctlErr error
	// Control keeps src's descriptor open while it is registered.
	err := src.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		if errors.Is(ctlErr, syscall.EEXIST) {
			// Parked before in this epoll: its one-shot registration
			// is disarmed, not removed.
			ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return 0, fmt.Errorf("park relay: %w", err)
	}
	p.parked[id] = parkedDir{t, dir}
	return id, nil
}

// forget drops a registration whose socket has been closed (closing it
// removed it from the epoll set).
func (p *parker) forget(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.parked[id]; !ok {
		return
	}
	delete(p.parked, id)
	if len(p.parked) == 0 && p.ep != nil {
		p.ep.SetReadDeadline(time.Now().Add(p.linger)) // wait stops unless something parks
	}
}

// start opens the epoll descriptor and starts the goroutine that waits on
// it; p.mu is held.
func (p *parker) start() error {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("epoll descriptor: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "relay parker epoll") // non-blocking: in the runtime's poller
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return fmt.Errorf("epoll descriptor: %w", err)
	}
	p.ep, p.epfd = ep, fd
	go p.wait(ep, rc)
	return nil
}

// wait hands each event of ep to its parked direction. Once nothing has
// been parked for linger (a read deadline on ep, set when the last parked
// direction left), it closes ep and ends.
func (p *parker) wait(ep *os.File, rc syscall.RawConn) {
	var events [64]syscall.EpollEvent
	var ready []parkedDir
	var werr error
	collect := func(fd uintptr) bool {
		for {
			n, err := syscall.EpollWait(int(fd), events[:], 0)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
				werr = err
				return true
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if d, ok := p.parked[id]; ok {
					delete(p.parked, id)
					ready = append(ready, d)
				}
			}
			p.mu.Unlock()
			// The runtime's poller watches ep edge-triggered: read it
			// until it is empty, or a later event could go unnoticed.
			if n < len(events) {
				return len(ready) > 0 // with nothing ready, wait for the poller
			}
		}
	}
	for {
		err := rc.Read(collect)
		for i, d := range ready {
			d.t.unparked(d.dir)
			ready[i] = parkedDir{}
		}
		woke := len(ready) > 0
		ready = ready[:0]
		expired := errors.Is(err, os.ErrDeadlineExceeded)
		if err != nil && !expired || werr != nil {
			// The epoll descriptor failed: nothing parked can be woken.
			// Hand everything back to its relay.
			p.failAll(ep)
			return
		}
		p.mu.Lock()
		empty := len(p.parked) == 0
		switch {
		case expired && empty:
			p.ep = nil // the next park starts another
		case expired:
			ep.SetReadDeadline(time.Time{}) // parked again meanwhile
		case empty && woke:
			ep.SetReadDeadline(time.Now().Add(p.linger))
		}
		p.mu.Unlock()
		if expired && empty {
			ep.Close()
			return
		}
	}
}

// failAll wakes every parked direction after the epoll descriptor failed,
// so that each goes back to waiting in a goroutine of its own.
func (p *parker) failAll(ep *os.File) {
	p.mu.Lock()
	parked := p.parked
	p.parked = make(map[uint64]parkedDir)
	if p.ep == ep {
		p.ep = nil
	}
	p.mu.Unlock()
	ep.Close()
	for _, d := range parked {
		d.t.unparked(d.dir)
	}
}
