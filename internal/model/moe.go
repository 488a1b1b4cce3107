package model

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/backend"
	"github.com/specforge/specforge/internal/tensor"
)

// MoE is a mixture-of-experts MLP: a router [Experts, H] scores every token, softmax in float32 over all
// experts, and the TopK most probable experts (SwiGLU MLPs of IntermediateSize) process it, their outputs
// weighted by the kept probabilities (renormalised to sum 1 when NormTopK) and summed. Qwen2-MoE adds a
// shared expert that sees every token, its output scaled by sigmoid(shared_expert_gate · x).
type MoE struct {
	Experts, TopK, IntermediateSize int
	NormTopK                        bool
	SharedIntermediateSize          int    // 0: no shared expert
	Sparse                          []bool // per layer: the layer's MLP is the experts' (else a dense MLP)
	// Module is the weights' module within a layer ("mlp", Mixtral's "block_sparse_moe"), Proj the names
	// of an expert's gate, up and down projections.
	Module string
	Proj   [3]string
}

// slots is how many outputs a token's MLP sums: its TopK experts', and the shared expert's when there is one.
func (m *MoE) slots() int {
	if m.SharedIntermediateSize > 0 {
		return m.TopK + 1
	}
	return m.TopK
}

// moeDefaults are an MoE family's Hugging Face config defaults, used for absent fields.
type moeDefaults struct {
	experts, topK, intermediate, shared int
	normTopK, alwaysNorm                bool // alwaysNorm: Mixtral, which has no norm_topk_prob
	sparseEveryLayer                    bool // Mixtral: no decoder_sparse_step or mlp_only_layers
	module                              string
	proj                                [3]string
}

// unsupportedMoEFields are routing fields of other MoE families (DeepSeek, GLM, ...), each with the value
// that means what we compute (nil: none does). A config that sets one otherwise routes in a way we do not.
var unsupportedMoEFields = []struct {
	name, neutral string
}{
	{"n_shared_experts", "0"}, {"num_shared_experts", "0"}, {"n_routed_experts", ""}, {"scoring_func", `"softmax"`},
	{"topk_method", `"greedy"`}, {"routed_scaling_factor", "1"}, {"n_group", "1"}, {"topk_group", "1"},
	{"first_k_dense_replace", "0"}, {"moe_layer_freq", "1"}, {"moe_router_type", ""}, {"router_type", ""},
}

