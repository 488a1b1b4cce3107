// Package parallel splits loops over the machine's cores.
package parallel

import (
	"runtime"
	"sync"
)

// For calls fn on disjoint ranges [lo, hi) that together cover [0, n). Ranges hold at least grain items,
// so cheap loops are not split finer than is worth a goroutine; with one range fn runs on the caller.
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
	workers := min(runtime.GOMAXPROCS(0), most)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
