package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// goldenModelDirs lists the model folders of a forward case.
// forEachModel runs f as a subtest on each model folder of the case, loaded.
func forEachModel(t *testing.T, c *goldentest.Case, f func(t *testing.T, m *Model)) {
	for _, dir := range goldenModelDirs(t, c) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			m, err := LoadWith(dir, backend.F32Product) // the goldens compute a bf16 folder as its float32 copy
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			f(t, m)
		})
	}
}

func goldenModelDirs(t *testing.T, c *goldentest.Case) []string {
	if _, ok := c.Manifest.Hyperparams["model_folders"]; ok {
		var folders []string
		c.Hyper(t, "model_folders", &folders)
		for i := range folders {
			folders[i] = filepath.Join(c.Dir, folders[i])
		}
		return folders
	}
	var rel string
	c.Hyper(t, "model", &rel)
	rel, _, _ = strings.Cut(rel, " ") // "../models/x (relative to this case folder)"
	return []string{filepath.Join(c.Dir, rel)}
}

// forwardBatch is the batch of a forward case's inputs, shaped as input_ids is.
func forwardBatch(t *testing.T, c *goldentest.Case) Batch {
	ids := c.Ints(t, "inputs.safetensors", "input_ids")
	mask := c.Ints(t, "inputs.safetensors", "attention_mask")
	shape := c.Tensor(t, "inputs.safetensors", "input_ids").Shape
	b := Batch{B: shape[0], T: shape[1], IDs: make([]int32, len(ids)), AttentionMask: make([]bool, len(ids))}
	for i := range ids {
		b.IDs[i], b.AttentionMask[i] = int32(ids[i]), mask[i] == 1
	}
	return b
}

func TestGoldenForward(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		forEachModel(t, c, func(t *testing.T, m *Model) {
			if len(m.Unused) > 0 {
				t.Errorf("unused tensors: %v", m.Unused)
			}
			b := forwardBatch(t, c)
			var defIDs, explicit []int
			c.Hyper(t, "aux_layer_ids_default", &defIDs)
			c.Hyper(t, "aux_layer_ids_explicit", &explicit)
			if got := m.Config.DefaultAuxLayers(); !equalInts(got, defIDs) {
				t.Errorf("default aux layers %v, want %v", got, defIDs)
			}
			all := make([]int, m.Config.NumLayers)
			for i := range all {
				all[i] = i
			}
			// Padded rows see the same keys as in the reference, but the manifest allows comparing only
			// real rows; we compare them all where the mask is full.
			rows := b.AttentionMask
			exp := "expected_f64.safetensors"
			for _, aux := range []struct {
				ids  []int
				name string
			}{{defIDs, "aux_hidden"}, {explicit, "aux_hidden_explicit"}} {
				out, err := m.Forward(b, nil, Request{AuxLayers: aux.ids, Logits: AllLogits})
				if err != nil {
					t.Fatal(err)
				}
				c.Compare(t, exp, aux.name, out.Aux, rows)
				if aux.name == "aux_hidden" {
					c.Compare(t, exp, "logits", out.Logits, rows)
					c.Compare(t, exp, "final_hidden", out.Hidden, rows)
				}
			}
			out, err := m.Forward(b, nil, Request{AuxLayers: all})
			if err != nil {
				t.Fatal(err)
			}
			// layer_outputs is [N, B, T, H]; Aux is [B*T, N*H].
			H, N := m.Config.HiddenSize, m.Config.NumLayers
			layers := make([]float32, len(out.Aux))
			layerRows := make([]bool, N*b.B*b.T)
			for l := 0; l < N; l++ {
				for r := 0; r < b.B*b.T; r++ {
					copy(layers[(l*b.B*b.T+r)*H:(l*b.B*b.T+r+1)*H], out.Aux[r*N*H+l*H:r*N*H+(l+1)*H])
					layerRows[l*b.B*b.T+r] = rows[r]
				}
			}
			c.Compare(t, "intermediates_f64.safetensors", "layer_outputs", layers, layerRows)
			checkRopeTables(t, c, m.Config, b.T)
		})
	})
}

