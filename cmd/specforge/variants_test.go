package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/goldentest"
)

// TestDraftVariants trains a two-layer draft with EAGLE-3.1's fc_norm and norm_output on stories260K,
// checks that the run writes it in the vLLM layout (SGLang's serves one layer), that an SGLang export is
// refused with the reason, that the speculators export reads back with the same weights, and that
// speculative decoding with it (chain and tree) gives the target's greedy outputs.
func TestDraftVariants(t *testing.T) {
	goldentest.Shared(t)
	out := t.TempDir()
	args := append(tinyTrainArgs(t, out), "--set", "draft.num_layers=2", "--set", "draft.fc_norm=true", "--set", "draft.norm_output=true")
	if stdout, err := run(args...); err != nil {
		t.Fatalf("train: %v\n%s", err, stdout)
	}
	final, err := export.Read(filepath.Join(out, "run", "draft"))
	if err != nil {
		t.Fatal(err)
	}
	if c := final.Config; final.Format != export.VLLM || c.Layers() != 2 || !c.FCNorm || !c.NormOutput {
		t.Fatalf("the run's draft reads back as %s with %d layers, fc_norm %v, norm_output %v", final.Format, c.Layers(), c.FCNorm, c.NormOutput)
	}
	if _, err := run("export", "--checkpoint", filepath.Join(out, "run"), "--to", "sglang", "--out", filepath.Join(out, "sglang")); err == nil || !strings.Contains(err.Error(), "serves one") {
		t.Errorf("sglang export of a two-layer draft: %v, want a refusal", err)
	}
	spec := filepath.Join(out, "speculators")
	if _, err := run("export", "--checkpoint", filepath.Join(out, "run"), "--to", "speculators", "--out", spec); err != nil {
		t.Fatal(err)
	}
	im, err := export.Read(spec)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(im, final); d != 0 || im.Config.Layers() != 2 || !im.Config.FCNorm || !im.Config.NormOutput {
		t.Errorf("speculators export: weights differ by %g; %d layers, fc_norm %v, norm_output %v", d, im.Config.Layers(), im.Config.FCNorm, im.Config.NormOutput)
	}
	stories := goldentest.Shared(t, "assets", "models", "stories260K")
	for _, mode := range [][]string{{"--steps", "4"}, {"--depth", "3", "--topk", "2", "--draft-tokens", "6"}} {
		for _, draftDir := range []string{filepath.Join(out, "run", "draft"), spec} {
			stdout, err := run(append([]string{"bench", "--target", stories, "--draft", draftDir, "--dataset",
				goldentest.Shared(t, "assets", "datasets", "tinystories", "tinystories_valid_head.txt"), "--skip", "4200",
				"--num-prompts", "3", "--max-new-tokens", "16", "--prompt-tokens", "12", "--out", filepath.Join(out, "bench.json")}, mode...)...)
			if err != nil || !strings.Contains(stdout, "greedy outputs equal   3 of 3") {
				t.Errorf("bench %v with %s: %v\n%s", mode, draftDir, err, stdout)
			}
		}
	}
}
