package goldentest

import "testing"

// TestEveryCaseHasAKind: a case no test recognises would go untested, so the suite may hold none.
func TestEveryCaseHasAKind(t *testing.T) {
	kinds := map[Kind]int{}
	for _, name := range Names(t) {
		k, err := Open(t, name).KindOf()
		if err != nil {
			t.Error(err)
			continue
		}
		kinds[k]++
	}
	t.Logf("cases by kind: %v", kinds)
}
