// Package authnode is the HTTPS auth node: it performs SPNEGO/Kerberos with
// a keytab, confirms the user in Active Directory, issues one-time SSO tokens
// and sessions, and serves the redeem API that applications call.
//
// It is not a load balancer and does not know about the front doors: the L4
// balancer and the L7 redirector reach it as an ordinary HTTPS backend.
package authnode

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Options carries what a Node gets from its host process rather than from
// its configuration.
type Options struct {
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's metrics; nil means none are exported.
	Registerer prometheus.Registerer
}

// Node is one auth node. Create it with New and start it with Run.
type Node struct {
	cfg  Config
	opts Options
}

// New checks cfg, loads the keytab and certificates and returns a Node that
// is ready to Run. Nothing listens until Run.
func New(cfg Config, opts Options) (*Node, error) {
	return nil, errors.New("authnode: not implemented yet")
}

// Run listens and serves until ctx is cancelled, then shuts down gracefully.
func (n *Node) Run(ctx context.Context) error {
	return errors.New("authnode: not implemented yet")
}
