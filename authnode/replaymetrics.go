package authnode

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// registerReplayCache exports v's replay cache occupancy and evictions,
// read when scraped, on reg (nil: nowhere).
func registerReplayCache(reg prometheus.Registerer, v *negotiate.Validator) error {
	if reg == nil {
		return nil
	}
	const ns, sub = "iwalb", "authnode"
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "replay_cache_entries",
			Help: "Authenticators remembered against replay (kerberos.replay_cache_size at most).",
		}, func() float64 { live, _ := v.ReplayCacheStats(); return float64(live) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "replay_cache_evictions_total",
			Help: "Authenticators of users at their replay quota forgotten early to make room in a full replay cache; each could then be replayed. Raise kerberos.replay_cache_size if it grows.",
		}, func() float64 { _, n := v.ReplayCacheStats(); return float64(n) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
