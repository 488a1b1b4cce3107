package hidden

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/fixturetest"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
	"github.com/specforge/specforge/internal/vocab"
)

func randomSample(r *rand.Rand, T, auxWidth, h int) Sample {
	s := Sample{IDs: make([]int32, T), LossMask: make([]bool, T), Aux: make([]float32, T*auxWidth), Hidden: make([]float32, T*h)}
	for t := range s.IDs {
		s.IDs[t], s.LossMask[t] = int32(r.IntN(1000)), r.IntN(2) == 1
	}
	for i := range s.Aux {
		s.Aux[i] = float32(r.NormFloat64() * 3)
	}
	for i := range s.Hidden {
		s.Hidden[i] = float32(r.NormFloat64())
	}
	return s
}

func TestShardRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const h = 16
	for _, d := range []tensor.DType{tensor.F32, tensor.BF16, tensor.F16} {
		for _, layers := range [][]int{{1, 5, 9}, {1, 1, 1}, {0, 2, 0}} {
			samples := []Sample{randomSample(r, 7, 3*h, h), randomSample(r, 1, 3*h, h), randomSample(r, 12, 3*h, h)}
			for _, s := range samples { // repeated layers hold the same values, as a real forward gives
				for tk := 0; tk < len(s.IDs); tk++ {
					for slot, l := range layers {
						for first := range slot {
							if layers[first] == l {
								copy(s.Aux[(tk*3+slot)*h:(tk*3+slot+1)*h], s.Aux[(tk*3+first)*h:(tk*3+first+1)*h])
								break
							}
						}
					}
				}
			}
			path := filepath.Join(t.TempDir(), "s.sfh")
			info, err := WriteShard(path, samples, d, layers, h)
			if err != nil {
				t.Fatal(err)
			}
			if sum, size, _ := FileSHA256(path); sum != info.SHA256 || size != info.Bytes {
				t.Errorf("reported size/checksum %d %s, file has %d %s", info.Bytes, info.SHA256, size, sum)
			}
			sh, err := OpenShard(path)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range samples {
				got, err := sh.Read(i)
				if err != nil {
					t.Fatal(err)
				}
				round := func(x float32) float32 {
					switch d {
					case tensor.BF16:
						return half.RoundBF16(x)
					case tensor.F16:
						bits := []uint16{0}
						half.F32ToF16(bits, []float32{x})
						out := []float32{0}
						half.F16ToF32(out, bits)
						return out[0]
					}
					return x
				}
				for k := range want.Aux {
					if got.Aux[k] != round(want.Aux[k]) {
						t.Fatalf("%s %v sample %d aux[%d] = %g, want %g", d, layers, i, k, got.Aux[k], round(want.Aux[k]))
					}
				}
				for k := range want.Hidden {
					if got.Hidden[k] != round(want.Hidden[k]) {
						t.Fatalf("%s sample %d hidden[%d]", d, i, k)
					}
				}
				for k := range want.IDs {
					if got.IDs[k] != want.IDs[k] || got.LossMask[k] != want.LossMask[k] {
						t.Fatalf("%s sample %d tokens differ", d, i)
					}
				}
			}
			sh.Close()
		}
	}
}

func TestCorruptShards(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	path := filepath.Join(t.TempDir(), "s.sfh")
	if _, err := WriteShard(path, []Sample{randomSample(r, 5, 48, 16)}, tensor.BF16, []int{1, 2, 3}, 16); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	os.WriteFile(path, raw[:len(raw)-5], 0o644)
	if _, err := OpenShard(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("truncated shard: %v", err)
	}
	if _, err := WriteShard(path, []Sample{{IDs: []int32{1}, LossMask: []bool{true}}}, tensor.BF16, []int{1, 2, 3}, 16); err == nil {
		t.Error("a sample without states was written")
	}
}

