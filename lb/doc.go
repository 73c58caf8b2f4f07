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
//	b, release, err := pool.Pick(clientIP)
//	if err != nil { ... } // errors.Is(err, lb.ErrNoHealthyBackend)
//	defer release()
//	conn, err := dial(b.Addr)
//	if err != nil { pool.ReportDialFailure(b, err) } else { pool.ReportDialSuccess(b) }
//
// Package lb is not a proxy: it never dials for traffic, and it knows nothing
// of TLS, HTTP or Kerberos. Probes that speak those protocols are injected as
// a Prober (see package lb/probe); lb itself only ships the TCP-connect probe.
package lb
