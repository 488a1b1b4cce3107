package train

import (
	"context"
	"testing"

	"github.com/specforge/specforge/internal/config"
)

// TestPackedRunTrains trains and evaluates online with packing: the batches are packed (fewer rows than
// samples, the same real tokens), and the eval loss (packed batches too)
// falls.
func TestPackedRunTrains(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	const packLength = 96
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.WarmupRatio, cfg.Seed = 12, 4, 3e-3, 0.1, 3
	cfg.LogInterval, cfg.EvalInterval, cfg.EvalBatches, cfg.OutputDir = 1, 6, 2, t.TempDir()
	d := newDraft()
	src := &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}
	tr := NewTrainer(Options{Config: cfg, Draft: d, Train: src, Eval: src, PackLength: packLength})

	idx := []int{0, 1, 2, 3}
	unpacked, err := src.Batch(idx)
	if err != nil {
		t.Fatal(err)
	}
	real := realTokens(unpacked)
	packed, err := tr.batch(src, idx)
	if err != nil {
		t.Fatal(err)
	}
	if packed.Starts == nil || packed.B >= len(idx) || packed.T > packLength || realTokens(packed) != real {
		t.Fatalf("packed %d samples (%d real tokens of %d x %d) into %d x %d with %d real tokens", len(idx), real, unpacked.B, unpacked.T, packed.B, packed.T, realTokens(packed))
	}

	before, err := tr.Evaluate()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var train, eval []Record
	for _, r := range tr.History() {
		if r.Split == "train" {
			train = append(train, r)
		} else {
			eval = append(eval, r)
		}
	}
	if len(train) != cfg.MaxSteps || len(eval) != 2 {
		t.Fatalf("%d train and %d eval records, want %d and 2", len(train), len(eval), cfg.MaxSteps)
	}
	for _, r := range train {
		t.Logf("step %d: loss %.3f, %d tokens", r.Step, r.Loss, r.Tokens)
	}
	if !(eval[1].Loss < eval[0].Loss && eval[0].Loss < before.Loss) {
		t.Errorf("eval loss %v before training, %v at step 6, %v at step 12", before.Loss, eval[0].Loss, eval[1].Loss)
	}
}