// decodeMoE fills c.MoE from the config's mixture-of-experts fields, with defaults d for absent ones.
func decodeMoE(path string, raw *rawConfig, c *Config, d moeDefaults) error {
	for _, f := range unsupportedMoEFields {
		v, ok := raw.fields[f.name]
		if !ok || string(v) == "null" || f.neutral != "" && jsonEqual(v, f.neutral) {
			continue
		}
		return fmt.Errorf("%s: %s = %s is not supported by %s (its routing is %s's: softmax over all experts, top-k)", path, f.name, v, c.Architecture, c.Architecture)
	}
	m := &MoE{Experts: d.experts, TopK: d.topK, IntermediateSize: d.intermediate, NormTopK: d.normTopK || d.alwaysNorm,
		Module: d.module, Proj: d.proj}
	switch {
	case raw.NumExperts != nil && raw.NumLocalExperts != nil && *raw.NumExperts != *raw.NumLocalExperts:
		return fmt.Errorf("%s: num_experts %d and num_local_experts %d disagree", path, *raw.NumExperts, *raw.NumLocalExperts)
	case raw.NumExperts != nil:
		m.Experts = *raw.NumExperts
	case raw.NumLocalExperts != nil:
		m.Experts = *raw.NumLocalExperts
	}
	if raw.NumExpertsPerTok != nil {
		m.TopK = *raw.NumExpertsPerTok
	}
	if d.intermediate == 0 { // Mixtral: the experts are of intermediate_size
		m.IntermediateSize = c.IntermediateSize
	} else if raw.MoEIntermediateSize != nil {
		m.IntermediateSize = *raw.MoEIntermediateSize
	}
	if raw.NormTopKProb != nil && !d.alwaysNorm {
		m.NormTopK = *raw.NormTopKProb
	}
	if raw.SharedExpertIntermediateSize != nil {
		if d.shared == 0 && *raw.SharedExpertIntermediateSize > 0 {
			return fmt.Errorf("%s: shared_expert_intermediate_size is set, but %s has no shared expert (Qwen2MoeForCausalLM does)", path, c.Architecture)
		}
		if d.shared > 0 {
			m.SharedIntermediateSize = *raw.SharedExpertIntermediateSize
		}
	} else {
		m.SharedIntermediateSize = d.shared
	}
	if m.Experts == 0 && !d.sparseEveryLayer { // Qwen's num_experts 0: a dense model
		return nil
	}
	switch {
	case m.Experts <= 0:
		return fmt.Errorf("%s: num_experts must be positive, got %d", path, m.Experts)
	case m.Experts > MaxExperts:
		return inRange(path, "num_experts", m.Experts, 1, MaxExperts)
	case m.TopK <= 0 || m.TopK > m.Experts:
		return fmt.Errorf("%s: num_experts_per_tok must be in [1, num_experts = %d], got %d", path, m.Experts, m.TopK)
	case m.IntermediateSize <= 0:
		return fmt.Errorf("%s: moe_intermediate_size must be positive, got %d", path, m.IntermediateSize)
	case m.IntermediateSize > MaxIntermediateSize:
		return inRange(path, "moe_intermediate_size", m.IntermediateSize, 1, MaxIntermediateSize)
	case m.SharedIntermediateSize < 0 || m.SharedIntermediateSize > MaxIntermediateSize:
		return inRange(path, "shared_expert_intermediate_size", m.SharedIntermediateSize, 0, MaxIntermediateSize)
	}
	step := 1
	if raw.DecoderSparseStep != nil {
		if d.sparseEveryLayer {
			return fmt.Errorf("%s: decoder_sparse_step is not a field of %s (every layer is sparse)", path, c.Architecture)
		}
		if step = *raw.DecoderSparseStep; step <= 0 {
			return fmt.Errorf("%s: decoder_sparse_step must be positive, got %d", path, step)
		}
	}
	m.Sparse = make([]bool, c.NumLayers)
	for i := range m.Sparse {
		m.Sparse[i] = (i+1)%step == 0
	}
	if len(raw.MLPOnlyLayers) > 0 && d.sparseEveryLayer {
		return fmt.Errorf("%s: mlp_only_layers is not a field of %s (every layer is sparse)", path, c.Architecture)
	}
	for _, l := range raw.MLPOnlyLayers {
		if l < 0 || l >= c.NumLayers {
			return fmt.Errorf("%s: mlp_only_layers: layer %d out of range [0, %d)", path, l, c.NumLayers)
		}
		m.Sparse[l] = false
	}
	c.MoE = m
	return nil
}

// sparse reports whether layer i's MLP is a mixture of experts.
func (c *Config) sparse(i int) bool { return c.MoE != nil && c.MoE.Sparse[i] }

// jsonEqual reports whether the JSON value v equals want as a number, or as written.
func jsonEqual(v json.RawMessage, want string) bool {
	var a, b float64
	if json.Unmarshal(v, &a) == nil && json.Unmarshal([]byte(want), &b) == nil {
		return a == b
	}
	return string(v) == want
}

// Expert is the SwiGLU MLP of one expert, [out, in] matrices of the checkpoint's dtype.
type Expert struct {
	Gate, Up, Down tensor.Tensor
}

// preparedExpert is an expert's matrices prepared by the backend for products.
type preparedExpert struct {
	gate, up, down backend.Weight
}

// readExperts reads the router, experts and shared expert of sparse layer i into l.
func (c *Config) readExperts(l *Layer, i int, get func(name string, optional bool, shape ...int) tensor.Tensor) {
	m, H := c.MoE, c.HiddenSize
	p := fmt.Sprintf("model.layers.%d.%s.", i, m.Module)
	l.Router = get(p+"gate.weight", false, m.Experts, H)
	l.Experts = make([]Expert, m.Experts)
	for e := range l.Experts {
		q := fmt.Sprintf("%sexperts.%d.", p, e)
		l.Experts[e] = Expert{
			Gate: get(q+m.Proj[0]+".weight", false, m.IntermediateSize, H),
			Up:   get(q+m.Proj[1]+".weight", false, m.IntermediateSize, H),
			Down: get(q+m.Proj[2]+".weight", false, H, m.IntermediateSize),
		}
	}
	if Is := m.SharedIntermediateSize; Is > 0 {
		l.Shared = Expert{
			Gate: get(p+"shared_expert.gate_proj.weight", false, Is, H),
			Up:   get(p+"shared_expert.up_proj.weight", false, Is, H),
			Down: get(p+"shared_expert.down_proj.weight", false, H, Is),
		}
		l.SharedGate = get(p+"shared_expert_gate.weight", false, 1, H)
	}
}

