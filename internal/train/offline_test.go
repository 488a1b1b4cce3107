package train

import (
	"context"
	"math"
	"testing"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/tensor"
)

// TestOfflineMatchesOnline trains the same draft on the same data and seed online and from stored hidden
// states: the per-step losses agree (f32 shards to rounding, bf16 shards to bf16 precision).
func TestOfflineMatchesOnline(t *testing.T) {
	target, data, newDraft := storiesSetup(t)
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.Seed = 5, 3, 3e-3, 4
	cfg.LogInterval = 1
	run := func(src func(d *draft.Draft) BatchSource) []Record {
		c := cfg
		c.OutputDir = t.TempDir()
		d := newDraft()
		tr := NewTrainer(Options{Config: c, Draft: d, Train: src(d)})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return tr.History()
	}
	online := run(func(d *draft.Draft) BatchSource {
		return &Online{Target: target, Data: data, AuxLayers: d.Config.AuxLayers, Used: d.Vocab.Used}
	})
	for _, c := range []struct {
		dtype tensor.DType
		tol   float64
	}{{tensor.F32, 1e-4}, {tensor.BF16, 2e-2}} {
		out := t.TempDir()
		d := newDraft()
		if _, err := hidden.Generate(hidden.GenOptions{Target: target, AuxLayers: d.Config.AuxLayers, Data: data, DataKey: "k",
			Out: out, DType: c.dtype, SamplesPerShard: 4, Batch: 2}); err != nil {
			t.Fatal(err)
		}
		store, err := hidden.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		offline := run(func(d *draft.Draft) BatchSource {
			return &Offline{Store: store, Head: &target.Head, Used: d.Vocab.Used}
		})
		store.Close()
		if len(offline) != len(online) {
			t.Fatalf("%s: %d records, online %d", c.dtype, len(offline), len(online))
		}
		for i := range online {
			for k := range online[i].PLoss {
				a, b := online[i].PLoss[k], offline[i].PLoss[k]
				if math.Abs(a-b) > c.tol*math.Abs(a) {
					t.Errorf("%s step %d ploss_%d: offline %g, online %g", c.dtype, online[i].Step, k, b, a)
				}
			}
		}
	}
}
