package testkit

import (
	"runtime"
	"testing"
)

// AllocBudget bounds what a parser may allocate for n bytes of input:
// PerByte*n + Fixed, linear in n, so that one that copies its input once
// per record or field fails a fuzz target instead of only running slowly.
type AllocBudget struct {
	PerByte, Fixed int
}

// Within runs fn, which works on n bytes of input, and fails t when it
// allocated more than the budget.
func (b AllocBudget) Within(t testing.TB, what string, n int, fn func()) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(b.PerByte*n+b.Fixed) {
		t.Fatalf("%s of %d bytes allocated %d bytes, over the budget of %d per byte + %d", what, n, alloc, b.PerByte, b.Fixed)
	}
}
