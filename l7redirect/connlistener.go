package l7redirect

import (
	"context"
	"net"
	"sync"
)

// ConnListener is a net.Listener whose connections are handed to it rather
// than accepted from the network: the L4 front door gives it the
// connections whose server name routes to this front door (ServeConn has
// the method set of l4.ConnHandler), so one :443 serves both patterns.
// Serve it with Server.Serve and a TLS config like any listener; closing it
// (Server.Serve does when its context ends) refuses further connections.
type ConnListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

// NewConnListener returns a ConnListener whose Addr is addr (the L4
// listener's, say), for logs; nil means a placeholder address.
func NewConnListener(addr net.Addr) *ConnListener {
	if addr == nil {
		addr = handedAddr{}
	}
	return &ConnListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// ServeConn hands c to the server accepting on l and returns when that
// server has closed it, when l is closed before accepting it, or when ctx
// ends; the caller closes c after it returns (as package l4 does).
func (l *ConnListener) ServeConn(ctx context.Context, c net.Conn) {
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
func (l *ConnListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close refuses further connections; those already accepted go on.
func (l *ConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the address given to NewConnListener.
func (l *ConnListener) Addr() net.Addr { return l.addr }

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

// handedAddr names a ConnListener that was given no address.
type handedAddr struct{}

func (handedAddr) Network() string { return "handed" }
func (handedAddr) String() string  { return "handed-over" }
