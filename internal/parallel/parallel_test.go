package parallel

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestForCoversEachIndexOnce(t *testing.T) {
	for _, c := range []struct{ n, grain int }{{0, 1}, {1, 1}, {7, 1}, {1000, 3}, {1000, 5000}, {10, 0}} {
		hits := make([]int32, c.n)
		For(c.n, c.grain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				atomic.AddInt32(&hits[i], 1)
			}
		})
		for i, h := range hits {
			if h != 1 {
				t.Fatalf("n=%d grain=%d: index %d visited %d times", c.n, c.grain, i, h)
			}
		}
	}
}

func TestItemsCoversEachIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 1000} {
		hits := make([]int32, n)
		Items(n, func(i int) { atomic.AddInt32(&hits[i], 1) })
		for i, h := range hits {
			if h != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, h)
			}
		}
	}
}

// TestNestedLoopsStayWithinTheCores checks that loops started inside loops that occupy every core run on
// their callers, and that every index is still visited once.
func TestNestedLoopsStayWithinTheCores(t *testing.T) {
	procs := runtime.GOMAXPROCS(0)
	var peak, now atomic.Int32
	hits := make([]int32, 64*64)
	Items(64, func(i int) {
		For(64, 1, func(lo, hi int) {
			if n := now.Add(1); n > peak.Load() {
				peak.Store(n)
			}
			for j := lo; j < hi; j++ {
				atomic.AddInt32(&hits[i*64+j], 1)
			}
			now.Add(-1)
		})
	})
	for k, h := range hits {
		if h != 1 {
			t.Fatalf("index %d visited %d times", k, h)
		}
	}
	if int(peak.Load()) > procs {
		t.Errorf("%d inner ranges ran at once on %d cores", peak.Load(), procs)
	}
}

// TestForRangesDoNotDependOnLoad checks that a loop started while every core is busy is given the ranges
// it is given on idle cores, so that kernels whose results depend on their ranges give the same bits.
func TestForRangesDoNotDependOnLoad(t *testing.T) {
	ranges := func(n, grain int) []string {
		var mu sync.Mutex
		var got []string
		For(n, grain, func(lo, hi int) {
			mu.Lock()
			got = append(got, fmt.Sprintf("%d-%d", lo, hi))
			mu.Unlock()
		})
		slices.Sort(got)
		return got
	}
	for _, c := range []struct{ n, grain int }{{1000, 1}, {10, 3}, {7, 1}} {
		idle := ranges(c.n, c.grain)
		var busy []string
		done := make(chan struct{})
		Items(runtime.GOMAXPROCS(0), func(i int) {
			if i > 0 { // the other cores stay busy until the loop has run
				<-done
				return
			}
			busy = ranges(c.n, c.grain)
			close(done)
		})
		if !slices.Equal(idle, busy) {
			t.Errorf("n=%d grain=%d: ranges %v on idle cores, %v on busy ones", c.n, c.grain, idle, busy)
		}
	}
}
