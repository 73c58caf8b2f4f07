package authnode

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/iwalb/iwalb/authnode/store"
)

// storeChecker is a shared store that can prove itself reachable.
type storeChecker interface {
	Check(ctx context.Context) error
}

// openRedis makes the connection to Redis that c describes. Nothing is
// dialled yet.
func openRedis(c RedisConfig) (*store.Redis, error) {
	sc := c.RedisConfig
	if f := c.TLSFiles; f != nil {
		t := &tls.Config{ServerName: f.ServerName, MinVersion: tls.VersionTLS12}
		var err error
		if f.CAFile != "" {
			if t.RootCAs, err = loadCertPool(f.CAFile); err != nil {
				return nil, fmt.Errorf("redis CA: %w", err)
			}
		}
		if f.CertFile != "" || f.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("redis client certificate %s and key %s: %w", f.CertFile, f.KeyFile, err)
			}
			t.Certificates = []tls.Certificate{cert}
		}
		sc.TLS = t
	}
	r, err := store.NewRedis(sc)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return r, nil
}
