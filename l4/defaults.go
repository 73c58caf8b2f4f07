package l4

import "time"

// Defaults of the Config fields of the same names, for a zero value. The
// config package uses them too, so that each is written once.
const (
	// DefaultPeekTimeout bounds the wait for a PROXY header and the
	// ClientHello.
	DefaultPeekTimeout = 5 * time.Second
	// DefaultDialTimeout bounds a dial to a backend and its first write.
	DefaultDialTimeout = 5 * time.Second
	// DefaultIdleTimeout closes a relayed connection quiet both ways.
	DefaultIdleTimeout = 10 * time.Minute
	// DefaultDialAttempts is how many backends a connection may try.
	DefaultDialAttempts = 3
	// DefaultMaxHelloSize is the most bytes of records a ClientHello may
	// take: post-quantum key shares and large session tickets fit.
	DefaultMaxHelloSize = 16 << 10
	// MaxHelloSizeLimit is the most MaxHelloSize may be.
	MaxHelloSizeLimit = 64 << 10
)