// TestStoredDTypeSpelling pins the dtype's spelling in shard indexes and manifests ("bf16", as shards made
// before the dtype was a tensor.DType spell it) and refuses any other storage type on reading.
func TestStoredDTypeSpelling(t *testing.T) {
	// The bytes an index has always been written as.
	const index = `{"dtype":"bf16","aux_width":48,"hidden_size":16,"aux_slots":[0,1,2],"records":[{"offset":0,"tokens":5,"aux_bytes":7,"hidden_bytes":9}]}`
	var x shardIndex
	if err := json.Unmarshal([]byte(index), &x); err != nil || x.DType != tensor.BF16 {
		t.Fatalf("read index: dtype %v, %v", x.DType, err)
	}
	if b, err := json.Marshal(x); err != nil || string(b) != index {
		t.Errorf("index written as %s, %v; want %s", b, err, index)
	}
	var m Manifest
	if err := json.Unmarshal([]byte(`{"format":"specforge-hidden-v1","dtype":"f16","samples":3}`), &m); err != nil || m.DType != tensor.F16 || m.Samples != 3 {
		t.Fatalf("read manifest: dtype %v, %d samples, %v", m.DType, m.Samples, err)
	}
	if b, err := json.Marshal(m); err != nil || !strings.Contains(string(b), `"dtype":"f16"`) || !strings.Contains(string(b), `"samples":3`) {
		t.Errorf("manifest written as %s, %v", b, err)
	}
	for _, js := range []string{`{"dtype":"fp8"}`, `{"dtype":"i64"}`, `{}`} {
		if err := json.Unmarshal([]byte(js), &x); err == nil || !strings.Contains(err.Error(), "want bf16, f16 or f32") {
			t.Errorf("index %s: %v", js, err)
		}
		if err := json.Unmarshal([]byte(js), &m); err == nil || !strings.Contains(err.Error(), "want bf16, f16 or f32") {
			t.Errorf("manifest %s: %v", js, err)
		}
	}
}

