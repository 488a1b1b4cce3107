package interop

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/hidden"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/tensor"
)

// expected holds the fixture's reference tensors of one sample (expected.safetensors, float32).
type expected struct {
	ids, mask         []int64
	aux, hidden, last []float32
}

func readExpected(t *testing.T, dir string) []expected {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "expected.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expected
	for i := 0; ; i++ {
		if _, err := f.Tensor(fmt.Sprintf("s%d.input_ids", i)); err != nil {
			break
		}
		get := func(name string) *safetensors.Tensor {
			x, err := f.Tensor(fmt.Sprintf("s%d.%s", i, name))
			if err != nil {
				t.Fatal(err)
			}
			return x
		}
		var e expected
		var err error
		for _, p := range []struct {
			name string
			dst  *[]int64
		}{{"input_ids", &e.ids}, {"loss_mask", &e.mask}} {
			if *p.dst, err = get(p.name).Int64(); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range []struct {
			name string
			dst  *[]float32
		}{{"aux_hidden_state", &e.aux}, {"hidden_state", &e.hidden}, {"last_layer_pre_norm", &e.last}} {
			if *p.dst, err = get(p.name).Float32(); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		t.Fatal("expected.safetensors holds no samples")
	}
	return out
}

// fixture is the shared interop fixtures folder and its target.
func fixture(t *testing.T) (dir string, target hidden.TargetInfo, aux []int, norm FinalNorm) {
	t.Helper()
	dir = goldentest.Shared(t, "assets", "interop")
	tdir := goldentest.Shared(t, "assets", "models", "stories260K")
	cfg, err := model.LoadConfig(tdir)
	if err != nil {
		t.Fatal(err)
	}
	if norm, err = LoadFinalNorm(tdir); err != nil {
		t.Fatal(err)
	}
	target = hidden.TargetInfo{Path: tdir, Architecture: cfg.Architecture, HiddenSize: cfg.HiddenSize, NumLayers: cfg.NumLayers, VocabSize: cfg.VocabSize}
	return dir, target, cfg.DefaultAuxLayers(), norm
}

// equalBF16 compares a stored state with the reference rounded to bf16: bit for bit, or within ulps units in
// the last place of bf16.
func equalBF16(t *testing.T, what string, got, want []float32, ulps int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		w := half.RoundBF16(want[i])
		if d := bf16Distance(got[i], w); d > ulps || ulps == 0 && math.Float32bits(got[i]) != math.Float32bits(w) {
			if bad < 3 {
				t.Errorf("%s[%d] = %v, want %v (bf16 of %v)", what, i, got[i], half.RoundBF16(want[i]), want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values differ", what, bad, len(got))
	}
}

// bf16Distance counts the bf16 values between a and b (both bf16), as ordered integers.
func bf16Distance(a, b float32) int {
	ord := func(f float32) int {
		u := int(math.Float32bits(f) >> 16)
		if u&0x8000 != 0 {
			return -(u & 0x7fff)
		}
		return u
	}
	d := ord(a) - ord(b)
	return max(d, -d)
}

// checkImported compares the imported shards with the reference: ids, masks and aux states bit for bit after
// rounding to bf16, and the final state within hiddenULPs bf16 ulps of it (0: bit for bit).
func checkImported(t *testing.T, out string, want []expected, hiddenULPs int) {
	t.Helper()
	store, err := hidden.Open(filepath.Join(out, "train"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if store.Len() != len(want) {
		t.Fatalf("%d samples imported, want %d", store.Len(), len(want))
	}
	for i, e := range want {
		s, err := store.Sample(i)
		if err != nil {
			t.Fatal(err)
		}
		ids, mask := make([]int64, len(s.IDs)), make([]int64, len(s.LossMask))
		for k := range s.IDs {
			ids[k] = int64(s.IDs[k])
			if s.LossMask[k] {
				mask[k] = 1
			}
		}
		if !slices.Equal(ids, e.ids) || !slices.Equal(mask, e.mask) {
			t.Fatalf("sample %d: ids %v mask %v, want %v %v", i, ids, mask, e.ids, e.mask)
		}
		equalBF16(t, fmt.Sprintf("sample %d aux", i), s.Aux, e.aux, 0)
		equalBF16(t, fmt.Sprintf("sample %d hidden", i), s.Hidden, e.hidden, hiddenULPs)
	}
	if _, problems, err := hidden.Verify(filepath.Join(out, "train"), true); err != nil || len(problems) > 0 {
		t.Fatalf("verify: %v %v", err, problems)
	}
}

func TestImportSpecForge(t *testing.T) {
	dir, target, aux, _ := fixture(t)
	want := readExpected(t, dir)
	out := t.TempDir()
	m, err := Import(Options{Layout: SpecForge, In: filepath.Join(dir, "specforge_offline"), Out: out, Target: target,
		AuxLayers: aux, DType: tensor.BF16, SamplesPerShard: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !m.Complete || m.Samples != len(want) || len(m.Shards) != 3 {
		t.Fatalf("manifest: complete %v, %d samples in %d shards", m.Complete, m.Samples, len(m.Shards))
	}
	checkImported(t, out, want, 0)
}

// TestFinalNorm checks the final norm the speculators import applies against the reference's: on the
// reference's float32 last-layer states it gives the reference's final states bit for bit after rounding
// to bf16, and speculators' files hold exactly those last-layer states rounded to bf16.
func TestFinalNorm(t *testing.T) {
	dir, target, _, norm := fixture(t)
	for i, e := range readExpected(t, dir) {
		got := make([]float32, len(e.last))
		norm.apply(got, e.last)
		for k := range got {
			got[k] = half.RoundBF16(got[k])
		}
		equalBF16(t, fmt.Sprintf("sample %d norm(last_layer_pre_norm)", i), got, e.hidden, 0)
		f, err := safetensors.Open(filepath.Join(dir, "speculators_offline", fmt.Sprintf("hs_%d.safetensors", i)))
		if err != nil {
			t.Fatal(err)
		}
		hs, err := f.Tensor("hidden_states")
		if err != nil {
			t.Fatal(err)
		}
		v, err := hs.Float32()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		H := target.HiddenSize
		var last []float32
		for tk := range len(e.ids) {
			last = append(last, v[(tk*4+3)*H:(tk*4+4)*H]...)
		}
		equalBF16(t, fmt.Sprintf("hs_%d last slot", i), last, e.last, 0)
	}
}

func TestImportSpeculators(t *testing.T) {
	dir, target, aux, norm := fixture(t)
	want := readExpected(t, dir)
	// The loss masks come from the data pipeline in specforge import-hidden; here from the reference, looked
	// up by token ids as the pipeline's are.
	masks := func(file string, ids []int32) ([]bool, error) {
		for _, e := range want {
			if len(e.ids) == len(ids) && slices.EqualFunc(e.ids, ids, func(a int64, b int32) bool { return a == int64(b) }) {
				m := make([]bool, len(ids))
				for k := range m {
					m[k] = e.mask[k] == 1
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("%s: no sample with these ids", file)
	}
	out := t.TempDir()
	if _, err := Import(Options{Layout: Speculators, In: filepath.Join(dir, "speculators_offline"), Out: out, Target: target,
		AuxLayers: aux, Norm: norm, Masks: masks, DType: tensor.BF16, SamplesPerShard: 4}); err != nil {
		t.Fatal(err)
	}
	// speculators stores the last layer's output in bf16 before the norm: normalising the rounded values
	// lands within one bf16 ulp of the rounded norm of the exact ones (measured: 73% equal, the rest one ulp).
	checkImported(t, out, want, 1)
}
