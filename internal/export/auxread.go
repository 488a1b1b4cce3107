package export

import (
	"fmt"
	"slices"
	"strings"

	"github.com/specforge/specforge/internal/draft"
)

// Engines do not agree on what the aux-layer ids of a config.json mean, and have changed their minds between
// releases. An id is turned into a captured tensor in(k), the residual stream entering 0-based decoder layer
// k, which is the output of layer k-1 (in(0) is the embeddings, in(N) the last layer's output):
//
//   - SGLang reads only eagle_config's ids. Most model files (llama, qwen2, qwen3, mixtral, the Qwen MoEs)
//     capture in(id+1) for every id; those changed by PR #25454 (merged 2026-05-16: deepseek_v2 for
//     DeepSeek and Kimi, glm4_moe_lite) add 1 only when the first id is 1 and take the others as k. Its
//     capture loop sees in(0) to in(N-1), and in(0) has no residual to add.
//   - vLLM since PR #25961 (October 2025) reads the top-level ids as k, and later releases fall back to
//     eagle_config's ids, also as k; before it, it always captured its defaults. It captures in(N) since PR
//     #36063 (March 2026; PR #46973 for the deepseek_v2 family).
//   - Both default to in(2), in(N/2), in(N-3), the outputs of specforge's defaults [1, N/2-1, N-4].
//
// AuxReadings applies each rule to what a layout writes, so that an export says what every engine will feed
// the draft, and refuses a layout that the engine it is written for would read wrongly.

// AuxReading is the set of target layers one engine release hands the draft.
type AuxReading struct {
	// Engine names the engine, its releases and the rule.
	Engine string
	// Intended marks the reading of today's release of the engine the layout is written for (for the
	// target's architecture): the export is refused unless it reads the trained layers.
	Intended bool
	// Layers are the outputs of 0-based target layers it captures (draft.OutputOfLayer), -1 for the
	// embeddings; nil when it fails (Problem says why).
	Layers []int
	// Problem says why the engine cannot serve the draft, or is empty.
	Problem string
}

// Reads reports whether the engine hands the draft exactly the layers it was trained on.
func (r AuxReading) Reads(trained []int) bool {
	return r.Problem == "" && slices.Equal(r.Layers, trained)
}

// String is the reading as export prints it.
func (r AuxReading) String() string {
	if r.Problem != "" {
		return r.Engine + ": " + r.Problem
	}
	return fmt.Sprintf("%s: outputs of layers %v", r.Engine, r.Layers)
}

// plusOneOnlyAfterOne lists the target architectures whose SGLang model file follows PR #25454.
var plusOneOnlyAfterOne = []string{"DeepseekV2", "DeepseekV3", "KimiK2", "Glm4MoeLite"}

// sglangPlusOneOnlyAfterOne reports whether SGLang serves the target with PR #25454's rule.
func sglangPlusOneOnlyAfterOne(arch string) bool {
	return slices.ContainsFunc(plusOneOnlyAfterOne, func(p string) bool { return strings.HasPrefix(arch, p) })
}

// AuxReadings lists, for a draft written in layout f, which target layers each engine release hands it.
func AuxReadings(c *draft.Config, f Format) []AuxReading {
	n := c.TargetNumLayers
	var nested, top []int // the ids as the layout writes them
	if f != Speculators {
		nested = c.AuxLayers
	}
	if f != SGLang {
		top = draft.VLLMAuxIDs(c.AuxLayers)
	}
	defaults := []int{2, n / 2, n - 3} // both engines' default in(k)
	deepseek := sglangPlusOneOnlyAfterOne(c.TargetArchitecture)
	var out []AuxReading
	if f != Speculators {
		plusOne := AuxReading{Engine: "SGLang, model files adding 1 to every eagle_config id (llama, qwen2, qwen3, mixtral, qwen MoEs)", Intended: f == SGLang && !deepseek}
		plusOne.capture(sglangCaptures(nested, defaults, func([]int) int { return 1 }), 1, n-1, n, "SGLang's capture loop ends before the last layer's output")
		afterOne := AuxReading{Engine: "SGLang, model files with PR #25454's rule (since 2026-05-16: deepseek_v2, glm4_moe_lite; +1 only when the first id is 1)", Intended: f == SGLang && deepseek}
		afterOne.capture(sglangCaptures(nested, defaults, func(ids []int) int {
			if ids[0] == 1 {
				return 1
			}
			return 0
		}), 1, n-1, n, "SGLang's capture loop ends before the last layer's output")
		out = append(out, plusOne, afterOne)
	}
	// vLLM: the top-level ids, else (releases with the fallback) eagle_config's, each taken as k.
	vllm := top
	if vllm == nil {
		vllm = nested
	}
	if vllm == nil {
		vllm = defaults
	}
	current := AuxReading{Engine: "vLLM since PR #25961 (October 2025; in(N) since PR #36063, March 2026), ids as input of layer k", Intended: f != SGLang}
	if f == SGLang {
		current.Engine = "vLLM releases that fall back to eagle_config's ids, taken as input of layer k"
	}
	current.capture(vllm, 0, n, n, "")
	if top != nil && slices.Contains(top, n) && n > 0 {
		older := AuxReading{Engine: "vLLM before PR #36063 (March 2026; PR #46973 for deepseek_v2 targets)"}
		older.capture(vllm, 1, n-1, n, "it drops the last layer's output, so fc gets fewer states than it reads")
		out = append(out, current, older)
	} else {
		out = append(out, current)
	}
	early := AuxReading{Engine: "vLLM before PR #25961 (October 2025), its defaults"}
	early.capture(defaults, 1, n-1, n, "")
	return append(out, early)
}