// TestGenerateResumes stops a generation after two shards, resumes it, and compares every shard with an
// uninterrupted run; complete shards are not rewritten, and the stored states equal a direct forward.
func TestGenerateResumes(t *testing.T) {
	m, data, key := fixturetest.Stories(t, 30, 40)
	opts := func(out string) GenOptions {
		return GenOptions{Target: m, TargetPath: "stories260K", AuxLayers: []int{0, 2, 4}, Data: data, DataKey: key,
			Out: out, DType: tensor.BF16, SamplesPerShard: 3, Batch: 2}
	}
	whole, err := Generate(opts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if !whole.Complete || len(whole.Shards) < 3 {
		t.Fatalf("manifest %+v", whole)
	}
	out := t.TempDir()
	o := opts(out)
	n := 0
	o.Stop = func() bool { n++; return n > 2 }
	part, err := Generate(o)
	if err != nil || part.Complete || len(part.Shards) != 2 {
		t.Fatalf("interrupted run: %+v %v", part, err)
	}
	if _, err := Open(out); err == nil {
		t.Error("an incomplete folder opened for training")
	}
	first, _ := os.Stat(filepath.Join(out, part.Shards[0].File))
	resumed, err := Generate(opts(out))
	if err != nil || !resumed.Complete {
		t.Fatalf("resumed: %+v %v", resumed, err)
	}
	again, _ := os.Stat(filepath.Join(out, part.Shards[0].File))
	if !again.ModTime().Equal(first.ModTime()) {
		t.Error("a complete shard was rewritten")
	}
	for i := range whole.Shards {
		if whole.Shards[i].SHA256 != resumed.Shards[i].SHA256 {
			t.Errorf("shard %d differs from the uninterrupted run", i)
		}
	}
	_, problems, err := Verify(out, true)
	if err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	// Flip one byte of a shard: verification names it.
	path := filepath.Join(out, resumed.Shards[1].File)
	raw, _ := os.ReadFile(path)
	raw[10] ^= 0xff
	os.WriteFile(path, raw, 0o644)
	if _, problems, _ = Verify(out, false); len(problems) != 1 || problems[0].File != resumed.Shards[1].File {
		t.Errorf("corruption not found: %v", problems)
	}
	raw[10] ^= 0xff
	os.WriteFile(path, raw, 0o644)

	// The stored states are the forward's, rounded to bf16.
	st, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ids, _ := data.Sample(4)
	res, err := m.Forward(model.Batch{B: 1, T: len(ids), IDs: ids}, nil, model.Request{AuxLayers: []int{0, 2, 4}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.Sample(4)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range res.Aux {
		if math.Abs(float64(s.Aux[i]-half.RoundBF16(v))) > 1e-2*math.Abs(float64(v))+1e-3 {
			t.Fatalf("aux[%d] = %g, forward %g", i, s.Aux[i], v)
		}
	}
	counter := vocab.NewCounter(512)
	if err := st.CountLossTokens(counter); err != nil {
		t.Fatal(err)
	}
	direct, _ := data.CountLossTokens(512)
	for id := range counter.Counts {
		if counter.Counts[id] != direct.Counts[id] {
			t.Fatalf("loss-token counts differ at %d", id)
		}
	}
	// Another dtype in the same folder is refused.
	o = opts(out)
	o.DType = tensor.F32
	if _, err := Generate(o); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Errorf("mixed dtype: %v", err)
	}
}

// TestGenerateParts splits a generation in three parts, one interrupted and resumed: the merged manifest
// lists the very shards of a generation in one part, and appears only when the last part is done.
func TestGenerateParts(t *testing.T) {
	m, data, key := fixturetest.Stories(t, 30, 40)
	opts := func(out string) GenOptions {
		return GenOptions{Target: m, TargetPath: "stories260K", AuxLayers: []int{0, 2, 4}, Data: data, DataKey: key,
			Out: out, DType: tensor.BF16, SamplesPerShard: 3, Batch: 2}
	}
	whole, err := Generate(opts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, part := range []int{2, 0} {
		o := opts(out)
		o.Part, o.Parts = part, 3
		if pm, err := Generate(o); err != nil || !pm.Complete {
			t.Fatalf("part %d: %+v %v", part, pm, err)
		}
		if merged, err := Merge(out, 3); merged != nil || err != nil {
			t.Fatalf("merged with part 1 missing: %+v %v", merged, err)
		}
	}
	o := opts(out)
	o.Part, o.Parts = 1, 3
	n := 0
	o.Stop = func() bool { n++; return n > 1 }
	if pm, err := Generate(o); err != nil || pm.Complete || len(pm.Shards) != 1 {
		t.Fatalf("interrupted part 1: %+v %v", pm, err)
	}
	if merged, err := Merge(out, 3); merged != nil || err != nil {
		t.Fatalf("merged with part 1 incomplete: %+v %v", merged, err)
	}
	o.Stop = nil
	if pm, err := Generate(o); err != nil || !pm.Complete || len(pm.Shards) != (len(whole.Shards)+1)/3 {
		t.Fatalf("resumed part 1: %+v %v", pm, err)
	}
	merged, err := Merge(out, 3)
	if err != nil || merged == nil || !merged.Complete || len(merged.Shards) != len(whole.Shards) {
		t.Fatalf("merged: %+v %v", merged, err)
	}
	for i, s := range whole.Shards {
		if got := merged.Shards[i]; got.File != s.File || got.SHA256 != s.SHA256 || got.FirstSample != s.FirstSample {
			t.Errorf("shard %d: merged %+v, one part %+v", i, got, s)
		}
	}
	if _, problems, err := Verify(out, true); err != nil || len(problems) != 0 {
		t.Fatalf("verify: %v %v", problems, err)
	}
	st, err := Open(out)
	if err != nil || st.Len() != data.Len() {
		t.Fatalf("open the merged folder: %v", err)
	}
	st.Close()
	o.Part = 3
	if _, err := Generate(o); err == nil {
		t.Error("part 3 of 3 accepted")
	}
}
