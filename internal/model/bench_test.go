package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/memstat"
	"github.com/specforge/specforge/internal/rope"
	"github.com/specforge/specforge/internal/tensor"
)

// randomSource yields normal weights with std 1/sqrt(fan_in) and norm weights near 1, like the PyTorch
// peer's random_target_weights, so activations stay O(1); with bf16 set, the matrices are BF16 tensors (as a
// bf16 checkpoint's are), the norms float32.
type randomSource struct {
	r    *rand.Rand
	bf16 bool
}

func (s randomSource) Get(name string, optional bool, shape ...int) (tensor.Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	w := make([]float32, n)
	if strings.HasSuffix(name, "norm.weight") {
		for i := range w {
			w[i] = float32(1 + 0.1*s.r.NormFloat64())
		}
		return tensor.FromF32(w, shape...), nil
	}
	std := 1 / math.Sqrt(float64(shape[len(shape)-1]))
	for i := range w {
		w[i] = float32(s.r.NormFloat64() * std)
	}
	if !s.bf16 {
		return tensor.FromF32(w, shape...), nil
	}
	raw := make([]byte, 2*n)
	bits := unsafe.Slice((*uint16)(unsafe.Pointer(&raw[0])), n)
	half.F32ToBF16(bits, w)
	return tensor.FromBytes(tensor.BF16, tensor.Host, raw, shape...)
}