// prepareExperts prepares the matrices of sparse layer l for products.
func (m *Model) prepareExperts(lt *preparedLayer, l *Layer, p backend.Product) error {
	var err error
	prep := func(w tensor.Tensor) backend.Weight {
		if err != nil {
			return nil
		}
		var pw backend.Weight
		pw, err = m.be.PrepareWeight(w, w.Shape()[0], w.Shape()[1], p)
		return pw
	}
	expert := func(e Expert) preparedExpert {
		return preparedExpert{gate: prep(e.Gate), up: prep(e.Up), down: prep(e.Down)}
	}
	lt.router = prep(l.Router)
	lt.experts = make([]preparedExpert, len(l.Experts))
	for e := range l.Experts {
		lt.experts[e] = expert(l.Experts[e])
	}
	if !l.SharedGate.IsNil() {
		lt.shared, lt.sharedGate = expert(l.Shared), prep(l.SharedGate)
	}
	return err
}

// moeScratch holds a sparse layer's activations for n tokens, reused by every sparse layer.
type moeScratch struct {
	n                int
	logits           []float32 // [n, E] router logits, then probabilities
	slotExpert       []int32   // [n, K] the experts of each token, ascending
	slotWeight       []float32 // [n, K'] their weights, then the shared expert's (K' = K+1 with one)
	from             []int32   // [n, K'] each slot's row in ys
	tokens           []int32   // [n*K] the token of each row of xs, grouped by expert
	xs               []float32 // [n*K, H] the tokens' inputs, grouped by expert; then ys [n*K', H], their outputs
	gate, up         []float32 // [n*K, I]
	sharedGate       []float32 // [n] the shared expert's gate logits
	sharedG, sharedU []float32 // [n, Is]
	offsets, fill    []int     // [E+1], [E]
	calls            []backend.LinearCall
}

func (m *Model) moeWorkspace(n int) *moeScratch {
	c := m.Config.MoE
	H, E, K, I, Is := m.Config.HiddenSize, c.Experts, c.TopK, c.IntermediateSize, c.SharedIntermediateSize
	slots := c.slots()
	if m.moe == nil || m.moe.n < n {
		m.moe = &moeScratch{
			n: n, logits: make([]float32, n*E), slotExpert: make([]int32, n*K), slotWeight: make([]float32, n*slots),
			from: make([]int32, n*slots), tokens: make([]int32, n*K), xs: make([]float32, n*slots*H),
			gate: make([]float32, n*K*I), up: make([]float32, n*K*I), sharedGate: make([]float32, n),
			sharedG: make([]float32, n*Is), sharedU: make([]float32, n*Is), offsets: make([]int, E+1), fill: make([]int, E),
		}
	}
	return m.moe
}

