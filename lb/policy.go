package lb

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// PolicyName names a selection policy in configuration.
type PolicyName string

// The selection policies.
const (
	// PolicyRoundRobin is smooth weighted round-robin: over any window of
	// total-weight picks each backend gets its weight's share, interleaved.
	PolicyRoundRobin PolicyName = "round_robin"
	// PolicyLeastConn picks the backend with the fewest active connections
	// relative to its weight.
	PolicyLeastConn PolicyName = "least_conn"
	// PolicyClientIPHash maps the client IP onto a hash ring, so a client
	// keeps its backend while that backend is usable, and losing a backend
	// moves only that backend's clients.
	PolicyClientIPHash PolicyName = "client_ip_hash"
)

// Policy chooses a backend for a new connection. A policy is built once per
// pool over the pool's backends and must be safe for concurrent use.
type Policy interface {
	// Select returns one backend for which usable returns true, or nil if
	// there is none.
	Select(client netip.Addr, usable func(*Backend) bool) *Backend
	// Name returns the policy's configuration name.
	Name() PolicyName
}

func newPolicy(name PolicyName, bs []*Backend) (Policy, error) {
	switch name {
	case "", PolicyRoundRobin:
		return NewRoundRobin(bs), nil
	case PolicyLeastConn:
		return NewLeastConn(bs), nil
	case PolicyClientIPHash:
		return NewHashRing(bs, 0), nil
	}
	return nil, fmt.Errorf("unknown policy %q (want %s, %s or %s)", name, PolicyRoundRobin, PolicyLeastConn, PolicyClientIPHash)
}

// RoundRobin is smooth weighted round-robin (the nginx algorithm): weights
// 5,1,1 yield a a b a c a a rather than a a a a a b c.
type RoundRobin struct {
	mu      sync.Mutex
	bs      []*Backend
	current []int
}

// NewRoundRobin returns a round-robin policy over bs.
func NewRoundRobin(bs []*Backend) *RoundRobin {
	return &RoundRobin{bs: bs, current: make([]int, len(bs))}
}

// Name returns PolicyRoundRobin.
func (r *RoundRobin) Name() PolicyName { return PolicyRoundRobin }

// Select implements Policy.
func (r *RoundRobin) Select(_ netip.Addr, usable func(*Backend) bool) *Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, total := -1, 0
	for i, b := range r.bs {
		if !usable(b) {
			continue
		}
		r.current[i] += b.Weight
		total += b.Weight
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	r.current[best] -= total
	return r.bs[best]
}

// LeastConn picks the usable backend with the lowest active/weight ratio;
// ties go round-robin so an idle pool still spreads its load.
type LeastConn struct {
	bs   []*Backend
	next atomic.Uint64
}

// NewLeastConn returns a least-connections policy over bs.
func NewLeastConn(bs []*Backend) *LeastConn { return &LeastConn{bs: bs} }

// Name returns PolicyLeastConn.
func (l *LeastConn) Name() PolicyName { return PolicyLeastConn }

// Select implements Policy.
func (l *LeastConn) Select(_ netip.Addr, usable func(*Backend) bool) *Backend {
	n := len(l.bs)
	if n == 0 {
		return nil
	}
	start := int(l.next.Add(1) % uint64(n))
	var best *Backend
	var bestActive int64
	for k := range n {
		b := l.bs[(start+k)%n]
		if !usable(b) {
			continue
		}
		a := b.active.Load()
		// a/b.Weight < bestActive/best.Weight, without division.
		if best == nil || a*int64(best.Weight) < bestActive*int64(b.Weight) {
			best, bestActive = b, a
		}
	}
	return best
}

// DefaultVirtualNodes is the number of ring points per unit of weight. With
// 160 points per node the share of each of three nodes stays within a few
// percent of a third.
const DefaultVirtualNodes = 160

// HashRing is consistent hashing of the client IP over a ring of virtual
// nodes. Points are derived from backend names, so every balancer built from
// the same configuration maps a client to the same backend.
type HashRing struct {
	points []ringPoint // sorted by hash
	n      int         // distinct backends
}

type ringPoint struct {
	hash uint64
	b    *Backend
}

// NewHashRing returns a hash ring over bs with vnodes points per unit of
// weight; vnodes <= 0 means DefaultVirtualNodes.
func NewHashRing(bs []*Backend, vnodes int) *HashRing {
	if vnodes <= 0 {
		vnodes = DefaultVirtualNodes
	}
	r := &HashRing{n: len(bs)}
	for _, b := range bs {
		for i := range vnodes * b.Weight {
			r.points = append(r.points, ringPoint{hash: hashString(fmt.Sprintf("%s#%d", b.Name, i)), b: b})
		}
	}
	slices.SortFunc(r.points, func(x, y ringPoint) int {
		switch {
		case x.hash < y.hash:
			return -1
		case x.hash > y.hash:
			return 1
		}
		return 0
	})
	return r
}

// Name returns PolicyClientIPHash.
func (r *HashRing) Name() PolicyName { return PolicyClientIPHash }

// Select walks the ring clockwise from the client's hash to the first
// usable backend.
func (r *HashRing) Select(client netip.Addr, usable func(*Backend) bool) *Backend {
	if len(r.points) == 0 {
		return nil
	}
	h := hashAddr(client)
	i, _ := slices.BinarySearchFunc(r.points, h, func(p ringPoint, h uint64) int {
		switch {
		case p.hash < h:
			return -1
		case p.hash > h:
			return 1
		}
		return 0
	})
	// Remember rejected backends so a walk past a down node does not call
	// usable for each of its many points.
	var rejected []*Backend
	for k := range len(r.points) {
		b := r.points[(i+k)%len(r.points)].b
		if slices.Contains(rejected, b) {
			continue
		}
		if usable(b) {
			return b
		}
		rejected = append(rejected, b)
		if len(rejected) == r.n {
			return nil
		}
	}
	return nil
}

// hashAddr hashes the client IP in its 16-byte form, so 192.0.2.1 and
// ::ffff:192.0.2.1 land on the same backend.
func hashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	h := fnv.New64a()
	h.Write(b[:])
	return mix64(h.Sum64())
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix64(h.Sum64())
}

// mix64 is the splitmix64 finaliser: FNV alone clusters for inputs that
// differ only in their last bytes (node#1, node#2), which skews the ring.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
