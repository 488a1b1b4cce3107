package model

import (
	"math"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/safetensors"
)

// TestBackendsAgree runs the target of the first forward golden case on the build's backend and on the pure-Go one, a prefill
// with padding and a cached step after it, and compares hidden states, aux states and logits: the target is
// written against the backend only, so swapping it must not change what it computes beyond float32
// rounding. (In a CGO_ENABLED=0 build both are purego, and must agree exactly.)
func TestBackendsAgree(t *testing.T) {
	c := goldentest.First(t, goldentest.Forward)
	dir := goldenModelDirs(t, c)[0]
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	ckpt, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	var outs [2][]*Output
	for i, be := range []backend.Backend{auto.Default(), purego.New()} {
		m, err := NewOn(be, cfg, &checkpointSource{ckpt: ckpt, used: map[string]bool{}}, DefaultProduct)
		if err != nil {
			t.Fatal(err)
		}
		B, T := 2, 24
		ids, mask := make([]int32, B*T), make([]bool, B*T)
		for j := range ids {
			ids[j], mask[j] = int32(1+j*37%(cfg.VocabSize-1)), j < T || j%T >= 5 // row 1 starts with padding
		}
		cache := m.NewCache(B, T+1)
		req := Request{AuxLayers: []int{0, cfg.NumLayers / 2, cfg.NumLayers - 1}, Logits: AllLogits}
		pre, err := m.Forward(Batch{B: B, T: T, IDs: ids, AttentionMask: mask}, cache, req)
		if err != nil {
			t.Fatal(err)
		}
		step, err := m.Forward(Batch{B: B, T: 1, IDs: ids[:B]}, cache, req)
		if err != nil {
			t.Fatal(err)
		}
		outs[i] = []*Output{pre, step}
	}
	for s, name := range []string{"prefill", "step"} {
		got, want := outs[0][s], outs[1][s]
		for _, f := range []struct {
			what      string
			got, want []float32
		}{{"hidden", got.Hidden, want.Hidden}, {"aux", got.Aux, want.Aux}, {"logits", got.Logits, want.Logits}} {
			if len(f.got) != len(f.want) || len(f.got) == 0 {
				t.Fatalf("%s %s: %d values, want %d", name, f.what, len(f.got), len(f.want))
			}
			for j := range f.got {
				if d := math.Abs(float64(f.got[j] - f.want[j])); d > 1e-4*(1+math.Abs(float64(f.want[j]))) {
					t.Fatalf("%s %s[%d]: %s %g, purego %g", name, f.what, j, auto.Default().Name(), f.got[j], f.want[j])
				}
			}
		}
	}
}