func checkRopeTables(t *testing.T, c *goldentest.Case, cfg *Config, T int) {
	inv, scale := cfg.Rope.Frequencies(T)
	inv32 := make([]float32, len(inv))
	for i, f := range inv {
		inv32[i] = float32(f)
	}
	file := "intermediates_f64.safetensors"
	c.Compare(t, file, "rope_inv_freq", inv32, nil)
	pos := make([]int32, T)
	for i := range pos {
		pos[i] = int32(i)
	}
	tab := rope.NewTable(inv, scale, pos)
	half := tab.Half
	cos, sin := make([]float32, T*2*half), make([]float32, T*2*half)
	for p := 0; p < T; p++ {
		for i := 0; i < half; i++ {
			cos[p*2*half+i], cos[p*2*half+half+i] = tab.Cos[p*half+i], tab.Cos[p*half+i]
			sin[p*2*half+i], sin[p*2*half+half+i] = tab.Sin[p*half+i], tab.Sin[p*half+i]
		}
	}
	c.Compare(t, file, "rope_cos", cos, nil)
	c.Compare(t, file, "rope_sin", sin, nil)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGoldenGreedy decodes greedily from each forward case's greedy_prompt with the KV cache and compares
// with the reference's full-recompute greedy ids.
func TestGoldenGreedy(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		if !c.Has("expected_f64.safetensors", "greedy_ids") {
			t.Skip("no greedy_ids in this case")
		}
		want := c.Ints(t, "expected_f64.safetensors", "greedy_ids")
		prompt := c.Ints(t, "inputs.safetensors", "greedy_prompt")
		forEachModel(t, c, func(t *testing.T, m *Model) {
			ids := make([]int32, len(prompt))
			for i, id := range prompt {
				ids[i] = int32(id)
			}
			got := greedy(t, m, ids, len(want))
			for i := range want {
				if int64(got[i]) != want[i] {
					t.Fatalf("greedy ids %v, want %v", got, want)
				}
			}
		})
	})
}

// TestVerifyMatchesSteps: the logits and aux states a cached forward of T tokens gives each row are bit for
// bit those of decoding the tokens one at a time. Speculative decoding verifies drafted tokens in one forward,
// and its greedy output equals target-only decoding exactly because of this, not only up to ties. Besides
// the golden models (at most 2 query heads per KV head), random-weight models have Llama-3's 4 and 8.
func TestVerifyMatchesSteps(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		for _, dir := range goldenModelDirs(t, c) { // a bf16 folder multiplies in bf16 products
			t.Run(filepath.Base(dir), func(t *testing.T) {
				m, err := Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				var aux []int
				c.Hyper(t, "aux_layer_ids_explicit", &aux)
				verifyMatchesSteps(t, m, aux)
			})
		}
	})
	// bf16 matrices multiply in bf16 products, whose rows are as independent of each other (package bfgemm).
	for _, c := range []struct {
		kv   int
		bf16 bool
	}{{2, false}, {1, false}, {2, true}} {
		kv := c.kv
		name := fmt.Sprintf("random_8heads_%dkv", kv)
		if c.bf16 {
			name += "_bf16"
		}
		t.Run(name, func(t *testing.T) {
			rc, err := rope.ParseScaling(nil, 10000, 16, 256)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &Config{Architecture: "LlamaForCausalLM", VocabSize: 300, HiddenSize: 128, IntermediateSize: 256,
				NumLayers: 2, NumHeads: 8, NumKVHeads: kv, HeadDim: 16, RMSNormEps: 1e-5, Rope: rc,
				MaxPositionEmbeddings: 256}
			m, err := New(cfg, randomSource{r: rand.New(rand.NewPCG(5, uint64(kv))), bf16: c.bf16})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			verifyMatchesSteps(t, m, []int{0, 1})
		})
	}
}

