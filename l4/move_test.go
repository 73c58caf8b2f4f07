//go:build linux

package l4

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iwalb/iwalb/internal/testkit"
	"github.com/iwalb/iwalb/lb"
)

// plainEcho is a backend that echoes with read and write (no splice, so no
// pipes of its own).
func plainEcho(t *testing.T) string {
	t.Helper()
	return testkit.ServeTCP(t, func(c net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
}

// pipes counts this process's open pipes.
func pipes(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestBulkThenIdleHoldsNoPipe: megabytes relayed each way arrive intact
// (through the splice bursts), and once the connections are idle the
// relay holds no pipe for them: the pool keeps at most freePipes, however
// many connections stay open.
func TestBulkThenIdleHoldsNoPipe(t *testing.T) {
	router, _ := NewRouter(nil, &Route{Name: "all", Pool: newPool(t, "p", "", lb.HealthCheck{}, plainEcho(t))})
	addr, _ := startServer(t, Config{Router: router})
	hello := captureHello(t, &tls.Config{ServerName: "a.example.test"})
	before := pipes(t)

	const conns = 2 * freePipes
	const size = 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	held := make(chan net.Conn, conns)
	for range conns {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			held <- c
			c.SetDeadline(time.Now().Add(60 * time.Second))
			payload := make([]byte, size)
			rand.Read(payload)
			sent := append(clone(hello), payload...)
			go c.Write(sent)
			got := make([]byte, len(sent))
			if _, err := io.ReadFull(c, got); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, sent) {
				errs <- io.ErrShortBuffer
			}
		})
	}
	wg.Wait()
	close(errs)
	close(held)
	for err := range errs {
		t.Fatalf("a connection's %d MiB did not come back intact: %v", size>>20, err)
	}
	defer func() {
		for c := range held {
			c.Close()
		}
	}()
	// Every connection is open and idle now.
	if got := pipes(t) - before; got > freePipes {
		t.Errorf("%d idle relayed connections hold %d pipes; want at most the %d the pool keeps", conns, got, freePipes)
	}
}
