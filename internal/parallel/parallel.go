// Package parallel splits loops over the machine's cores.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// running counts the goroutines For and Items have started that have not finished. A loop started while
// they already occupy every core runs on its caller: nested loops (a product inside a loop over experts)
// then split no further than the cores, and a core that frees up is used by the next loop that starts.
var running atomic.Int32

// free returns how many more goroutines would find a core of their own, at most want.
func free(want int) int {
	return min(want, runtime.GOMAXPROCS(0)-int(running.Load()))
}

// For calls fn on disjoint ranges [lo, hi) that together cover [0, n). Ranges hold at least grain items,
// so cheap loops are not split finer than is worth a goroutine; with one range fn runs on the caller.
// The ranges depend on n, grain and GOMAXPROCS only, never on what else runs: a loop whose results
// depend on its ranges (a product whose kernels depend on the rows they are given) gives the same bits
// whether the cores are free or busy. Where fewer cores are free than there are ranges, the free ones
// take the ranges in turn, and the caller takes them all when none is.
func For(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	most := (n + grain - 1) / grain
	if most <= 1 { // GOMAXPROCS takes a lock: not worth it for a loop that stays on the caller
		fn(0, n)
		return
	}
	parts := min(most, runtime.GOMAXPROCS(0))
	chunk := (n + parts - 1) / parts
	parts = (n + chunk - 1) / chunk
	Items(parts, func(i int) { fn(i*chunk, min((i+1)*chunk, n)) })
}

// Items calls fn(i) for every i in [0, n), each worker taking the next item when it finishes one: for items
// of uneven cost, listed costliest first so that none is left for last.
func Items(n int, fn func(i int)) {
	workers := 0
	if n > 1 {
		workers = free(n)
	}
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		running.Add(1)
		go func() {
			defer wg.Done()
			defer running.Add(-1)
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