// verifyMatchesSteps checks TestVerifyMatchesSteps's property on m after a 37-token context less the T
// verified ones.
func verifyMatchesSteps(t *testing.T, m *Model, aux []int) {
	V := m.Config.VocabSize
	ctx := make([]int32, 37)
	for i := range ctx {
		ctx[i] = int32(1 + i*13%(V-1))
	}
	for _, T := range []int{2, 3, 6, 8} {
		span := ctx[len(ctx)-T:]
		prefill := Batch{B: 1, T: len(ctx) - T, IDs: ctx[:len(ctx)-T]}
		together, steps := m.NewCache(1, 64), m.NewCache(1, 64)
		for _, cache := range []*KVCache{together, steps} {
			if _, err := m.Forward(prefill, cache, Request{}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := m.Forward(Batch{B: 1, T: T, IDs: span}, together, Request{AuxLayers: aux, Logits: AllLogits})
		if err != nil {
			t.Fatal(err)
		}
		width := len(aux) * m.Config.HiddenSize
		for i, id := range span {
			one, err := m.Forward(Batch{B: 1, T: 1, IDs: []int32{id}}, steps, Request{AuxLayers: aux, Logits: AllLogits})
			if err != nil {
				t.Fatal(err)
			}
			for _, cmp := range []struct {
				name      string
				got, want []float32
			}{
				{"logit", one.Logits, all.Logits[i*V : (i+1)*V]},
				{"aux", one.Aux, all.Aux[i*width : (i+1)*width]},
			} {
				for j := range cmp.got {
					if cmp.got[j] != cmp.want[j] {
						t.Fatalf("T=%d row %d %s %d: %g in one step, %g in the forward of %d", T, i, cmp.name, j, cmp.got[j], cmp.want[j], T)
					}
				}
			}
		}
	}
}

func greedy(t *testing.T, m *Model, prompt []int32, n int) []int32 {
	cache := m.NewCache(1, 8)
	ids := prompt
	var out []int32
	for len(out) < n {
		o, err := m.Forward(Batch{B: 1, T: len(ids), IDs: ids}, cache, Request{Logits: LastLogits})
		if err != nil {
			t.Fatal(err)
		}
		next := int32(m.be.Argmax(tensor.FromF32(o.Logits)))
		out = append(out, next)
		ids = []int32{next}
	}
	return out
}

// TestCacheMatchesPrefill checks that decoding in chunks through the KV cache (with padding in the batch)
// gives the golden logits on real rows, and those of one full prefill on every row: each of the two float32
// runs may be off the reference by the manifest's tolerance, so they may differ from each other by twice it.
func TestCacheMatchesPrefill(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		m, err := Load(goldenModelDirs(t, c)[0])
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		full := forwardBatch(t, c)
		B, T := full.B, full.T
		ref, err := m.Forward(full, nil, Request{Logits: AllLogits})
		if err != nil {
			t.Fatal(err)
		}
		tol := c.F32Tolerance(t, "expected_f64.safetensors", "logits")
		cache := m.NewCache(B, 4) // forces the cache to grow
		V := m.Config.VocabSize
		cached := make([]float32, B*T*V)
		for t0 := 0; t0 < T; {
			step := min(1+t0%3, T-t0) // chunks of 1, 2 and 3 tokens
			b := Batch{B: B, T: step, IDs: make([]int32, B*step), AttentionMask: make([]bool, B*step)}
			for r := 0; r < B; r++ {
				for j := 0; j < step; j++ {
					b.IDs[r*step+j] = full.IDs[r*T+t0+j]
					b.AttentionMask[r*step+j] = full.AttentionMask[r*T+t0+j]
				}
			}
			o, err := m.Forward(b, cache, Request{Logits: AllLogits})
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < B; r++ {
				for j := 0; j < step; j++ {
					got := o.Logits[(r*step+j)*V : (r*step+j+1)*V]
					copy(cached[(r*T+t0+j)*V:], got)
					want := ref.Logits[(r*T+t0+j)*V : (r*T+t0+j+1)*V]
					for v := range got {
						if d := math.Abs(float64(got[v] - want[v])); d > 2*(tol.Atol+tol.Rtol*math.Abs(float64(want[v]))) {
							t.Fatalf("row %d token %d: cached logit %g, prefill %g", r, t0+j, got[v], want[v])
						}
					}
				}
			}
			t0 += step
		}
		c.Compare(t, "expected_f64.safetensors", "logits", cached, full.AttentionMask)
	})
}

// TestF16Checkpoint re-saves the float32 model of each forward case in float16 and checks the forward against
// the same goldens. It needs bf16-representable weights (the random targets'), which float16 holds exactly but
// for the tiniest; it says so and skips a model with others (a trained one).
func TestF16Checkpoint(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		srcDir := goldenModelDirs(t, c)[0]
		src, err := safetensors.OpenCheckpoint(srcDir)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dir := t.TempDir()
		var ts []safetensors.Tensor
		for _, name := range src.Names() {
			x, _ := src.Tensor(name)
			v, err := x.Float32()
			if err != nil {
				t.Fatal(err)
			}
			asBF16 := safetensors.FromFloat32(name, safetensors.BF16, x.Shape, v)
			bf, err := asBF16.Float32()
			if err != nil {
				t.Fatal(err)
			}
			for i := range v {
				if bf[i] != v[i] {
					t.Skipf("%s[%d] = %g is not bf16-representable: float16 would round the weights beyond the goldens' tolerance", name, i, v[i])
				}
			}
			ts = append(ts, safetensors.FromFloat32(name, safetensors.F16, x.Shape, v))
		}
		if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
			t.Fatal(err)
		}
		cfg, err := os.ReadFile(filepath.Join(srcDir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		b := forwardBatch(t, c)
		var aux []int
		c.Hyper(t, "aux_layer_ids_default", &aux)
		out, err := m.Forward(b, nil, Request{AuxLayers: aux, Logits: AllLogits})
		if err != nil {
			t.Fatal(err)
		}
		c.Compare(t, "expected_f64.safetensors", "logits", out.Logits, b.AttentionMask)
		c.Compare(t, "expected_f64.safetensors", "aux_hidden", out.Aux, b.AttentionMask)
	})
}
