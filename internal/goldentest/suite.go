package goldentest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Kind is what a case tests, which decides the test that replays it.
type Kind string

// The kinds of case, told apart by the manifest's hyper-parameters (see KindOf).
const (
	Forward   Kind = "forward"    // target forward: aux, final hidden and logits (aux_layer_ids_default)
	TTT       Kind = "ttt"        // one training-time-test step of a draft from given inputs (draft_config, K, lr)
	TTTLoss   Kind = "ttt_loss"   // the same step once per loss variant (variants), tensors named "<loss>.*"
	Vocab     Kind = "vocab"      // draft vocabulary mapping from token counts (vocab_size, draft_vocab_size)
	OnlineE2E Kind = "online_e2e" // target forward, vocabulary and several optimiser steps (target, steps)
)

// KindOf tells the kind of the case from its hyper-parameters.
func (c *Case) KindOf() (Kind, error) {
	hp := c.Manifest.Hyperparams
	has := func(k string) bool { _, ok := hp[k]; return ok }
	switch {
	case has("aux_layer_ids_default"):
		return Forward, nil
	case has("draft_config") && has("target") && has("steps"):
		return OnlineE2E, nil
	case has("draft_config") && has("K") && has("variants"):
		return TTTLoss, nil
	case has("draft_config") && has("K"):
		return TTT, nil
	case has("vocab_size") && has("draft_vocab_size"):
		return Vocab, nil
	}
	return "", fmt.Errorf("%s: no known kind of case has these hyper-parameters", c.Manifest.Case)
}

// Names lists the cases of the suite: every folder of Dir with a manifest.json, sorted.
func Names(t testing.TB) []string {
	t.Helper()
	dir := Dir(t)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("golden suite: %v", err)
	}
	var names []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), "manifest.json")); err == nil { // a case folder may be a link
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatalf("golden suite %s has no cases", dir)
	}
	return names
}

// ForEach runs f in a subtest for every case of kind in the suite; a suite without a case of kind skips
// the test, saying so.
func ForEach(t *testing.T, kind Kind, f func(t *testing.T, c *Case)) {
	t.Helper()
	ran := 0
	for _, name := range Names(t) {
		c := Open(t, name)
		k, err := c.KindOf()
		if err != nil {
			t.Fatal(err)
		}
		if k != kind {
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) { f(t, c) })
	}
	if ran == 0 {
		t.Skipf("SKIPPED, the golden suite %s has no %s case", Dir(t), kind)
	}
}

// First opens the first case of kind (in name order), for tests that need one
// case's data as a fixture rather than testing every case; it skips the test, saying so, when there is none.
func First(t testing.TB, kind Kind) *Case {
	t.Helper()
	for _, name := range Names(t) {
		c := Open(t, name)
		k, err := c.KindOf()
		if err != nil {
			t.Fatal(err)
		}
		if k == kind {
			return c
		}
	}
	t.Skipf("SKIPPED, the golden suite %s has no %s case", Dir(t), kind)
	return nil
}
