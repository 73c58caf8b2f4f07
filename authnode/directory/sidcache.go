package directory

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/iwalb/iwalb/authnode/internal/sid"
)

// sidCache remembers what the directory said a group SID names: a group's
// sAMAccountName, or nothing (no group under BaseDN has the SID). It holds
// at most max entries; the least recently used give way. Names expire after
// ttl, absences after neg.
//
// Concurrent logins that lack the same SIDs do not each search for them: a
// SID being searched for has a flight, and a login that needs it waits for
// that flight's answer instead. Without this, a cold cache at the morning
// rush would send one search per login for the groups every user shares
// (Domain Users and the like), PoolSize of them at once.
type sidCache struct {
	max      int
	ttl, neg time.Duration

	mu       sync.Mutex
	entries  map[string]*list.Element // of *sidEntry
	lru      list.List                // front: most recently used
	inflight map[string]*flight
}

type sidEntry struct {
	sid     string
	name    string // "" when no group under BaseDN has the SID
	expires time.Time
}

// flight is one search for SIDs. names and err are set before done is
// closed, and only read after.
type flight struct {
	done  chan struct{}
	names map[string]string // SID → sAMAccountName, of the groups found
	err   error
}

func newSIDCache(max int, ttl, neg time.Duration) *sidCache {
	return &sidCache{max: max, ttl: ttl, neg: neg, entries: make(map[string]*list.Element), inflight: make(map[string]*flight)}
}

// get returns the name remembered for s and whether a live entry exists.
// c.mu must be held.
func (c *sidCache) get(s string, now time.Time) (string, bool) {
	el, ok := c.entries[s]
	if !ok {
		return "", false
	}
	e := el.Value.(*sidEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, s)
		return "", false
	}
	c.lru.MoveToFront(el)
	return e.name, true
}

// put remembers the answer for each of sids (a name in names, or none).
// c.mu must be held.
func (c *sidCache) put(sids []string, names map[string]string, now time.Time) {
	for _, s := range sids {
		name := names[s]
		exp := now.Add(c.ttl)
		if name == "" {
			exp = now.Add(c.neg)
		}
		if el, ok := c.entries[s]; ok {
			e := el.Value.(*sidEntry)
			e.name, e.expires = name, exp
			c.lru.MoveToFront(el)
			continue
		}
		c.entries[s] = c.lru.PushFront(&sidEntry{sid: s, name: name, expires: exp})
		for len(c.entries) > c.max {
			old := c.lru.Back()
			c.lru.Remove(old)
			delete(c.entries, old.Value.(*sidEntry).sid)
		}
	}
}

// land records the outcome of f, the flight for sids, and wakes its
// waiters.
func (c *sidCache) land(f *flight, sids []string, names map[string]string, err error, now time.Time) {
	c.mu.Lock()
	if err == nil {
		c.put(sids, names, now)
	}
	for _, s := range sids {
		if c.inflight[s] == f {
			delete(c.inflight, s)
		}
	}
	c.mu.Unlock()
	f.names, f.err = names, err
	close(f.done)
}

