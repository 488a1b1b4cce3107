package rope

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// testdata/rope_reference.json is printed by testdata/rope_reference.py, a transcription of Hugging Face's
// dynamic and yarn code; llama3 and linear are checked against the goldens in package model.
func TestRopeFrequenciesAgainstReference(t *testing.T) {
	raw, err := os.ReadFile("testdata/rope_reference.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref map[string]struct {
		InvFreq []float64 `json:"inv_freq"`
		Scale   float64   `json:"scale"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, scaling string
		theta         float64
		dim, maxPos   int
		seqLen        int
	}{
		{"dynamic_short", `{"type": "dynamic", "factor": 2.0}`, 10000, 16, 64, 40},
		{"dynamic_long", `{"rope_type": "dynamic", "factor": 2.0}`, 10000, 16, 64, 200},
		{"yarn_qwen", `{"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}`, 1e6, 32, 131072, 10},
		{"yarn_mscale", `{"rope_type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096, "beta_fast": 32, "beta_slow": 1}`, 10000, 64, 4096, 10},
		{"yarn_no_truncate", `{"rope_type": "yarn", "factor": 8, "truncate": false, "attention_factor": 1.5}`, 500000, 16, 8192, 10},
	}
	for _, c := range cases {
		r, err := ParseScaling([]byte(c.scaling), c.theta, c.dim, c.maxPos)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		inv, scale := r.Frequencies(c.seqLen)
		want := ref[c.name]
		if len(want.InvFreq) != len(inv) || math.Abs(scale-want.Scale) > 1e-12 {
			t.Fatalf("%s: %d frequencies scale %g, want %d scale %g", c.name, len(inv), scale, len(want.InvFreq), want.Scale)
		}
		for i := range inv {
			if math.Abs(inv[i]-want.InvFreq[i]) > 1e-12*math.Abs(want.InvFreq[i]) {
				t.Errorf("%s: inv_freq[%d] = %.17g, want %.17g", c.name, i, inv[i], want.InvFreq[i])
			}
		}
	}
}

func TestParseRopeScalingErrors(t *testing.T) {
	cases := map[string]string{
		`{"rope_type": "longrope", "factor": 2}`: `"longrope" is not supported`,
		`{"rope_type": "llama3", "factor": 8}`:   "needs low_freq_factor",
		`{"type": "linear"}`:                     "needs factor",
		`[1, 2]`:                                 "want an object",
	}
	for in, want := range cases {
		if _, err := ParseScaling([]byte(in), 1e4, 64, 2048); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", in, err, want)
		}
	}
	if r, err := ParseScaling(nil, 1e4, 64, 2048); err != nil || r.Type != "default" {
		t.Errorf("null rope_scaling: %+v %v", r, err)
	}
}

func TestRopeApply(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	rows, heads, d := 6, 3, 8
	x := make([]float32, rows*heads*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	pos := []int32{0, 1, 5, 17, 100, 3}
	inv := []float64{1, 0.1, 0.01, 0.001}
	want := make([]float64, len(x))
	for row := 0; row < rows; row++ {
		for h := 0; h < heads; h++ {
			v := x[(row*heads+h)*d : (row*heads+h+1)*d]
			for i := 0; i < d; i++ {
				// x*cos + rotate_half(x)*sin with rotate_half(x) = cat(-x2, x1).
				ang := float64(pos[row]) * inv[i%(d/2)]
				var rot float64
				if i < d/2 {
					rot = -float64(v[i+d/2])
				} else {
					rot = float64(v[i-d/2])
				}
				want[(row*heads+h)*d+i] = 0.5 * (float64(v[i])*math.Cos(ang) + rot*math.Sin(ang))
			}
		}
	}
	NewTable(inv, 0.5, pos).Apply(x, rows, heads)
	for i, v := range x {
		if d := math.Abs(float64(v) - want[i]); d > 1e-6+1e-6*math.Abs(want[i]) {
			t.Fatalf("rope[%d] = %g, want %g", i, v, want[i])
		}
	}
}

// TestRotationsFollowLength: reused tables equal fresh ones, and dynamic NTK scaling, whose frequencies
// depend on the longest position, is re-evaluated when a later batch reaches further.
func TestRotationsFollowLength(t *testing.T) {
	for _, raw := range []string{`null`, `{"type": "dynamic", "factor": 2.0}`} {
		cfg, err := ParseScaling([]byte(raw), 10000, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		r := Rotations{Config: cfg}
		for _, positions := range [][]int32{{0, 1, 2}, {150, 151}, {3}} {
			inv, scale := cfg.Frequencies(int(positions[len(positions)-1]) + 1)
			want, got := NewTable(inv, scale, positions), r.Table(positions)
			for i := range want.Cos {
				if got.Cos[i] != want.Cos[i] || got.Sin[i] != want.Sin[i] {
					t.Fatalf("%s, positions %v: entry %d is (%g, %g), want (%g, %g)", raw, positions, i, got.Cos[i], got.Sin[i], want.Cos[i], want.Sin[i])
				}
			}
		}
	}
}
