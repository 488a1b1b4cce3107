package specdecode

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/dataset"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/generate"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/regen"
	"github.com/specforge/specforge/internal/tokenizer"
	"github.com/specforge/specforge/internal/train"
	"github.com/specforge/specforge/internal/vocab"
)

var (
	setupOnce sync.Once
	setupErr  error
	target    *model.Model
	trained   *draft.Draft
	prompts   [][]int32
)

// setup trains a small stories260K draft once for the package's tests (a few hundred steps on text the
// target wrote), so acceptance paths are exercised, and keeps held-out openings as prompts.
func setup(t *testing.T) {
	dir := goldentest.Shared(t, "assets", "models", "stories260K")
	setupOnce.Do(func() {
		setupErr = doSetup(dir, goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"))
	})
	if setupErr != nil {
		t.Fatal(setupErr)
	}
}

func doSetup(modelDir, text string) error {
	var err error
	if target, err = model.Load(modelDir); err != nil {
		return err
	}
	tok, err := tokenizer.Load(modelDir)
	if err != nil {
		return err
	}
	o := regen.Options{OpeningTokens: 8, MaxNewTokens: 48, Batch: 64, Limit: 380}
	all, err := regen.Openings(text, tok, o)
	if err != nil {
		return err
	}
	prompts = all[360:]
	tmp, err := os.MkdirTemp("", "spec-test")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	data := filepath.Join(tmp, "regen.jsonl")
	if err := regen.Write(context.Background(), data, target, tok, all[:360], o); err != nil {
		return err
	}
	p, err := dataset.Prepare(dataset.PrepareOptions{Train: []string{data}, CacheDir: tmp,
		Schema: dataset.SchemaOptions{Format: "completion"}, Tokenizing: dataset.Tokenizing{Tokenizer: tok, MaxLength: 128}})
	if err != nil {
		return err
	}
	f, err := dataset.OpenTokenized(p.TrainPath())
	if err != nil {
		return err
	}
	defer f.Close()
	counts, err := f.CountLossTokens(512)
	if err != nil {
		return err
	}
	m, err := vocab.Build(counts.Counts, 512, nil)
	if err != nil {
		return err
	}
	dc := draft.FromTarget(target.Config, nil, 512)
	w := draft.NewWeights(&dc)
	w.Init(&dc, 3, 0.02)
	if trained, err = draft.New(dc, target.Embed, m, w); err != nil {
		return err
	}
	cfg := config.Defaults().Train
	cfg.MaxSteps, cfg.BatchSize, cfg.LR, cfg.WarmupRatio, cfg.OutputDir = 150, 8, 3e-3, 0.05, filepath.Join(tmp, "run")
	tr := train.NewTrainer(train.Options{Config: cfg, Draft: trained, Train: &train.Online{Target: target, Data: f, AuxLayers: dc.AuxLayers, Used: m.Used}})
	return tr.Run(context.Background())
}

// TestGreedyEqualsTarget decodes held-out prompts with chains and trees: the output equals the target's own
// greedy decoding token for token, and the draft is accepted often.
func TestGreedyEqualsTarget(t *testing.T) {
	setup(t)
	dec := &Decoder{Target: target, Draft: trained}
	configs := []Options{
		{Steps: 1}, {Steps: 3}, {Steps: 5}, {Steps: 5, MinDraftProb: 0.5},
		{Depth: 3, TopK: 2, DraftTokens: 6}, {Depth: 5, TopK: 4, DraftTokens: 12}, {Depth: 6, TopK: 1, DraftTokens: 7},
	}
	// reachedFifth is the share of rounds that verified a fifth drafted token, per chain setting.
	reachedFifth := map[float64]float64{}
	var wants [][]int32
	for _, p := range prompts {
		want, err := generate.Generate(context.Background(), target, p, generate.Options{MaxNewTokens: 40, StopIDs: target.Config.EOSTokenIDs})
		if err != nil {
			t.Fatal(err)
		}
		wants = append(wants, want.Tokens)
	}
	for _, o := range configs {
		o.MaxNewTokens = 40
		o.StopIDs = target.Config.EOSTokenIDs
		total := &Stats{}
		for k, p := range prompts {
			got, st, err := dec.Generate(context.Background(), p, o)
			if err != nil {
				t.Fatal(err)
			}
			want := wants[k]
			if len(got) != len(want) {
				t.Fatalf("%+v: %d tokens, target alone %d", o, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%+v prompt %v: token %d is %d, the target alone gives %d", o, p, i, got[i], want[i])
				}
			}
			total.Add(st)
		}
		t.Logf("%+v: acceptance length %.2f over %d rounds", o, total.AcceptanceLength(), total.Rounds)
		if o.Steps == 5 && len(total.Tried) == 5 {
			reachedFifth[o.MinDraftProb] = float64(total.Tried[4]) / float64(total.Rounds)
		}
		if o.Steps >= 3 || o.Depth >= 3 {
			if total.AcceptanceLength() < 1.6 {
				t.Errorf("%+v: acceptance length %.2f: the drafted tokens are hardly ever accepted", o, total.AcceptanceLength())
			}
		}
	}
	if !(reachedFifth[0.5] < reachedFifth[0]) {
		t.Errorf("rounds reaching a fifth draft: %.3f with MinDraftProb 0.5, %.3f without: unsure chains were not cut", reachedFifth[0.5], reachedFifth[0])
	}
}

// TestSamplingPreservesTarget checks speculative sampling statistically: the second generated token (the
// first one decided by accepting or rejecting a draft) follows the target's own marginal distribution.
func TestSamplingPreservesTarget(t *testing.T) {
	setup(t)
	prompt := prompts[0]
	V := target.Config.VocabSize
	sp := generate.SamplingParams{Temperature: 1.0}
	dist := func(ids []int32) []float64 {
		res, err := target.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, nil, model.Request{Logits: model.LastLogits})
		if err != nil {
			t.Fatal(err)
		}
		return generate.NewSampler(target.Backend(), sp).Distribution(res.Logits)
	}
	// The exact marginal of the second token: sum over the first.
	p1 := dist(prompt)
	marginal := make([]float64, V)
	for x1, p := range p1 {
		if p < 1e-6 {
			continue
		}
		p2 := dist(append(append([]int32(nil), prompt...), int32(x1)))
		for x2, q := range p2 {
			marginal[x2] += p * q
		}
	}
	dec := &Decoder{Target: target, Draft: trained}
	const n = 1500
	// A chain of 3, and one cut after unsure drafts: the cut depends on the draft alone, so it must not bias
	// the output either.
	for _, minProb := range []float64{0, 0.3} {
		counts := make([]int, V)
		accepted := 0
		for i := 0; i < n; i++ {
			sp.Seed = uint64(i + 1)
			out, st, err := dec.Generate(context.Background(), prompt, Options{Steps: 3, MinDraftProb: minProb, MaxNewTokens: 2, Sampling: sp})
			if err != nil {
				t.Fatal(err)
			}
			counts[out[1]]++
			accepted += st.Accepted[0]
		}
		for x, c := range counts {
			mean := n * marginal[x]
			sd := math.Sqrt(n * marginal[x] * (1 - marginal[x]))
			if math.Abs(float64(c)-mean) > 5*sd+1 {
				t.Errorf("min draft prob %g, token %d: %d draws, the target's marginal expects %.1f ± %.1f", minProb, x, c, mean, sd)
			}
		}
		if accepted < n/20 {
			t.Errorf("min draft prob %g: only %d of %d first drafts accepted: the test does not exercise acceptance", minProb, accepted, n)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		o  Options
		ok bool
	}{
		{Options{Steps: 5, MaxNewTokens: 8}, true},
		{Options{Steps: 5, MinDraftProb: 0.5, MaxNewTokens: 8}, true},
		{Options{Depth: 3, TopK: 2, DraftTokens: 6, MaxNewTokens: 8}, true},
		{Options{MaxNewTokens: 8}, false},
		{Options{Steps: 5}, false},
		{Options{Steps: 5, MinDraftProb: 1, MaxNewTokens: 8}, false},
		{Options{Steps: 5, MinDraftProb: -0.1, MaxNewTokens: 8}, false},
		{Options{Depth: 3, TopK: 2, DraftTokens: 6, MinDraftProb: 0.5, MaxNewTokens: 8}, false},
		{Options{Depth: 3, TopK: 0, DraftTokens: 6, MaxNewTokens: 8}, false},
		{Options{Depth: 3, TopK: 2, DraftTokens: 6, MaxNewTokens: 8, Sampling: generate.SamplingParams{Temperature: 1}}, false},
	} {
		if err := tc.o.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: error %v", tc.o, err)
		}
	}
}

