package directory

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestUniqueSortedSIDs: sorting a PAC's SIDs by their RIDs within the
// user's domain gives uniqueSorted's order, with other domains', well-known
// and malformed SIDs mixed in, duplicates, and prefixes of the domain.
func TestUniqueSortedSIDs(t *testing.T) {
	const domain = "S-1-5-21-10-20-30"
	rng := rand.New(rand.NewPCG(3, 4))
	pool := []string{"S-1-5-32-545", "S-1-18-1", "S-1-5-21-10-20-3-1000", "S-1-5-21-10-20-30", "S-1-5-21-10-20-30-",
		"S-1-5-21-10-20-301-5", "S-1-5-21-10-20-30-", "", "x", "S-1-5-21-10-20-30-1-2",
		"S-1-5-21-10-20-30-12345678901", "S-1-5-21-10-20-30-4294967295", "S-1-5-21-10-20-30-007", "S-1-5-21-10-20-30-9x"}
	for range 500 {
		var sids []string
		for range rng.IntN(60) {
			if rng.IntN(4) == 0 {
				sids = append(sids, pool[rng.IntN(len(pool))])
			} else {
				sids = append(sids, fmt.Sprintf("%s-%d", domain, rng.IntN(3000)))
			}
		}
		want := uniqueSorted(sids)
		if got := uniqueSortedSIDs(sids, domain); !slices.Equal(got, want) {
			t.Fatalf("uniqueSortedSIDs(%q) = %q, want %q", sids, got, want)
		}
	}
}

// BenchmarkSortSIDs: a PAC's 1,100 group SIDs, shuffled, sorted the plain
// way and by RID within the domain.
func BenchmarkSortSIDs(b *testing.B) {
	const domain = "S-1-5-21-1004336348-1177238915-682003330"
	rng := rand.New(rand.NewPCG(5, 6))
	var sids []string
	for i := range 1100 {
		sids = append(sids, fmt.Sprintf("%s-%d", domain, 5000+i))
	}
	sids = append(sids, "S-1-18-1", "S-1-5-32-545")
	rng.Shuffle(len(sids), func(i, j int) { sids[i], sids[j] = sids[j], sids[i] })
	b.Run("uniqueSorted", func(b *testing.B) {
		for b.Loop() {
			uniqueSorted(sids)
		}
	})
	b.Run("uniqueSortedSIDs", func(b *testing.B) {
		for b.Loop() {
			uniqueSortedSIDs(sids, domain)
		}
	})
}
