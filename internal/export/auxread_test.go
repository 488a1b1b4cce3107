package export

import (
	"fmt"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/draft"
)

// TestAuxReadings applies each engine release's rule (research in auxread.go's comment) to what each layout
// writes for a 32-layer target, whose defaults are the outputs of [1, 15, 28].
func TestAuxReadings(t *testing.T) {
	const (
		sglPlusOne  = "SGLang, model files adding 1"
		sglAfterOne = "SGLang, model files with PR #25454"
		vllmNow     = "vLLM since PR #25961"
		vllmNested  = "vLLM releases that fall back"
		vllmPre3606 = "vLLM before PR #36063"
		vllmEarly   = "vLLM before PR #25961"
	)
	// want maps an engine to the layers it reads (as %v) or a piece of its problem.
	cases := []struct {
		name     string
		aux      []int
		arch     string
		f        Format
		want     map[string]string
		refused  string // a piece of CheckAux's error, or "" when the layout is accepted
		warnings int
	}{
		{"defaults, sglang", []int{1, 15, 28}, "LlamaForCausalLM", SGLang, map[string]string{
			sglPlusOne: "[1 15 28]", sglAfterOne: "[1 15 28]", vllmNested: "[0 14 27]", vllmEarly: "[1 15 28]"}, "", 1},
		{"defaults, vllm", []int{1, 15, 28}, "LlamaForCausalLM", VLLM, map[string]string{
			sglPlusOne: "[1 15 28]", sglAfterOne: "[1 15 28]", vllmNow: "[1 15 28]", vllmEarly: "[1 15 28]"}, "", 0},
		{"defaults, speculators", []int{1, 15, 28}, "LlamaForCausalLM", Speculators, map[string]string{
			vllmNow: "[1 15 28]", vllmEarly: "[1 15 28]"}, "", 0},
		{"first id not 1, vllm", []int{3, 15, 28}, "Qwen3ForCausalLM", VLLM, map[string]string{
			sglPlusOne: "[3 15 28]", sglAfterOne: "[2 14 27]", vllmNow: "[3 15 28]", vllmEarly: "[1 15 28]"}, "", 2},
		{"first id not 1, sglang, llama", []int{3, 15, 28}, "LlamaForCausalLM", SGLang, map[string]string{
			sglPlusOne: "[3 15 28]", sglAfterOne: "[2 14 27]", vllmNested: "[2 14 27]"}, "", 3},
		{"first id not 1, sglang, deepseek", []int{3, 15, 28}, "DeepseekV3ForCausalLM", SGLang, map[string]string{
			sglAfterOne: "[2 14 27]"}, "would capture the outputs of layers [2 14 27]", 2},
		{"last layer, sglang", []int{1, 15, 31}, "LlamaForCausalLM", SGLang, map[string]string{
			sglPlusOne: "capture loop ends before the last layer's output (input of layer 32"}, "export --to vllm", 3},
		{"last layer, vllm", []int{1, 15, 31}, "LlamaForCausalLM", VLLM, map[string]string{
			sglPlusOne: "capture loop ends", vllmNow: "[1 15 31]", vllmPre3606: "drops the last layer's output", vllmEarly: "[1 15 28]"}, "", 4},
		{"layer 0, vllm", []int{0, 15, 28}, "LlamaForCausalLM", VLLM, map[string]string{
			sglPlusOne: "[0 15 28]", sglAfterOne: "input of layer 0 (the embeddings) has no residual", vllmNow: "[0 15 28]"}, "", 2},
		{"unknown depth", []int{1, 15, 28}, "", VLLM, map[string]string{vllmNow: "depth is unknown"}, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := 32
			if c.name == "unknown depth" {
				n = 0
			}
			cfg := &draft.Config{AuxLayers: c.aux, TargetNumLayers: n, TargetArchitecture: c.arch}
			readings := AuxReadings(cfg, c.f)
			for engine, want := range c.want {
				found := false
				for _, r := range readings {
					if !strings.HasPrefix(r.Engine, engine) {
						continue
					}
					found = true
					got := r.Problem
					if got == "" {
						got = fmt.Sprint(r.Layers)
					}
					if !strings.Contains(got, want) {
						t.Errorf("%s reads %q, want %q", r.Engine, got, want)
					}
				}
				if !found {
					t.Errorf("no reading by %q in %v", engine, readings)
				}
			}
			intended := 0
			for _, r := range readings {
				if r.Intended {
					intended++
				}
			}
			if intended != 1 {
				t.Errorf("%d readings marked intended, want 1: %v", intended, readings)
			}
			err := CheckAux(cfg, c.f)
			switch {
			case c.refused == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused)):
				t.Errorf("CheckAux: %v, want an error with %q", err, c.refused)
			}
			if w := AuxWarnings(cfg, c.f); len(w) != c.warnings {
				t.Errorf("%d warnings, want %d: %q", len(w), c.warnings, w)
			}
		})
	}
}

// TestServedAvoidsMisreadLayouts: a one-layer draft whose aux layers SGLang cannot capture is written in
// vLLM's layout, which reads them.
func TestServedAvoidsMisreadLayouts(t *testing.T) {
	d := goldenDraft(t)
	if got := Served(d); got != SGLang {
		t.Fatalf("the golden draft is served as %s", got)
	}
	const n = 5
	d.Config.TargetNumLayers, d.Config.AuxLayers = n, []int{0, 1, n - 1}
	if got := Served(d); got != VLLM {
		t.Errorf("aux layers %v of %d: served as %s, want vllm", d.Config.AuxLayers, n, got)
	}
	if err := Write(t.TempDir(), d, SGLang, Options{Force: true}); err == nil || !strings.Contains(err.Error(), "capture loop") {
		t.Errorf("written in SGLang's layout: %v", err)
	}
	if err := Write(t.TempDir()+"/out", d, VLLM, Options{}); err != nil {
		t.Error(err)
	}
}