// TestStopTokenEndsTheRound stops at a frequent token (261), which is often accepted in the middle of a
// drafted chain or tree path: the output ends there like the target's own, and no round is spent after it
// (every round yields at least one kept token).
func TestStopTokenEndsTheRound(t *testing.T) {
	setup(t)
	dec := &Decoder{Target: target, Draft: trained}
	stops := []int{261}
	for _, o := range []Options{{Steps: 5}, {Depth: 4, TopK: 2, DraftTokens: 8}} {
		o.MaxNewTokens, o.StopIDs = 100, stops
		for _, p := range prompts {
			want, err := generate.Generate(context.Background(), target, p, generate.Options{MaxNewTokens: 100, StopIDs: stops})
			if err != nil {
				t.Fatal(err)
			}
			got, st, err := dec.Generate(context.Background(), p, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want.Tokens) {
				t.Fatalf("%+v: %v, the target alone gives %v", o, got, want.Tokens)
			}
			if st.Rounds > len(got) {
				t.Errorf("%+v: %d rounds for %d tokens: rounds ran after the stop token", o, st.Rounds, len(got))
			}
		}
	}
}

// TestCancelledContext: target-only, chain, tree and benchmark decoding under a cancelled context return at
// once with an error that wraps context.Canceled, and no output.
func TestCancelledContext(t *testing.T) {
	setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dec := &Decoder{Target: target, Draft: trained}
	chain := Options{Steps: 3, MaxNewTokens: 40}
	for _, c := range []struct {
		name string
		run  func() (any, error)
	}{
		{"target only", func() (any, error) {
			return generate.Generate(ctx, target, prompts[0], generate.Options{MaxNewTokens: 40})
		}},
		{"chain", func() (any, error) { out, _, err := dec.Generate(ctx, prompts[0], chain); return out, err }},
		{"tree", func() (any, error) {
			out, _, err := dec.Generate(ctx, prompts[0], Options{Depth: 3, TopK: 2, DraftTokens: 6, MaxNewTokens: 40})
			return out, err
		}},
		{"bench", func() (any, error) { return Bench(ctx, dec, prompts[:3], chain, 1) }},
	} {
		out, err := c.run()
		if !errors.Is(err, context.Canceled) || !reflect.ValueOf(out).IsNil() {
			t.Errorf("%s: output %v, error %v; want none and context.Canceled", c.name, out, err)
		}
	}
}
