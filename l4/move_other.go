//go:build !linux

package l4

import (
	"io"
	"net"
	"syscall"
)

// relayPools is empty where the relay copies with io.Copy.
type relayPools struct{}

func newRelayPools() *relayPools { return &relayPools{} }
func (p *relayPools) close()     {}

// mover moves one direction's bytes with io.Copy.
type mover struct {
	dst, src net.Conn
	lr       io.LimitedReader
	progress func(int64)
}

func newMover(_ *relayPools, dst, src net.Conn, progress func(int64)) *mover {
	m := &mover{dst: dst, src: src, progress: progress}
	m.lr.R = src
	return m
}

// move moves at most copyChunk bytes from src to dst, reporting them to
// progress; it returns io.EOF once src has ended.
func (m *mover) move() (int64, error) { return copyChunkOf(m.dst, m.src, &m.lr, m.progress) }

// source is nil: relays here cannot park.
func (m *mover) source() syscall.RawConn { return nil }
