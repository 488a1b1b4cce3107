package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/backend/purego"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// randomMoE is a random Qwen2-MoE layer stack with many tokens per expert (the goldens have a few), so the
// grouping, the experts' products in parallel and the shared expert run at sizes that split across cores.
func randomMoE(t *testing.T, be backend.Backend, bf16 bool, p backend.Product) *Model {
	t.Helper()
	cfg, err := ParseConfig("config.json", []byte(`{"architectures": ["Qwen2MoeForCausalLM"], "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50,
		"num_experts": 16, "num_experts_per_tok": 4, "moe_intermediate_size": 40, "shared_expert_intermediate_size": 24,
		"norm_topk_prob": true}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewOn(be, cfg, randomSource{r: rand.New(rand.NewPCG(7, 7)), bf16: bf16}, p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestExpertsMatchPerToken compares the grouped mixture-of-experts MLP with a float64 loop over tokens that
// routes and runs each token by itself, as the definition reads; tokens whose k-th and (k+1)-th router
// probabilities lie too close for float32 to order them surely are left out.
func TestExpertsMatchPerToken(t *testing.T) {
	for _, c := range []struct {
		name string
		be   backend.Backend
		bf16 bool
		p    backend.Product
	}{
		{"f32", auto.Default(), false, backend.F32Product},
		{"f32_purego", purego.New(), false, backend.F32Product},
		{"bf16", auto.Default(), true, backend.BF16Product},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := randomMoE(t, c.be, c.bf16, c.p)
			cfg := m.Config
			H, N := cfg.HiddenSize, 600
			r := rand.New(rand.NewPCG(3, 3))
			x := make([]float32, N*H)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			h := make([]float32, N*H)
			for i := range h {
				h[i] = float32(r.NormFloat64())
			}
			want, skip := referenceExperts(t, m, 1, x, h, c.bf16)
			m.experts(1, tensor.Vec(h), tensor.Vec(x), N)
			checked := 0
			for tok := 0; tok < N; tok++ {
				if skip[tok] {
					continue
				}
				checked++
				for i := tok * H; i < (tok+1)*H; i++ {
					if d := math.Abs(float64(h[i]) - want[i]); d > 2e-4*(1+math.Abs(want[i])) {
						t.Fatalf("token %d: h[%d] = %g, want %g", tok, i-tok*H, h[i], want[i])
					}
				}
			}
			if checked < N*9/10 {
				t.Fatalf("only %d of %d tokens had clear routing", checked, N)
			}
		})
	}
}

// referenceExperts is h + MoE(x) for layer li in float64, token by token: in a bf16 model x is rounded to
// bf16 before each product, as bf16 products do (and the experts' intermediate activations before the down
// projection).
func referenceExperts(t *testing.T, m *Model, li int, x, h []float32, bf16 bool) (out []float64, unclear []bool) {
	cfg, moe, l := m.Config, m.Config.MoE, &m.Layers[li]
	H, N := cfg.HiddenSize, len(x)/cfg.HiddenSize
	round := func(v []float64) []float64 {
		if !bf16 {
			return v
		}
		r := make([]float64, len(v))
		for i, f := range v {
			r[i] = float64(half.RoundBF16(float32(f)))
		}
		return r
	}
	matrix := func(w tensor.Tensor) []float32 {
		if w.DType() == tensor.F32 {
			return w.F32()
		}
		f, err := half.Widen(w)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	apply := func(w tensor.Tensor, in []float64) []float64 {
		ww, rows := matrix(w), w.Shape()[0]
		in = round(in)
		y := make([]float64, rows)
		for o := range y {
			for i, v := range in {
				y[o] += float64(ww[o*len(in)+i]) * v
			}
		}
		return y
	}
	swiglu := func(e Expert, in []float64) []float64 {
		g, u := apply(e.Gate, in), apply(e.Up, in)
		for i := range g {
			g[i] = g[i] / (1 + math.Exp(-g[i])) * u[i]
		}
		return apply(e.Down, g)
	}
	out, unclear = make([]float64, N*H), make([]bool, N)
	for tok := 0; tok < N; tok++ {
		in := make([]float64, H)
		for i := range in {
			in[i] = float64(x[tok*H+i])
			out[tok*H+i] = float64(h[tok*H+i])
		}
		logits := apply(l.Router, in)
		p := make([]float64, len(logits))
		mx := math.Inf(-1)
		for _, v := range logits {
			mx = math.Max(mx, v)
		}
		var sum float64
		for i, v := range logits {
			p[i] = math.Exp(v - mx)
			sum += p[i]
		}
		order := make([]int, len(p))
		for i := range order {
			p[i] /= sum
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool { return p[order[a]] > p[order[b]] })
		K := moe.TopK
		unclear[tok] = p[order[K-1]]-p[order[K]] < 1e-4
		var kept float64
		for _, e := range order[:K] {
			kept += p[e]
		}
		for _, e := range order[:K] {
			w := p[e]
			if moe.NormTopK {
				w /= kept
			}
			y := swiglu(l.Experts[e], in)
			for i := range y {
				out[tok*H+i] += w * y[i]
			}
		}
		if !l.SharedGate.IsNil() {
			g := 1 / (1 + math.Exp(-apply(l.SharedGate, in)[0]))
			y := swiglu(l.Shared, in)
			for i := range y {
				out[tok*H+i] += g * y[i]
			}
		}
	}
	return out, unclear
}

// dropSource hides one tensor of a checkpoint, or gives it another shape.
type dropSource struct {
	checkpointSource
	name    string
	reshape bool
}

func (s *dropSource) Get(name string, optional bool, shape ...int) (tensor.Tensor, error) {
	if name == s.name {
		if !s.reshape {
			return s.checkpointSource.Get(name+".missing", optional, shape...)
		}
		shape = append([]int{shape[0] + 1}, shape[1:]...)
	}
	return s.checkpointSource.Get(name, optional, shape...)
}

// TestMoEBadCheckpoint loads each MoE golden target with one expert tensor missing or of another shape:
// the error names the tensor.
func TestMoEBadCheckpoint(t *testing.T) {
	goldentest.ForEach(t, goldentest.Forward, func(t *testing.T, c *goldentest.Case) {
		dir := goldenModelDirs(t, c)[0]
		cfg, err := LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.MoE == nil {
			t.Skip("a dense target")
		}
		ckpt, err := safetensors.OpenCheckpoint(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer ckpt.Close()
		layer := 0
		for !cfg.MoE.Sparse[layer] {
			layer++
		}
		names := []string{cfg.MoE.Module + ".gate.weight", cfg.MoE.Module + ".experts.1." + cfg.MoE.Proj[2] + ".weight"}
		if cfg.MoE.SharedIntermediateSize > 0 {
			names = append(names, "mlp.shared_expert_gate.weight", "mlp.shared_expert.up_proj.weight")
		}
		for _, n := range names {
			name := fmt.Sprintf("model.layers.%d.%s", layer, n)
			for _, reshape := range []bool{false, true} {
				_, err := NewOn(auto.Default(), cfg, &dropSource{checkpointSource{ckpt: ckpt, used: map[string]bool{}}, name, reshape}, DefaultProduct)
				if err == nil || !strings.Contains(err.Error(), name) {
					t.Errorf("%s (reshaped %v): got %v, want an error naming it", name, reshape, err)
				}
			}
		}
	})
}

func TestTopK(t *testing.T) {
	for _, c := range []struct {
		p    []float32
		k    int
		want []int32
	}{
		{[]float32{0.1, 0.4, 0.2, 0.3}, 2, []int32{1, 3}},
		{[]float32{0.1, 0.4, 0.2, 0.3}, 4, []int32{1, 3, 2, 0}},
		{[]float32{0.25, 0.25, 0.25, 0.25}, 3, []int32{0, 1, 2}}, // ties: the lower index first
		{[]float32{0.5, 0.1, 0.1, 0.3}, 3, []int32{0, 3, 1}},
		{[]float32{0.9}, 1, []int32{0}},
	} {
		experts, weights := make([]int32, c.k), make([]float32, c.k)
		topK(experts, weights, c.p)
		for i, e := range experts {
			if e != c.want[i] || weights[i] != c.p[e] {
				t.Errorf("topK(%v, %d) = %v %v, want %v", c.p, c.k, experts, weights, c.want)
				break
			}
		}
	}
}
