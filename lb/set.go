package lb

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Set is the group of pools a process runs; both front doors look pools up
// in it by name, and its Status is the one health view they share. A Set is
// immutable once built: a reload builds a new Set.
type Set struct {
	pools  []*Pool
	byName map[string]*Pool
}

// NewSet groups pools; their names must be unique.
func NewSet(pools ...*Pool) (*Set, error) {
	s := &Set{byName: make(map[string]*Pool, len(pools))}
	var errs []error
	for _, p := range pools {
		if s.byName[p.name] != nil {
			errs = append(errs, fmt.Errorf("pool %q defined twice", p.name))
			continue
		}
		s.byName[p.name] = p
		s.pools = append(s.pools, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Pool returns the pool called name, or nil.
func (s *Set) Pool(name string) *Pool { return s.byName[name] }

// Pools returns the pools in the order given to NewSet. The slice must not
// be modified.
func (s *Set) Pools() []*Pool { return s.pools }

// Status returns a snapshot of every pool.
func (s *Set) Status() []PoolStatus {
	out := make([]PoolStatus, len(s.pools))
	for i, p := range s.pools {
		out[i] = p.Status()
	}
	return out
}

// Run runs every pool's health checks until ctx is cancelled and returns
// when all have stopped.
func (s *Set) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range s.pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Run(ctx)
		}()
	}
	wg.Wait()
	return nil
}
