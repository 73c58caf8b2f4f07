package authnode

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jcmturner/gokrb5/v8/keytab"

	"github.com/iwalb/iwalb/authnode/negotiate"
)

// keySet is the keys a node accepts tickets with at one moment. It does
// not change; a keytab reload makes another.
type keySet struct {
	// validator checks tickets with the current and the retired keys.
	validator ticketValidator
	// path and sum name the keytab file and the SHA-256 of the content
	// the current keys were read from.
	path string
	sum  [sha256.Size]byte
	// current are the keytab file's keys: what the self-test proves.
	current *keytab.Keytab
	// retired are the keys kept after a rotation, and since when.
	retired []negotiate.RetiredKey
}

// kvnos lists the key versions held for the principal spn ("HTTP/x@REALM"
// as the keytab spells it): current, then retired.
func (k *keySet) kvnos(spn string) (current, retired string) {
	var cur, ret []int
	if k.current != nil {
		for _, e := range negotiate.Summarize(k.current) {
			if strings.EqualFold(e.Principal+"@"+e.Realm, spn) && !slices.Contains(cur, e.KVNO) {
				cur = append(cur, e.KVNO)
			}
		}
	}
	for _, r := range k.retired {
		if strings.EqualFold(r.Principal+"@"+r.Realm, spn) && !slices.Contains(ret, r.KVNO) {
			ret = append(ret, r.KVNO)
		}
	}
	return joinInts(cur), joinInts(ret)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// loadKeysLocked makes kt (read from a file whose content has the SHA-256
// sum) the current keys of the ring, keeps the keys prev had and kt lacks
// for s.cfg.PreviousKeysTTL, drops the ones kept longer, logs what changed,
// and returns the new key set. why says what loaded it (start, reload,
// file changed). The caller holds n.mu.
func (n *Node) loadKeysLocked(prev *keySet, kt *keytab.Keytab, sum [sha256.Size]byte, s *settings, now time.Time, why string) *keySet {
	log := s.log
	if prev == nil || prev.sum != sum {
		retired, dropped := n.ring.Rotate(kt, now)
		n.metrics.keytabLoads.WithLabelValues("ok").Inc()
		log.Info("keytab loaded", "keytab", s.cfg.Keytab, "why", why, "entries", len(kt.Entries), "retired", len(retired))
		for _, k := range negotiate.Summarize(kt) {
			log.Info("keytab entry", "principal", k.Principal+"@"+k.Realm, "kvno", k.KVNO, "enctype", k.EtypeName)
		}
		for _, k := range retired {
			if s.cfg.PreviousKeysTTL < 0 {
				break // none kept: the drop is logged below
			}
			log.Info("keytab key retired: accepted until its tickets expire", "principal", k.Principal+"@"+k.Realm,
				"kvno", k.KVNO, "enctype", k.EtypeName, "until", k.Since.Add(s.cfg.PreviousKeysTTL).UTC().Format(time.RFC3339))
		}
		n.logDropped(log, dropped, "more keys retired than are kept")
	}
	n.logDropped(log, n.ring.Expire(now, s.cfg.PreviousKeysTTL), "kept for previous_keys_ttl")
	return &keySet{
		validator: n.base.WithKeytab(n.ring.Keytab()),
		path:      s.cfg.Keytab,
		sum:       sum,
		current:   n.ring.Current(),
		retired:   n.ring.Retired(),
	}
}

func (n *Node) logDropped(log *slog.Logger, keys []negotiate.RetiredKey, why string) {
	for _, k := range keys {
		log.Info("keytab key dropped: tickets for it are refused now", "principal", k.Principal+"@"+k.Realm,
			"kvno", k.KVNO, "enctype", k.EtypeName, "why", why, "retired_at", k.Since.UTC().Format(time.RFC3339))
	}
}

// keytabLoop reads the keytab file every KeytabCheckInterval and loads
// it when its content changed, and drops retired keys when their time is
// up, until ctx ends. Nodes made without a keytab have nothing to watch.
func (n *Node) keytabLoop(ctx context.Context) {
	if n.ring == nil {
		return
	}
	for {
		s := n.cur.Load()
		wait := s.cfg.KeytabCheckInterval
		n.mu.Lock()
		next := n.ring.NextExpiry(s.cfg.PreviousKeysTTL)
		n.mu.Unlock()
		if !next.IsZero() {
			wait = min(wait, max(time.Until(next), 0))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.keysChanged:
			// Settings or keys changed: what to wait for may have too.
			t.Stop()
			continue
		case <-t.C:
		}
		n.checkKeytab(time.Now())
	}
}

// checkKeytab loads the keytab file when its content differs from the
// keys' (a new export, a file rewritten in place by ktutil, or replaced),
// and drops the retired keys whose time is up. Content that cannot be read
// or parsed, such as a file being written, changes nothing and is warned
// about once until it changes.
func (n *Node) checkKeytab(now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.cur.Load()
	k := s.keys
	kt, sum, err := negotiate.ReadKeytab(k.path)
	var keys *keySet
	switch {
	case err != nil:
		if msg := err.Error(); msg != n.keytabProblem {
			n.keytabProblem = msg
			n.metrics.keytabLoads.WithLabelValues("failed").Inc()
			s.log.Warn("keytab file cannot be loaded; keeping the keys in use until it can", "keytab", k.path, "err", msg)
		}
	case sum != k.sum:
		n.keytabProblem = ""
		keys = n.loadKeysLocked(k, kt, sum, s, now, "file changed")
	default:
		n.keytabProblem = ""
	}
	if keys == nil {
		// The file is as loaded (or unusable): only the retired keys
		// may have had their time.
		dropped := n.ring.Expire(now, s.cfg.PreviousKeysTTL)
		if len(dropped) == 0 {
			return
		}
		n.logDropped(s.log, dropped, "kept for previous_keys_ttl")
		keys = &keySet{validator: n.base.WithKeytab(n.ring.Keytab()), path: k.path, sum: k.sum, current: n.ring.Current(), retired: n.ring.Retired()}
	}
	next := *s
	next.keys = keys
	n.install(&next)
	signal(n.recheck)
}
