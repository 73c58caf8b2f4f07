package authnode

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the auth node's Prometheus series. They are registered on the
// Registerer from Options; with none they still count, unexported.
type metrics struct {
	logins          *prometheus.CounterVec
	tickets         *prometheus.CounterVec
	negotiateKinds  *prometheus.CounterVec
	headerBytes     prometheus.Histogram
	kerberosSeconds prometheus.Histogram
	ldapSeconds     *prometheus.HistogramVec
	ntlmChallenges  prometheus.Counter
	ntlmSeconds     prometheus.Histogram
	ldapOpsPerLogin prometheus.Histogram
	tokensIssued    prometheus.Counter
	tokensRedeemed  prometheus.Counter
	redeemFailures  *prometheus.CounterVec
	tokensExpired   prometheus.Counter
	sessions        *prometheus.CounterVec
	clockOffset     prometheus.Gauge
	ready           *prometheus.GaugeVec
	storeFull       *prometheus.CounterVec
	connsRefused    *prometheus.CounterVec
	keytabLoads     *prometheus.CounterVec
	formSignins     *prometheus.CounterVec
	formOffered     *prometheus.CounterVec
	oidcRequests    *prometheus.CounterVec
}

const ns, sub = "iwalb", "authnode"

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "logins_total",
			Help: "Login attempts at the SSO endpoint by outcome (success, failure), reason and mechanism: kerberos, ntlm, password (the sign-in form), cookie (the node's sign-in session) or none (no token, or one that could not be read).",
		}, []string{"outcome", "reason", "mechanism"}),
		tickets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kerberos_tickets_total",
			Help: "Kerberos Negotiate tokens by the keytab principal their ticket was for (other: an SPN the keytab does not hold, or none readable) and result (ok, or the failure reason). kvno, enctype or decrypt for a keytab principal may mean a stale keytab, though anyone can send such tickets; the KDC self-test proves it.",
		}, []string{"spn", "result"}),
		negotiateKinds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "negotiate_tokens_total",
			Help: "Negotiate blobs received, by kind (kerberos, spnego_ntlm, ntlm, spnego_other, garbage).",
		}, []string{"kind"}),
		headerBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "negotiate_header_bytes",
			Help:    "Size of Authorization: Negotiate headers; large PACs push it past 16 KiB.",
			Buckets: []float64{512, 1024, 2048, 4096, 8192, 12288, 16384, 32768, 49152, 65536, 131072},
		}),
		kerberosSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "kerberos_validation_seconds",
			Help:    "Time to validate a SPNEGO/Kerberos token.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
		ldapSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "ldap_seconds",
			Help:    "Time of Active Directory operations by operation (lookup, check, time) and result (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"op", "result"}),
		ldapOpsPerLogin: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "ldap_operations_per_login",
			Help:    "LDAP requests a login sent to the directory (searches, each page counted, and the StartTLS and bind of a connection it opened), for every login that reached the directory. 1 once the pool and the SID cache are warm, with required_group_check ticket.",
			Buckets: []float64{0, 1, 2, 3, 4, 6, 8, 16, 32},
		}),
		tokensIssued: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "tokens_issued_total",
			Help: "One-time SSO tokens issued.",
		}),
		tokensRedeemed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "tokens_redeemed_total",
			Help: "One-time SSO tokens redeemed by an application.",
		}),
		redeemFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "token_redeem_failures_total",
			Help: "Failed redeem calls by reason (unauthorized, malformed, unknown, expired, store_full, store_unavailable: a shared store could not be reached, store).",
		}, []string{"reason"}),
		tokensExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "tokens_expired_total",
			Help: "One-time SSO tokens that expired unredeemed (counted by the in-memory store's sweep).",
		}),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "session_events_total",
			Help: "Session events: created, validated, rejected, ended (application sessions, from redeem); sso_started, sso_reused, sso_ended (the node's own sign-in sessions, held by the browser's cookie).",
		}, []string{"event"}),
		clockOffset: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "dc_clock_offset_seconds",
			Help: "Domain controller's clock minus this node's clock (rootDSE currentTime; 1 s resolution).",
		}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ready",
			Help: "1 when the readiness check passes, per check (keytab, ldap, clock, kdc_self_test, store with a shared store) and overall.",
		}, []string{"check"}),
		storeFull: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "store_full_total",
			Help: "Tokens (at login) and sessions (at redeem) refused because the store was at store.max_entries or store.max_bytes, by store.",
		}, []string{"store"}),
		connsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "connections_refused_total",
			Help: "Connections reset at accept, by reason: over_limit (max_conns open), over_source_limit (max_conns_per_source from one address).",
		}, []string{"reason"}),
		keytabLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "keytab_loads_total",
			Help: "Keytab contents loaded (ok: at start, at a reload or when the file changed) and keytab files that could not be loaded while watched (failed: unreadable, or being written; once per content), by result. The keys in use stay until a load succeeds.",
		}, []string{"result"}),
		formSignins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "form_signins_total",
			Help: "Password sign-ins through the form, by outcome: success, bad_credentials (the KDC refused the name and password), throttled (refused without asking the KDC: too many failures for the account or the client address), bad_request (a missing field, or an expired or forged form), kdc_unavailable, or failed (the password was right, but the login failed afterwards: see iwalb_authnode_logins_total).",
		}, []string{"outcome"}),
	}
	m.ntlmChallenges = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "ntlm_challenges_total",
		Help: "NTLM challenges sent (the first leg of an NTLM login; the login itself counts in iwalb_authnode_logins_total{mechanism=\"ntlm\"}).",
	})
	m.ntlmSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: ns, Subsystem: sub, Name: "ntlm_check_seconds",
		Help:    "Time to have an NTLM answer checked by the domain through ntlm_auth, a helper's start included.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.oidcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "oidc_requests_total",
		Help: "Requests to the OpenID Connect provider by endpoint (discovery, jwks, authorize, token, userinfo, end_session) and HTTP status: authorize's 302 is a code or an error sent back to the relying party (the sign-ins themselves count in iwalb_authnode_logins_total), token's 400 and 401 are refused redemptions and client authentications.",
	}, []string{"endpoint", "code"})
	m.formOffered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: ns, Subsystem: sub, Name: "form_offered_total",
		Help: "Visits of the SSO path answered with the sign-in form, by why: network (a client outside form.negotiate_networks, never offered Negotiate), no_negotiate (the browser sent no Negotiate after the challenge), ntlm (it offered NTLM).",
	}, []string{"why"})
	for _, o := range []string{"network", "no_negotiate", "ntlm"} {
		m.formOffered.WithLabelValues(o)
	}
	for _, o := range []string{"success", "bad_credentials", "throttled", "bad_request", "kdc_unavailable", "failed"} {
		m.formSignins.WithLabelValues(o)
	}
	m.keytabLoads.WithLabelValues("ok")
	m.keytabLoads.WithLabelValues("failed")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.logins, m.tickets, m.negotiateKinds, m.headerBytes, m.kerberosSeconds, m.ldapSeconds, m.ldapOpsPerLogin,
		m.tokensIssued, m.tokensRedeemed, m.redeemFailures, m.tokensExpired, m.sessions,
		m.clockOffset, m.ready, m.storeFull, m.connsRefused, m.keytabLoads, m.formSignins, m.formOffered,
		m.ntlmChallenges, m.ntlmSeconds, m.oidcRequests,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// storeStats is what the in-memory store tells of its fill.
