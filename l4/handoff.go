package l4

import (
	"context"
	"net"
	"sync"
)

// HandoffListener is a net.Listener whose connections are handed to it by
// an L4 route rather than accepted from the network: it is the Handler of
// the routes whose server names another server in the process terminates
// (the L7 front door), so one :443 serves both patterns. That server
// serves it like any listener, with its TLS configuration; closing it
// (an http.Server does when it shuts down) refuses further connections.
// The connections were counted by the L4 listener that accepted them (its
// max_conns), so the server must not count them again. (inetaf/tcpproxy's
// TargetListener is the model: the package that produces connections owns
// the listener that hands them on.)
type HandoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// NewHandoffListener returns a HandoffListener whose Addr is addr (the L4
// listener's, say), for logs; nil means a placeholder address.
func NewHandoffListener(addr net.Addr) *HandoffListener {
	if addr == nil {
		addr = handedAddr{}
	}
	return &HandoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// ServeConn (a ConnHandler) hands c to the server accepting on l and returns when that
// server has closed it, when l is closed before accepting it, or when ctx
// ends; the caller closes c after it returns (as Server does).
func (l *HandoffListener) ServeConn(ctx context.Context, c net.Conn) {
	hc := &handedConn{Conn: c, done: make(chan struct{})}
	select {
	case l.conns <- hc:
	case <-l.closed:
		return
	case <-ctx.Done():
		return
	}
	select {
	case <-hc.done:
	case <-ctx.Done():
	}
}

// Accept waits for the next handed connection.
func (l *HandoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close refuses further connections; those already accepted go on.
func (l *HandoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the address given to NewHandoffListener.
func (l *HandoffListener) Addr() net.Addr { return l.addr }

// handedConn tells ServeConn when the HTTP server is done with it.
type handedConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *handedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}

// handedAddr names a HandoffListener that was given no address.
type handedAddr struct{}

func (handedAddr) Network() string { return "handed" }
func (handedAddr) String() string  { return "handed-over" }
