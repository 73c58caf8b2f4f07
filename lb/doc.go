// Package lb is the balancing core shared by iwalb's front doors: pools of
// backends, selection policies, active and passive health checks, connection
// accounting, drain, and a health view.
//
// Typical use:
//
//	pool, err := lb.NewPool(lb.Config{
//		Name:     "auth",
//		Policy:   lb.PolicyClientIPHash,
//		Backends: []lb.BackendConfig{{Name: "auth1", Addr: "10.0.0.1:443"}, {Name: "auth2", Addr: "10.0.0.2:443"}},
//		Health:   lb.HealthCheck{Interval: 2 * time.Second},
//	}, lb.Options{Logger: logger, Registerer: reg})
//	go pool.Run(ctx) // active health checks until ctx is cancelled
//
//	lease, err := pool.Acquire(clientIP) // a connection slot on a backend
//	if err != nil { ... }                // errors.Is(err, lb.ErrNoHealthyBackend)
//	conn, err := dial(lease.Backend().Addr)
//	if err != nil {
//		lease.Failed(err) // counts toward a passive ejection; frees the slot
//		...               // Acquire again, skipping lease.Backend()
//	}
//	lease.Dialed()
//	defer lease.Release() // when the connection ends
//
//	b, err := pool.Choose(clientIP, preferred) // a redirect: no slot is held
//
// Package lb is not a proxy: it never dials for traffic, and it knows nothing
// of TLS, HTTP or Kerberos. Probes that speak those protocols are injected as
// a Prober (see package lb/probe); lb itself only ships the TCP-connect probe.
package lb