type storeStats interface {
	Len() int
	Bytes() int64
}

// registerGauges exports the series read when scraped: the listener's open
// connections, the keys held, the SID cache's and the in-memory stores'
// fill. Each reads the settings in force when scraped.
func (n *Node) registerGauges(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	keys := func(retired bool) float64 {
		k := n.cur.Load().keys
		if k.current == nil {
			return 0 // a node made without a keytab (tests)
		}
		if retired {
			return float64(len(k.retired))
		}
		return float64(len(k.current.Entries))
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "connections_open",
			Help: "Connections accepted and not yet closed; max_conns bounds it.",
		}, func() float64 { return float64(n.conns.Open()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "sid_cache_entries",
			Help: "Group SIDs whose name (or absence from the directory) is remembered; ldap.sid_cache_size bounds it.",
		}, func() float64 {
			if c, ok := n.cur.Load().dir.dir.(interface{ SIDCacheLen() int }); ok {
				return float64(c.SIDCacheLen())
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "keytab_keys", ConstLabels: prometheus.Labels{"state": "current"},
			Help: "Keys that tickets are accepted with: current (the keytab file's) and retired (older key versions a newer keytab no longer holds, kept for kerberos.previous_keys_ttl).",
		}, func() float64 { return keys(false) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "keytab_keys", ConstLabels: prometheus.Labels{"state": "retired"},
			Help: "Keys that tickets are accepted with: current (the keytab file's) and retired (older key versions a newer keytab no longer holds, kept for kerberos.previous_keys_ttl).",
		}, func() float64 { return keys(true) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "ntlm_helpers",
			Help: "ntlm_auth helper processes running (ntlm.max_helpers bounds them); 0 with NTLM off.",
		}, func() float64 {
			if nt := n.cur.Load().ntlm; nt != nil {
				return float64(nt.verifier.Stats().Running)
			}
			return 0
		}),
	}
	for _, s := range []struct {
		name  string
		store Store
	}{{"tokens", n.tokens}, {"sessions", n.sessions}} {
		st, ok := s.store.(storeStats)
		if !ok {
			continue
		}
		labels := prometheus.Labels{"store": s.name}
		cs = append(cs,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Subsystem: sub, Name: "store_entries", ConstLabels: labels,
				Help: "Entries in the in-memory store, expired ones kept for their grace included; store.max_entries bounds tokens and sessions together.",
			}, func() float64 { return float64(st.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: ns, Subsystem: sub, Name: "store_bytes", ConstLabels: labels,
				Help: "Bytes charged by the in-memory store (keys, values and a per-entry overhead); store.max_bytes bounds tokens and sessions together.",
			}, func() float64 { return float64(st.Bytes()) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
