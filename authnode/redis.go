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
	sc := store.RedisConfig{
		Addrs: c.Addrs, MasterName: c.MasterName, Username: c.Username, Password: c.Password,
		SentinelUsername: c.SentinelUsername, SentinelPassword: c.SentinelPassword,
		DB: c.DB, Prefix: c.Prefix,
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		PoolSize: c.PoolSize,
	}
	if c.TLS {
		t := &tls.Config{ServerName: c.ServerName, MinVersion: tls.VersionTLS12}
		var err error
		if c.CAFile != "" {
			if t.RootCAs, err = loadCertPool(c.CAFile); err != nil {
				return nil, fmt.Errorf("redis CA: %w", err)
			}
		}
		if c.CertFile != "" || c.KeyFile != "" {
			cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("redis client certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
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