// Len returns how many SIDs the cache remembers.
func (c *sidCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// SIDCacheLen returns how many group SIDs the cache remembers (named or
// known to name no group), for a gauge.
func (d *Directory) SIDCacheLen() int { return d.sids.Len() }

// awaited is a SID whose answer another login's flight will bring.
type awaited struct {
	f   *flight
	sid string
}

// groupNames returns the sAMAccountName of each of sids (sorted, distinct)
// that is a group under BaseDN, sorted. Only SIDs of domain (the user's
// domain SID) are looked up: well-known SIDs (S-1-5-32-…, S-1-18-…) and
// other domains' groups cannot be groups of this directory, and are left to
// the caller as SIDs. It searches only for the SIDs that the cache lacks and
// that no other login is searching for already; it waits for those.
func (d *Directory) groupNames(ctx context.Context, sids []string, domain string, ops *int) ([]string, error) {
	c := d.sids
	names := make([]string, 0, len(sids))
	var ask []string
	var waits []awaited
	mine := &flight{done: make(chan struct{})}
	now := d.now()
	c.mu.Lock()
	for _, s := range sids {
		rid, ok := strings.CutPrefix(s, domain)
		if !ok || len(rid) < 2 || rid[0] != '-' || strings.IndexByte(rid[1:], '-') >= 0 {
			continue
		}
		if name, ok := c.get(s, now); ok {
			if name != "" {
				names = append(names, name)
			}
			continue
		}
		if f := c.inflight[s]; f != nil {
			waits = append(waits, awaited{f, s})
			continue
		}
		c.inflight[s] = mine
		ask = append(ask, s)
	}
	c.mu.Unlock()

	if len(ask) > 0 {
		found, err := d.fly(ctx, mine, ask, ops)
		if err != nil {
			return nil, err
		}
		for _, s := range ask {
			if n := found[s]; n != "" {
				names = append(names, n)
			}
		}
	}
	// A flight that failed (its login's client went away, say) leaves its
	// SIDs to this login, which asks for them itself once.
	var again []string
	for _, w := range waits {
		select {
		case <-w.f.done:
		case <-ctx.Done():
			return nil, d.wrap(ctx, "wait for another login's search for group SIDs", ctx.Err())
		}
		if w.f.err != nil {
			again = append(again, w.sid)
		} else if n := w.f.names[w.sid]; n != "" {
			names = append(names, n)
		}
	}
	if len(again) > 0 {
		found, err := d.searchGroups(ctx, again, ops)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.put(again, found, d.now())
		c.mu.Unlock()
		for _, s := range again {
			if n := found[s]; n != "" {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// errFlightLost: the login searching for some SIDs stopped without an
// answer (it panicked); its waiters ask for them themselves.
var errFlightLost = errors.New("the search for these group SIDs ended without an answer")

// fly searches for sids as the flight f, and lands f whatever happens, so
// that no later login waits for it in vain.
func (d *Directory) fly(ctx context.Context, f *flight, sids []string, ops *int) (map[string]string, error) {
	landed := false
	defer func() {
		if !landed {
			d.sids.land(f, sids, nil, errFlightLost, d.now())
		}
	}()
	found, err := d.searchGroups(ctx, sids, ops)
	d.sids.land(f, sids, found, err, d.now())
	landed = true
	return found, err
}

// searchGroups returns the sAMAccountName of each of sids that is a group
// under BaseDN, by SID: one search for every sidBatch SIDs, an OR of
// objectSid equality filters (objectSid is indexed), paged.
func (d *Directory) searchGroups(ctx context.Context, sids []string, ops *int) (map[string]string, error) {
	found := make(map[string]string, len(sids))
	for batch := range slices.Chunk(sids, d.sidBatch) {
		want := make(map[string]bool, len(batch))
		var f strings.Builder
		f.Grow(20 + len(batch)*(12+3*28))
		f.WriteString("(&(objectClass=group)(|")
		for _, s := range batch {
			raw, err := parseSID(s)
			if err != nil {
				continue // names no group; remembered so
			}
			want[s] = true
			f.WriteString("(objectSid=")
			f.WriteString(escapeBytes(raw))
			f.WriteString(")")
		}
		f.WriteString("))")
		if len(want) == 0 {
			continue
		}
		req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
			0, 0, false, f.String(), []string{"objectSid", "sAMAccountName"}, nil)
		err := d.do(ctx, d.slots, ops, func(c *ldap.Conn) error {
			return d.pagedSearch(c, req, len(want), ops, func(e *ldap.Entry) {
				s, err := sid.FromBinary(e.GetRawAttributeValue("objectSid"))
				if n := e.GetAttributeValue("sAMAccountName"); err == nil && want[s] && n != "" {
					found[s] = n
				}
			})
		})
		if err != nil {
			return nil, d.wrap(ctx, fmt.Sprintf("search for %d group SIDs", len(want)), err)
		}
	}
	return found, nil
}

// pagedSearch runs req page by page (AD answers at most MaxPageSize entries,
// 1000 by default, to one request), calls fn with each entry and counts each
// page in *ops. most is how many entries req can match: a server that pages
// on beyond them is refused. AD's referrals to other partitions are not
// entries and are ignored.
func (d *Directory) pagedSearch(c *ldap.Conn, req *ldap.SearchRequest, most int, ops *int, fn func(*ldap.Entry)) error {
	paging := ldap.NewControlPaging(d.pageSize)
	req.Controls = []ldap.Control{paging}
	for page := 0; ; page++ {
		if page > most/int(d.pageSize)+1 {
			return fmt.Errorf("paged search: the server sent page %d for at most %d entries", page+1, most)
		}
		*ops++
		res, err := c.Search(req)
		if err != nil {
			return err
		}
		for _, e := range res.Entries {
			fn(e)
		}
		p, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
		if !ok || len(p.Cookie) == 0 {
			return nil
		}
		paging.SetCookie(p.Cookie)
	}
}