// randomSlice is a random slice of a target's shape (../shared/bench/bench.py's SLICES): a few decoder
// layers and the full vocabulary.
func randomSlice(b *testing.B, cfg *Config, bf16 bool) *Model {
	m, err := New(cfg, randomSource{r: rand.New(rand.NewPCG(0, 0)), bf16: bf16})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// llama1BConfig is the Llama-3.2-1B shape cut to two layers, as in ../shared/bench/bench.py.
func llama1BConfig(b *testing.B) *Config {
	rc, err := rope.ParseScaling([]byte(`{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`), 500000, 64, 131072)
	if err != nil {
		b.Fatal(err)
	}
	return &Config{Architecture: "LlamaForCausalLM", VocabSize: 128256, HiddenSize: 2048, IntermediateSize: 8192,
		NumLayers: 2, NumHeads: 32, NumKVHeads: 8, HeadDim: 64, RMSNormEps: 1e-5, Rope: rc,
		MaxPositionEmbeddings: 131072, TieWordEmbeddings: true}
}

// llama8BConfig is the Llama-3.1-8B shape cut to four layers, as in ../shared/bench/bench.py.
func llama8BConfig(b *testing.B) *Config {
	rc, err := rope.ParseScaling([]byte(`{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}`), 500000, 128, 131072)
	if err != nil {
		b.Fatal(err)
	}
	return &Config{Architecture: "LlamaForCausalLM", VocabSize: 128256, HiddenSize: 4096, IntermediateSize: 14336,
		NumLayers: 4, NumHeads: 32, NumKVHeads: 8, HeadDim: 128, RMSNormEps: 1e-5, Rope: rc,
		MaxPositionEmbeddings: 131072}
}

// qwen3MoeConfig is the Qwen3-30B-A3B shape (128 experts, top-8 of moe_intermediate_size 768) cut to two
// layers, as in ../shared/bench/bench.py.
func qwen3MoeConfig(b *testing.B) *Config {
	cfg, err := ParseConfig("qwen3moe", []byte(`{"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 151936,
		"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 2, "num_attention_heads": 32,
		"num_key_value_heads": 4, "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
		"max_position_embeddings": 40960, "tie_word_embeddings": false, "num_experts": 128, "num_experts_per_tok": 8,
		"moe_intermediate_size": 768, "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": []}`))
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

func llama1BSlice(b *testing.B) *Model      { return randomSlice(b, llama1BConfig(b), false) }
func llama1BSliceBF16(b *testing.B) *Model  { return randomSlice(b, llama1BConfig(b), true) }
func llama8BSlice(b *testing.B) *Model      { return randomSlice(b, llama8BConfig(b), false) }
func llama8BSliceBF16(b *testing.B) *Model  { return randomSlice(b, llama8BConfig(b), true) }
func qwen3MoeSlice(b *testing.B) *Model     { return randomSlice(b, qwen3MoeConfig(b), false) }
func qwen3MoeSliceBF16(b *testing.B) *Model { return randomSlice(b, qwen3MoeConfig(b), true) }

// BenchmarkPrefill measures a full forward (all logits, aux states) in tokens/s, with the process's peak
// resident memory. Run one sub-benchmark per process for a per-shape peak: -bench 'Prefill/1b_2layer_T1024$'.
// The _bf16 slices hold bf16 matrices and multiply in bf16 products, as the peer's *_bf16 configurations do.
// The qwen3moe slices route each token to 8 of 128 experts: their router is random, so tokens spread over the
// experts about evenly (a trained router is less even, which the grouped products do not mind).
func BenchmarkPrefill(b *testing.B) {
	cases := []struct {
		name  string
		B, T  int
		load  func(b *testing.B) *Model
		aux   []int
		vocab int
	}{
		{name: "1b_2layer_T1024", B: 1, T: 1024, load: llama1BSlice, aux: []int{0, 1, 1}},
		{name: "1b_2layer_T1024_bf16", B: 1, T: 1024, load: llama1BSliceBF16, aux: []int{0, 1, 1}},
		{name: "8b_4layer_T1024", B: 1, T: 1024, load: llama8BSlice, aux: []int{0, 2, 3}},
		{name: "8b_4layer_T1024_bf16", B: 1, T: 1024, load: llama8BSliceBF16, aux: []int{0, 2, 3}},
		{name: "qwen3moe_2layer_T1024", B: 1, T: 1024, load: qwen3MoeSlice, aux: []int{0, 1, 1}},
		{name: "qwen3moe_2layer_T1024_bf16", B: 1, T: 1024, load: qwen3MoeSliceBF16, aux: []int{0, 1, 1}},
		{name: "stories260k_B8_T512", B: 8, T: 512, load: loadStories},
		{name: "stories260k_B1_T256", B: 1, T: 256, load: loadStories},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			m := c.load(b)
			aux := c.aux
			if aux == nil {
				aux = m.Config.DefaultAuxLayers()
			}
			r := rand.New(rand.NewPCG(1, 1))
			ids := make([]int32, c.B*c.T)
			for i := range ids {
				ids[i] = int32(r.IntN(m.Config.VocabSize))
			}
			batch := Batch{B: c.B, T: c.T, IDs: ids}
			// Each forward refills the previous output's buffers, as a serving or training loop does.
			out, err := m.Forward(batch, nil, Request{AuxLayers: aux, Logits: AllLogits}) // warm-up
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := m.Forward(batch, nil, Request{AuxLayers: aux, Logits: AllLogits, Reuse: out}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(c.B*c.T*b.N)/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(forwardFlops(m.Config, c.B, c.T)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			b.ReportMetric(memstat.PeakRSSMiB(), "peakRSS_MiB")
		})
	}
}

// forwardFlops is the arithmetic of a prefill of B rows of T tokens with all logits: 2 flops per active
// weight per token (attention projections, the dense MLP or the router and the top-k experts, lm_head) and
// the causal attention's products (T(T+1)/2 query-key pairs, two products of head_dim each per head).
func forwardFlops(c *Config, B, T int) float64 {
	H, d := c.HiddenSize, c.HeadDim
	q, kv := c.NumHeads*d, c.NumKVHeads*d
	attn := float64(H*q + 2*H*kv + q*H)
	var perToken float64
	for l := 0; l < c.NumLayers; l++ {
		mlp := float64(3 * H * c.IntermediateSize)
		if c.sparse(l) {
			m := c.MoE
			mlp = float64(H*m.Experts + m.TopK*3*H*m.IntermediateSize + 3*H*m.SharedIntermediateSize)
		}
		perToken += attn + mlp
	}
	perToken += float64(H * c.VocabSize)
	pairs := float64(T) * float64(T+1) / 2
	return float64(B) * (2*perToken*float64(T) + float64(c.NumLayers)*pairs*4*float64(q))
}

func loadStories(b *testing.B) *Model {
	m, err := Load(goldentest.Shared(b, "assets", "models", "stories260K"))
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkDecodeStep measures one cached forward of T new tokens after a 100-token context: T=1 is a
// decoding step, T=6 the verification of a 5-token draft chain. Their ratio bounds what speculative decoding
// can gain: on stories260K (5 layers of width 64) a step is mostly per-operation overhead and arithmetic; on
// the Llama-3.2-1B-shaped slice, mostly the lm_head over 128,256 tokens, which verification needs for every
// row.
func BenchmarkDecodeStep(b *testing.B) {
	for _, name := range []string{"stories", "1b", "1b_bf16"} {
		b.Run(name, func(b *testing.B) {
			var m *Model
			switch name {
			case "1b":
				m = llama1BSlice(b)
			case "1b_bf16":
				m = llama1BSliceBF16(b)
			default:
				var err error
				if m, err = Load(goldentest.Shared(b, "assets", "models", "stories260K")); err != nil {
					b.Fatal(err)
				}
			}
			ctx := make([]int32, 100)
			for i := range ctx {
				ctx[i] = int32(1 + i*7%500)
			}
			for _, T := range []int{1, 2, 4, 6, 8} {
				b.Run(fmt.Sprintf("T%d", T), func(b *testing.B) {
					cache := m.NewCache(1, 128)
					if _, err := m.Forward(Batch{B: 1, T: len(ctx), IDs: ctx}, cache, Request{}); err != nil {
						b.Fatal(err)
					}
					out := &Output{}
					req := Request{AuxLayers: []int{1, 1, 1}, Logits: AllLogits, Reuse: out}
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						cache.Truncate(len(ctx))
						if _, err := m.Forward(Batch{B: 1, T: T, IDs: ctx[:T]}, cache, req); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/forward")
				})
			}
		})
	}
}