// experts adds the mixture-of-experts MLP of sparse layer li, applied to the normed rows x [N, H], to the
// residual stream h. Tokens are grouped by expert so that each expert multiplies all its tokens at once,
// experts in parallel; unused experts cost nothing.
func (m *Model) experts(li int, h, x tensor.Tensor, N int) {
	cfg, be := m.Config, m.be
	c, l := cfg.MoE, &m.layers[li]
	H, E, K, I, Is := cfg.HiddenSize, c.Experts, c.TopK, c.IntermediateSize, c.SharedIntermediateSize
	s := m.moeWorkspace(N)
	slots := c.slots()
	logits := s.logits[:N*E]
	be.Linear(tensor.Vec(logits), x, l.router, N, false)
	be.Softmax(tensor.Vec(logits), N, E)
	m.route(s, logits, N, slots)

	xs := s.xs[:N*K*H]
	be.Embedding(tensor.Vec(xs), x, s.tokens[:N*K], H) // gathers each expert's tokens
	calls := s.calls[:0]
	for e := 0; e < E; e++ {
		lo, hi := s.offsets[e], s.offsets[e+1]
		if lo == hi {
			continue
		}
		in := tensor.Vec(xs[lo*H : hi*H])
		calls = append(calls,
			backend.LinearCall{Y: tensor.Vec(s.gate[lo*I : hi*I]), X: in, W: l.experts[e].gate, Rows: hi - lo},
			backend.LinearCall{Y: tensor.Vec(s.up[lo*I : hi*I]), X: in, W: l.experts[e].up, Rows: hi - lo})
	}
	if Is > 0 {
		calls = append(calls,
			backend.LinearCall{Y: tensor.Vec(s.sharedG[:N*Is]), X: x, W: l.shared.gate, Rows: N},
			backend.LinearCall{Y: tensor.Vec(s.sharedU[:N*Is]), X: x, W: l.shared.up, Rows: N},
			backend.LinearCall{Y: tensor.Vec(s.sharedGate[:N]), X: x, W: l.sharedGate, Rows: N})
	}
	be.Linears(calls)
	gate := tensor.Vec(s.gate[:N*K*I])
	be.SwiGLUForward(gate, gate, tensor.Vec(s.up[:N*K*I]))
	ys := s.xs[:N*slots*H] // the inputs are spent: the outputs take their place
	calls = calls[:0]
	for e := 0; e < E; e++ {
		lo, hi := s.offsets[e], s.offsets[e+1]
		if lo < hi {
			calls = append(calls, backend.LinearCall{Y: tensor.Vec(ys[lo*H : hi*H]), X: tensor.Vec(s.gate[lo*I : hi*I]), W: l.experts[e].down, Rows: hi - lo})
		}
	}
	if Is > 0 {
		sg := tensor.Vec(s.sharedG[:N*Is])
		be.SwiGLUForward(sg, sg, tensor.Vec(s.sharedU[:N*Is]))
		calls = append(calls, backend.LinearCall{Y: tensor.Vec(ys[N*K*H:]), X: sg, W: l.shared.down, Rows: N})
		for t := 0; t < N; t++ {
			s.slotWeight[t*slots+K] = float32(1 / (1 + math.Exp(-float64(s.sharedGate[t]))))
		}
	}
	be.Linears(calls)
	s.calls = calls
	be.AddWeightedRows(h, tensor.Vec(ys), s.from[:N*slots], s.slotWeight[:N*slots], N, slots, H)
}

// route picks each token's TopK experts from its router probabilities p [N, E] (the most probable, the
// lower index on ties), weights them, and groups the (token, expert) pairs by expert: rows offsets[e] to
// offsets[e+1] of xs are expert e's tokens, ascending. A token's slots list its experts in ascending order
// (the order Hugging Face's loop over experts adds them in); the shared expert's slot, last, reads row
// N*K+t.
func (m *Model) route(s *moeScratch, p []float32, N, slots int) {
	c := m.Config.MoE
	E, K := c.Experts, c.TopK
	counts := s.offsets[1 : E+1]
	clear(counts)
	for t := 0; t < N; t++ {
		row := p[t*E : (t+1)*E]
		chosen := s.slotExpert[t*K : (t+1)*K]
		weights := s.slotWeight[t*slots : t*slots+K]
		topK(chosen, weights, row)
		var sum float32
		for _, w := range weights {
			sum += w
		}
		if c.NormTopK {
			for k := range weights {
				weights[k] /= sum
			}
		}
		sortSlots(chosen, weights)
		for _, e := range chosen {
			counts[e]++
		}
	}
	s.offsets[0] = 0
	for e := 0; e < E; e++ {
		s.offsets[e+1] += s.offsets[e]
		s.fill[e] = s.offsets[e]
	}
	for t := 0; t < N; t++ {
		for k, e := range s.slotExpert[t*K : (t+1)*K] {
			g := s.fill[e]
			s.fill[e]++
			s.tokens[g] = int32(t)
			s.from[t*slots+k] = int32(g)
		}
		if slots > K {
			s.from[t*slots+K] = int32(N*K + t)
		}
	}
}

// topK sets experts and weights to the len(experts) largest values of p and their indices, largest first;
// of equal values the lower index ranks first.
func topK(experts []int32, weights, p []float32) {
	n := 0
	for e, v := range p {
		if n == len(experts) && v <= weights[n-1] {
			continue
		}
		i := min(n, len(experts)-1)
		for ; i > 0 && v > weights[i-1]; i-- {
			experts[i], weights[i] = experts[i-1], weights[i-1]
		}
		experts[i], weights[i] = int32(e), v
		n = min(n+1, len(experts))
	}
}

// sortSlots orders a token's experts ascending, their weights with them (K is small: insertion sort).
func sortSlots(experts []int32, weights []float32) {
	for i := 1; i < len(experts); i++ {
		for j := i; j > 0 && experts[j] < experts[j-1]; j-- {
			experts[j], experts[j-1] = experts[j-1], experts[j]
			weights[j], weights[j-1] = weights[j-1], weights[j]
		}
	}
}
