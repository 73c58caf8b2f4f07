//go:build !linux

package l4

import (
	"errors"
	"syscall"
	"time"
)

// parkable reports whether this platform can park relays: here, relays
// always wait in their goroutines.
const parkable = false

type parker struct{}

func newParker(time.Duration) *parker { return &parker{} }

func (p *parker) park(*tunnel, int, syscall.RawConn) (uint64, error) {
	return 0, errors.New("park relay: not supported on this platform")
}

func (p *parker) forget(uint64) {}
