package export

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

// goldenDraft is the draft of the first online end-to-end case (in the public suite case h: stories260K
// shape, V_d = 64) with its initial weights.
func goldenDraft(t *testing.T) *draft.Draft {
	return caseDraft(t, goldentest.First(t, goldentest.OnlineE2E))
}

// caseDraft is the draft of an online end-to-end case with its initial weights and golden vocabulary.
func caseDraft(t *testing.T, c *goldentest.Case) *draft.Draft {
	var cfg draft.Config
	c.Hyper(t, "draft_config", &cfg)
	c.Hyper(t, "aux_layer_ids", &cfg.AuxLayers)
	f, err := safetensors.Open(filepath.Join(c.Dir, "draft_init.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := draft.LoadWeights(&cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	m, err := vocab.FromD2T(c.Ints(t, "expected_f64.safetensors", "vocab.d2t"), cfg.VocabSize)
	if err != nil {
		t.Fatal(err)
	}
	d, err := draft.New(cfg, tensor.FromF32(make([]float32, cfg.VocabSize*cfg.HiddenSize)), m, w)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSGLangLayoutMatchesReference writes the draft of each online end-to-end case and compares the tensor
// names, dtypes and shapes and the config fields with the case's reference export (draft_export_bf16).
func TestSGLangLayoutMatchesReference(t *testing.T) {
	goldentest.ForEach(t, goldentest.OnlineE2E, sglangLayoutMatchesReference)
}

func sglangLayoutMatchesReference(t *testing.T, c *goldentest.Case) {
	ref := filepath.Join(c.Dir, "draft_export_bf16")
	if _, err := os.Stat(ref); err != nil {
		t.Skipf("no reference export in this case: %v", err)
	}
	d := caseDraft(t, c)
	dir := t.TempDir()
	if err := Write(dir, d, SGLang, Options{}); err != nil {
		t.Fatal(err)
	}
	layout := func(path string) map[string]string {
		f, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		out := map[string]string{}
		for _, n := range f.Names() {
			x, _ := f.Tensor(n)
			b, _ := json.Marshal(x.Shape)
			out[n] = string(x.DType) + string(b)
		}
		return out
	}
	got, want := layout(filepath.Join(dir, "model.safetensors")), layout(filepath.Join(ref, "model.safetensors"))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tensors %v, want %v", got, want)
	}
	readJSON := func(path string) map[string]any {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	gc, wc := readJSON(filepath.Join(dir, "config.json")), readJSON(filepath.Join(ref, "config.json"))
	var keys []string
	for k := range wc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !reflect.DeepEqual(gc[k], wc[k]) {
			t.Errorf("config %s = %v, want %v", k, gc[k], wc[k])
		}
	}
}

// readConfig returns dir/config.json as a generic map.
func readConfig(t *testing.T, dir string) map[string]any {
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func writeConfig(t *testing.T, dir string, m map[string]any) {
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// numbers turns a JSON array into ints.
func numbers(v any) []int {
	a, _ := v.([]any)
	out := []int{}
	for _, x := range a {
		out = append(out, int(x.(float64)))
	}
	return out
}

// TestRoundTrip exports the golden draft, with aux layers that are not the defaults, in every layout and
// dtype, reads each back and checks the weights bit for bit against d's rounded to the dtype, the vocabulary,
// and the config fields each engine reads, in its own aux-layer convention.
func TestRoundTrip(t *testing.T) {
	d := goldenDraft(t)
	d.Config.AuxLayers = []int{0, 2, 3}
	d.Config.TargetPath, d.Config.TargetArchitecture = "/models/stories260K", "LlamaForCausalLM"
	round := map[safetensors.DType]func(float32) float32{
		safetensors.F32: func(x float32) float32 { return x }, safetensors.BF16: half.RoundBF16,
		safetensors.F16: func(x float32) float32 {
			b, out := make([]uint16, 1), make([]float32, 1)
			half.F32ToF16(b, []float32{x})
			half.F16ToF32(out, b)
			return out[0]
		},
	}
	for _, f := range []Format{SGLang, VLLM, Speculators} {
		for dtype, rnd := range round {
			t.Run(string(f)+"_"+string(dtype), func(t *testing.T) {
				dir := t.TempDir()
				if err := Write(dir, d, f, Options{DType: dtype}); err != nil {
					t.Fatal(err)
				}
				im, err := Read(dir)
				if err != nil {
					t.Fatal(err)
				}
				if im.Format != f || !reflect.DeepEqual(im.Config.AuxLayers, []int{0, 2, 3}) || !im.Embed.IsNil() || len(im.Ignored) > 0 {
					t.Fatalf("read back as %s, aux %v, embed %v, ignored %v", im.Format, im.Config.AuxLayers, !im.Embed.IsNil(), im.Ignored)
				}
				if !reflect.DeepEqual(im.Vocab.D2T, d.Vocab.D2T) || !reflect.DeepEqual(im.Vocab.T2D, d.Vocab.T2D) {
					t.Fatal("vocabulary mapping differs")
				}
				c := im.Config
				if c.HiddenSize != 64 || c.NumHeads != d.Config.NumHeads || c.NumKVHeads != d.Config.NumKVHeads || c.IntermediateSize != d.Config.IntermediateSize ||
					c.DraftVocabSize != d.Config.DraftVocabSize || c.VocabSize != 512 || c.RopeTheta != d.Config.RopeTheta || c.RMSNormEps != d.Config.RMSNormEps {
					t.Fatalf("config read back as %+v", c)
				}
				for i, got := range im.Weights.Slices(&c) {
					want := d.W.Slices(&d.Config)[i]
					for j := range got {
						if math.Float32bits(got[j]) != math.Float32bits(rnd(want[j])) {
							t.Fatalf("tensor %d element %d: %g, want %g", i, j, got[j], rnd(want[j]))
						}
					}
				}
				cfg := readConfig(t, dir)
				switch f {
				case SGLang:
					if _, ok := cfg["eagle_aux_hidden_state_layer_ids"]; ok {
						t.Error("the sglang layout has vLLM's top-level ids")
					}
					if got := numbers(cfg["eagle_config"].(map[string]any)["eagle_aux_hidden_state_layer_ids"]); !reflect.DeepEqual(got, []int{0, 2, 3}) {
						t.Errorf("eagle_config ids %v", got)
					}
				case VLLM:
					if got := numbers(cfg["eagle_aux_hidden_state_layer_ids"]); !reflect.DeepEqual(got, []int{1, 3, 4}) {
						t.Errorf("top-level ids %v, want the vLLM convention [1 3 4]", got)
					}
				case Speculators:
					if cfg["norm_before_residual"] != false || cfg["speculators_model_type"] != "eagle3" || !reflect.DeepEqual(cfg["architectures"], []any{"Eagle3Speculator"}) {
						t.Errorf("speculators fields %v %v %v", cfg["norm_before_residual"], cfg["speculators_model_type"], cfg["architectures"])
					}
					if got := numbers(cfg["eagle_aux_hidden_state_layer_ids"]); !reflect.DeepEqual(got, []int{1, 3, 4}) {
						t.Errorf("ids %v, want the vLLM convention [1 3 4]", got)
					}
					sc := cfg["speculators_config"].(map[string]any)
					v := sc["verifier"].(map[string]any)
					if v["name_or_path"] != "/models/stories260K" || !reflect.DeepEqual(v["architectures"], []any{"LlamaForCausalLM"}) || sc["algorithm"] != "eagle3" {
						t.Errorf("speculators_config %v", sc)
					}
					layer := cfg["transformer_layer_config"].(map[string]any)
					if layer["hidden_size"] != 64.0 || layer["vocab_size"] != 512.0 || layer["num_hidden_layers"] != 1.0 {
						t.Errorf("transformer_layer_config %v", layer)
					}
				}
				if f != Speculators && cfg["torch_dtype"] != map[safetensors.DType]string{safetensors.F32: "float32", safetensors.BF16: "bfloat16", safetensors.F16: "float16"}[dtype] {
					t.Errorf("torch_dtype %v for %s", cfg["torch_dtype"], dtype)
				}
			})
		}
	}
}

// writeForeign writes a head the way other trainers do: the given tensors (weights in dtype under prefix
// instead of midlayer.) and config.
func writeForeign(t *testing.T, d *draft.Draft, prefix string, dtype safetensors.DType, extra []safetensors.Tensor, cfg map[string]any) string {
	dir := t.TempDir()
	var ts []safetensors.Tensor
	for _, p := range d.W.Params(&d.Config) {
		ts = append(ts, safetensors.FromFloat32(strings.Replace(p.Name, "midlayer.", prefix, 1), dtype, p.Shape, *p.Data))
	}
	ts = append(ts, extra...)
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, cfg)
	return dir
}

// sglangConfig is a minimal official-layout config.json, as the EAGLE-3 authors publish them.
func sglangConfig(c *draft.Config) map[string]any {
	return map[string]any{"architectures": []string{"LlamaForCausalLMEagle3"}, "hidden_size": c.HiddenSize,
		"intermediate_size": c.IntermediateSize, "num_attention_heads": c.NumHeads, "num_key_value_heads": c.NumKVHeads,
		"head_dim": c.HeadDim, "vocab_size": c.VocabSize, "draft_vocab_size": c.DraftVocabSize, "rms_norm_eps": c.RMSNormEps,
		"rope_theta": c.RopeTheta, "max_position_embeddings": c.MaxPositions, "num_hidden_layers": 1}
}

func storiesHead(hidden, vocabSize, layers int) *model.Head {
	return &model.Head{Config: &model.Config{HiddenSize: hidden, VocabSize: vocabSize, NumLayers: layers, Architecture: "LlamaForCausalLM"},
		Embed: tensor.FromF32(make([]float32, vocabSize*hidden), vocabSize, hidden)}
}

// TestImportForeignHeads reads heads written by other tools: f16 with a stray embedding and no t2d and no
// aux ids (the target's defaults apply), bf16 in the speculators layout, int32 d2t, and refuses what an
// engine would misread.
func TestImportForeignHeads(t *testing.T) {
	d := goldenDraft(t)
	c := &d.Config
	d2t := safetensors.FromInt64("d2t", safetensors.I64, []int{len(d.Vocab.D2T)}, d.Vocab.D2T)
	embed := safetensors.FromFloat32("embed_tokens.weight", safetensors.F16, []int{c.VocabSize, c.HiddenSize}, make([]float32, c.VocabSize*c.HiddenSize))
	target := storiesHead(64, 512, 5)

	dir := writeForeign(t, d, "midlayer.", safetensors.F16, []safetensors.Tensor{d2t, embed}, sglangConfig(c))
	im, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if im.Format != SGLang || im.Config.AuxLayers != nil || im.Embed.IsNil() || im.Config.TargetHiddenSize != 64 {
		t.Fatalf("read %s, aux %v, embed %v, target hidden %d", im.Format, im.Config.AuxLayers, !im.Embed.IsNil(), im.Config.TargetHiddenSize)
	}
	if _, err := im.Draft(); err == nil || !strings.Contains(err.Error(), "aux layers") {
		t.Errorf("exporting without aux layers or target: %v", err)
	}
	got, err := im.ForTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Config.AuxLayers, []int{1, 1, 1}) || &got.Embed.F32()[0] != &target.Embed.F32()[0] {
		t.Errorf("fitted aux %v; the target's embedding must be shared", got.Config.AuxLayers)
	}
	if !reflect.DeepEqual(got.Vocab.T2D, d.Vocab.T2D) {
		t.Error("t2d not derived from d2t")
	}

	d2t32 := safetensors.FromInt64("d2t", safetensors.I32, []int{len(d.Vocab.D2T)}, d.Vocab.D2T)
	spec := map[string]any{"architectures": []string{"Eagle3Speculator"}, "speculators_model_type": "eagle3",
		"transformer_layer_config": sglangConfig(c), "draft_vocab_size": c.DraftVocabSize, "norm_before_residual": false,
		"eagle_aux_hidden_state_layer_ids": []int{2, 3, 4}}
	dir = writeForeign(t, d, "layers.0.", safetensors.BF16, []safetensors.Tensor{d2t32}, spec)
	if im, err = Read(dir); err != nil {
		t.Fatal(err)
	}
	if im.Format != Speculators || !reflect.DeepEqual(im.Config.AuxLayers, []int{1, 2, 3}) || !reflect.DeepEqual(im.Vocab.D2T, d.Vocab.D2T) {
		t.Errorf("speculators head read as %s with aux %v (want [1 2 3]: vLLM ids minus one)", im.Format, im.Config.AuxLayers)
	}

	refused := map[string]struct {
		prefix string
		cfg    func(map[string]any)
		want   string
	}{
		"norm_before_residual absent": {"layers.0.", func(m map[string]any) {
			m["architectures"], m["transformer_layer_config"] = []string{"Eagle3Speculator"}, sglangConfig(c)
		}, "norm_before_residual"},
		"names of another layout": {"layers.0.", func(map[string]any) {}, "layers.0.*"},
		"ids that disagree": {"midlayer.", func(m map[string]any) {
			m["eagle_config"] = map[string]any{"eagle_aux_hidden_state_layer_ids": []int{1, 2, 3}}
			m["eagle_aux_hidden_state_layer_ids"] = []int{1, 2, 3}
		}, "disagree"},
		"vllm id 0":                       {"midlayer.", func(m map[string]any) { m["eagle_aux_hidden_state_layer_ids"] = []int{0, 2, 3} }, "at least 1"},
		"not a draft":                     {"midlayer.", func(m map[string]any) { m["architectures"] = []string{"LlamaForCausalLM"} }, "not an EAGLE-3 draft"},
		"two layers in the sglang layout": {"midlayer.", func(m map[string]any) { m["num_hidden_layers"] = 2 }, "hidden_norm"},
		"norm_before_fc":                  {"midlayer.", func(m map[string]any) { m["norm_before_fc"] = true }, "norm_before_fc"},
		"fc of another target":            {"midlayer.", func(m map[string]any) { m["target_hidden_size"] = 128 }, "fc.weight"},
	}
	for name, tc := range refused {
		cfg := sglangConfig(c)
		tc.cfg(cfg)
		dir := writeForeign(t, d, tc.prefix, safetensors.BF16, []safetensors.Tensor{d2t}, cfg)
		if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
}

// TestMisfitHeadsAreRefused fits the golden head to targets it was not made for.
func TestMisfitHeadsAreRefused(t *testing.T) {
	d := goldenDraft(t)
	dir := t.TempDir()
	if err := Write(dir, d, SGLang, Options{}); err != nil {
		t.Fatal(err)
	}
	im, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := im.ForTarget(storiesHead(64, 512, 5)); err != nil {
		t.Fatalf("the right target: %v", err)
	}
	for name, tc := range map[string]struct {
		target *model.Head
		want   string
	}{
		"hidden size":        {storiesHead(128, 512, 5), "hidden_size is 128"},
		"vocabulary":         {storiesHead(64, 1000, 5), "vocabulary 1000"},
		"layer out of range": {storiesHead(64, 512, 1), "outside the target's 1 layers"},
		"layer count":        {storiesHead(64, 512, 8), "made for a target of 5 layers"},
	} {
		im.Config.TargetNumLayers = 5
		if name == "layer out of range" {
			im.Config.TargetNumLayers = 0
		}
		if _, err := im.ForTarget(tc.target); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.want)
		}
	}
}

// TestValidateCatchesMisspeltNames renames one tensor of an export: SGLang would skip it silently.
func TestValidateCatchesMisspeltNames(t *testing.T) {
	d := goldenDraft(t)
	dir := t.TempDir()
	if err := Write(dir, d, SGLang, Options{}); err != nil {
		t.Fatal(err)
	}
	ts := Tensors(d, SGLang, safetensors.BF16)
	ts[1].Name = "midlayer.hiden_norm.weight"
	ts = append(ts, safetensors.FromFloat32("midlayer.hidden_norm.weight", safetensors.BF16, []int{64}, make([]float32, 64)))
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := Validate(dir, d, SGLang); err == nil || !strings.Contains(err.Error(), "hiden_norm") {
		t.Errorf("error %v", err)
	}
}

// TestExportVariants writes drafts with EAGLE-3.1's norms and with more than one layer in every layout,
// reads them back (Write validates every tensor bit for bit) and checks what engines read: the config keys,
// the tensor names and the refusal of SGLang's layout for a deeper draft.
func TestExportVariants(t *testing.T) {
	base := goldenDraft(t)
	for _, v := range []struct {
		name string
		edit func(*draft.Config)
		keys map[string]any // config.json keys of the sglang/vllm layouts
		has  []string       // tensors of the vllm layout
	}{
		{"fc_norm", func(c *draft.Config) { c.FCNorm = true }, map[string]any{"fc_norm": true, "num_hidden_layers": 1.0},
			[]string{"fc_norm.0.weight", "fc_norm.2.weight", "midlayer.hidden_norm.weight"}},
		{"norm_output", func(c *draft.Config) { c.NormOutput = true }, map[string]any{"norm_output": true}, []string{"midlayer.self_attn.q_proj.weight"}},
		{"two layers", func(c *draft.Config) { c.NumLayers = 2 }, map[string]any{"num_hidden_layers": 2.0},
			[]string{"layers.0.hidden_norm.weight", "layers.1.input_layernorm.weight", "layers.1.self_attn.q_proj.weight"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := base.Config
			v.edit(&c)
			w := draft.NewWeights(&c)
			w.Init(&c, 5, 0.02)
			d, err := draft.New(c, base.Embed, base.Vocab, w)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []Format{SGLang, VLLM, Speculators} {
				dir := filepath.Join(t.TempDir(), string(f))
				err := Write(dir, d, f, Options{})
				if f == SGLang && c.Layers() > 1 {
					if err == nil || !strings.Contains(err.Error(), "serves one") {
						t.Errorf("sglang export of %d layers: error %v, want a refusal saying SGLang serves one", c.Layers(), err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				im, err := Read(dir)
				if err != nil {
					t.Fatal(err)
				}
				if im.Config.Layers() != c.Layers() || im.Config.FCNorm != c.FCNorm || im.Config.NormOutput != c.NormOutput {
					t.Errorf("%s reads back with %d layers, fc_norm %v, norm_output %v", f, im.Config.Layers(), im.Config.FCNorm, im.Config.NormOutput)
				}
				raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				var cfg map[string]any
				if err := json.Unmarshal(raw, &cfg); err != nil {
					t.Fatal(err)
				}
				if f == Speculators {
					layer, _ := cfg["transformer_layer_config"].(map[string]any)
					cfg["num_hidden_layers"] = layer["num_hidden_layers"]
				}
				for k, want := range v.keys {
					if cfg[k] != want {
						t.Errorf("%s config.json: %s = %v, want %v", f, k, cfg[k], want)
					}
				}
				if f != VLLM {
					continue
				}
				st, err := safetensors.Open(filepath.Join(dir, "model.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				names := st.Names()
				st.Close()
				for _, n := range v.has {
					if !slices.Contains(names, n) {
						t.Errorf("vllm export lacks %s (has %v)", n, names)
					}
				}
			}
		})
	}
}