// sglangCaptures is what SGLang's set_eagle3_layers_to_capture makes of eagle_config's ids: the ids plus
// shift(ids), or its defaults (taken as they are) when the file has none.
func sglangCaptures(ids, defaults []int, shift func([]int) int) []int {
	if len(ids) == 0 {
		return defaults
	}
	d := shift(ids)
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = id + d
	}
	return out
}

// capture records the layers of the captured in(k), each of which must be in [lo, hi] for the engine to
// give it; beyond is the problem for a k past hi. With n unknown (0) nothing is checked.
func (r *AuxReading) capture(ks []int, lo, hi, n int, beyond string) {
	if n == 0 {
		r.Problem = "the target's depth is unknown (give --target)"
		return
	}
	for _, k := range ks {
		switch {
		case k < lo && k == 0:
			r.Problem = fmt.Sprintf("input of layer 0 (the embeddings) has no residual to capture: ids %v", ks)
			return
		case k < lo || k > n:
			r.Problem = fmt.Sprintf("input of layer %d does not exist in a target of %d layers: ids %v", k, n, ks)
			return
		case k > hi:
			if beyond == "" {
				beyond = "not captured"
			}
			r.Problem = fmt.Sprintf("%s (input of layer %d = output of layer %d)", beyond, k, k-1)
			return
		}
		r.Layers = append(r.Layers, k-1)
	}
}

// CheckAux refuses layout f when the engine it is written for, in its current release and for the draft's
// target, would not hand the draft the layers it was trained on.
func CheckAux(c *draft.Config, f Format) error {
	if c.TargetNumLayers == 0 || len(c.AuxLayers) == 0 {
		return nil // left to the target: nothing to check the ids against
	}
	for _, r := range AuxReadings(c, f) {
		if r.Intended && !r.Reads(c.AuxLayers) {
			alt := "export --to vllm, whose top-level ids vLLM reads as written"
			if f != SGLang {
				alt = "choose aux layers inside the target"
			}
			got := r.Problem
			if got == "" {
				got = fmt.Sprintf("it would capture the outputs of layers %v", r.Layers)
			}
			return fmt.Errorf("export --to %s: the draft was trained on the outputs of layers %v, but %s: %s; %s", f, c.AuxLayers, r.Engine, got, alt)
		}
	}
	return nil
}

// AuxWarnings lists the engine releases that would hand a draft written in layout f other layers than it
// was trained on, or fail on them.
func AuxWarnings(c *draft.Config, f Format) []string {
	var w []string
	for _, r := range AuxReadings(c, f) {
		if r.Intended || r.Reads(c.AuxLayers) || c.TargetNumLayers == 0 || len(c.AuxLayers) == 0 {
			continue
		}
		if r.Problem != "" {
			w = append(w, fmt.Sprintf("%s cannot serve this draft: %s", r.Engine, r.Problem))
		} else {
			w = append(w, fmt.Sprintf("%s would hand it the outputs of layers %v, not %v", r.Engine, r.Layers, c.AuxLayers))
		}
		if f == SGLang && strings.HasPrefix(r.Engine, "vLLM") && len(w) > 0 {
			w[len(w)-1] += " (export --to vllm writes the top-level ids vLLM reads first)"
		}
	}
	return w
}
