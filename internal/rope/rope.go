// Package rope holds rotary position embeddings: the rope_scaling configuration as Hugging Face's
// modeling_rope_utils reads it (default, linear, dynamic NTK, llama3, yarn), the inverse frequencies it
// gives, and the cos/sin tables of a batch of positions with the rotation (rotate-half layout) they apply.
package rope

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/specforge/specforge/internal/parallel"
	"github.com/specforge/specforge/internal/tensor"
)

// Config describes rotary position embeddings as Hugging Face's modeling_rope_utils computes them:
// rope types default, linear, dynamic (NTK), llama3 and yarn, rotate-half layout.
type Config struct {
	Type  string // "default", "linear", "dynamic", "llama3" or "yarn"
	Theta float64
	Dim   int // rotary dimension: the head dimension
	// MaxPositions is the model's max_position_embeddings.
	MaxPositions int
	Factor       float64
	// llama3
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int
	// yarn
	AttentionFactor    float64 // 0: derived from Factor, Mscale and MscaleAllDim
	BetaFast, BetaSlow float64
	Mscale             float64
	MscaleAllDim       float64
	Truncate           bool
}

// Types lists the supported rope_scaling types.
var Types = []string{"default", "linear", "dynamic", "llama3", "yarn"}

// ParseScaling decodes a config.json rope_scaling object (nil or JSON null for none); theta is
// rope_theta, dim the head dimension and maxPositions max_position_embeddings.
func ParseScaling(raw []byte, theta float64, dim, maxPositions int) (Config, error) {
	r := Config{Type: "default", Theta: theta, Dim: dim, MaxPositions: maxPositions, Factor: 1}
	if len(raw) == 0 || string(raw) == "null" {
		return r, nil
	}
	var s struct {
		RopeType        string   `json:"rope_type"`
		Type            string   `json:"type"`
		Factor          *float64 `json:"factor"`
		LowFreqFactor   *float64 `json:"low_freq_factor"`
		HighFreqFactor  *float64 `json:"high_freq_factor"`
		OriginalMax     *int     `json:"original_max_position_embeddings"`
		AttentionFactor *float64 `json:"attention_factor"`
		BetaFast        *float64 `json:"beta_fast"`
		BetaSlow        *float64 `json:"beta_slow"`
		Mscale          *float64 `json:"mscale"`
		MscaleAllDim    *float64 `json:"mscale_all_dim"`
		Truncate        *bool    `json:"truncate"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return r, fmt.Errorf("want an object with rope_type and its parameters: %v", err)
	}
	r.Type = s.RopeType
	if r.Type == "" {
		r.Type = s.Type // the older key
	}
	if r.Type == "" {
		r.Type = "default"
	}
	need := func(name string, v *float64) (float64, error) {
		if v == nil {
			return 0, fmt.Errorf("rope type %q needs %s", r.Type, name)
		}
		return *v, nil
	}
	var err error
	switch r.Type {
	case "default":
	case "linear", "dynamic":
		if r.Factor, err = need("factor", s.Factor); err != nil {
			return r, err
		}
	case "llama3":
		if r.Factor, err = need("factor", s.Factor); err != nil {
			return r, err
		}
		if r.LowFreqFactor, err = need("low_freq_factor", s.LowFreqFactor); err != nil {
			return r, err
		}
		if r.HighFreqFactor, err = need("high_freq_factor", s.HighFreqFactor); err != nil {
			return r, err
		}
		if s.OriginalMax == nil {
			return r, fmt.Errorf("rope type llama3 needs original_max_position_embeddings")
		}
		r.OriginalMaxPositions = *s.OriginalMax
	case "yarn":
		if r.Factor, err = need("factor", s.Factor); err != nil {
			return r, err
		}
		r.OriginalMaxPositions = maxPositions
		if s.OriginalMax != nil && *s.OriginalMax > 0 {
			r.OriginalMaxPositions = *s.OriginalMax
		}
		r.BetaFast, r.BetaSlow, r.Truncate = 32, 1, true
		if s.BetaFast != nil && *s.BetaFast != 0 {
			r.BetaFast = *s.BetaFast
		}
		if s.BetaSlow != nil && *s.BetaSlow != 0 {
			r.BetaSlow = *s.BetaSlow
		}
		if s.Truncate != nil {
			r.Truncate = *s.Truncate
		}
		if s.Mscale != nil {
			r.Mscale = *s.Mscale
		}
		if s.MscaleAllDim != nil {
			r.MscaleAllDim = *s.MscaleAllDim
		}
		if s.AttentionFactor != nil {
			r.AttentionFactor = *s.AttentionFactor
		}
	default:
		return r, fmt.Errorf("rope type %q is not supported (supported: %v)", r.Type, Types)
	}
	return r, nil
}

// Validate checks the parameters for values that would give meaningless frequencies.
func (r Config) Validate() error {
	if r.Theta <= 0 {
		return fmt.Errorf("rope_theta must be positive, got %g", r.Theta)
	}
	if r.Dim <= 0 || r.Dim%2 != 0 {
		return fmt.Errorf("rotary dimension must be positive and even, got %d", r.Dim)
	}
	if r.Type != "default" && r.Factor <= 0 {
		return fmt.Errorf("rope_scaling factor must be positive, got %g", r.Factor)
	}
	if r.Type == "llama3" && (r.HighFreqFactor <= r.LowFreqFactor || r.OriginalMaxPositions <= 0) {
		return fmt.Errorf("rope_scaling llama3 needs high_freq_factor > low_freq_factor and original_max_position_embeddings > 0")
	}
	if r.Type == "dynamic" && r.MaxPositions <= 0 {
		return fmt.Errorf("rope_scaling dynamic needs max_position_embeddings > 0")
	}
	return nil
}

// Frequencies returns the inverse frequencies [Dim/2] and the factor that scales cos and sin, for a forward
// whose largest position is seqLen-1 (only the dynamic type depends on it). Computed in float64.
func (r Config) Frequencies(seqLen int) ([]float64, float64) {
	half := r.Dim / 2
	base := r.Theta
	if r.Type == "dynamic" && seqLen > r.MaxPositions {
		// NTK-aware scaling: raise the base as the sequence outgrows the trained length.
		ratio := r.Factor*float64(seqLen)/float64(r.MaxPositions) - (r.Factor - 1)
		base *= math.Pow(ratio, float64(r.Dim)/float64(r.Dim-2))
	}
	inv := make([]float64, half)
	for i := range inv {
		inv[i] = 1 / math.Pow(base, float64(2*i)/float64(r.Dim))
	}
	scale := 1.0
	switch r.Type {
	case "linear":
		for i := range inv {
			inv[i] /= r.Factor
		}
	case "llama3":
		lowWavelen := float64(r.OriginalMaxPositions) / r.LowFreqFactor
		highWavelen := float64(r.OriginalMaxPositions) / r.HighFreqFactor
		for i, f := range inv {
			wavelen := 2 * math.Pi / f
			switch {
			case wavelen < highWavelen:
			case wavelen > lowWavelen:
				inv[i] = f / r.Factor
			default:
				s := (float64(r.OriginalMaxPositions)/wavelen - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
				inv[i] = (1-s)*f/r.Factor + s*f
			}
		}
	case "yarn":
		inv, scale = r.yarn(inv)
	}
	return inv, scale
}

func (r Config) yarn(extrapolation []float64) ([]float64, float64) {
	mscale := func(scale, m float64) float64 {
		if scale <= 1 {
			return 1
		}
		return 0.1*m*math.Log(scale) + 1
	}
	attn := r.AttentionFactor
	if attn == 0 {
		if r.Mscale != 0 && r.MscaleAllDim != 0 {
			attn = mscale(r.Factor, r.Mscale) / mscale(r.Factor, r.MscaleAllDim)
		} else {
			attn = mscale(r.Factor, 1)
		}
	}
	dim := float64(r.Dim)
	correctionDim := func(rotations float64) float64 {
		return dim * math.Log(float64(r.OriginalMaxPositions)/(rotations*2*math.Pi)) / (2 * math.Log(r.Theta))
	}
	low, high := correctionDim(r.BetaFast), correctionDim(r.BetaSlow)
	if r.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = math.Max(low, 0), math.Min(high, dim-1)
	if low == high {
		high += 0.001 // as the reference does, to avoid a division by zero
	}
	out := make([]float64, len(extrapolation))
	for i, ext := range extrapolation {
		ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
		extrapolationFactor := 1 - ramp
		out[i] = ext/r.Factor*(1-extrapolationFactor) + ext*extrapolationFactor
	}
	return out, attn
}

// Table holds cos and sin [n, Dim/2] for the positions of a batch of rows.
type Table struct {
	Half     int
	Cos, Sin []float32
}

// NewTable evaluates the rotation of every position (angles in float64).
func NewTable(invFreq []float64, scale float64, positions []int32) *Table {
	t := &Table{}
	t.Fill(invFreq, scale, positions)
	return t
}

// Fill makes t the table of positions, reusing its buffers (decoding builds one per step).
func (t *Table) Fill(invFreq []float64, scale float64, positions []int32) {
	half := len(invFreq)
	t.Half, t.Cos, t.Sin = half, tensor.Resize(t.Cos, len(positions)*half), tensor.Resize(t.Sin, len(positions)*half)
	if grain := max(1, 2048/half); len(positions) > grain {
		parallel.For(len(positions), grain, func(lo, hi int) { t.fill(invFreq, scale, positions, lo, hi) })
	} else {
		t.fill(invFreq, scale, positions, 0, len(positions))
	}
}

func (t *Table) fill(invFreq []float64, scale float64, positions []int32, lo, hi int) {
	half := t.Half
	for r := lo; r < hi; r++ {
		for i, f := range invFreq {
			s, c := math.Sincos(float64(positions[r]) * f)
			t.Cos[r*half+i] = float32(c * scale)
			t.Sin[r*half+i] = float32(s * scale)
		}
	}
}

// Rotations evaluates RopeTables for successive batches of positions (decoding steps), reusing its table
// and, unless the scaling depends on the sequence length (dynamic NTK), its frequencies.
type Rotations struct {
	Config  Config
	invFreq []float64
	scale   float64
	table   Table
}

// Table returns the rotations of positions, valid until the next call.
func (r *Rotations) Table(positions []int32) *Table {
	if r.invFreq == nil || r.Config.Type == "dynamic" {
		maxPos := int32(0)
		for _, p := range positions {
			maxPos = max(maxPos, p)
		}
		r.invFreq, r.scale = r.Config.Frequencies(int(maxPos) + 1)
	}
	r.table.Fill(r.invFreq, r.scale, positions)
	return &r.table
}

// Apply rotates x [rows, heads*2*Half] in place, row r by the angles of table row r: for each head,
// x1' = x1 cos - x2 sin and x2' = x2 cos + x1 sin, where x1 and x2 are the two halves (rotate_half).
func (t *Table) Apply(x []float32, rows, heads int) { t.rotate(x, rows, heads, 1) }

// ApplyInverse rotates x back by the table's angles: the RoPE backward (the rotation is orthogonal, so its
// gradient is the inverse rotation of the output gradient).
func (t *Table) ApplyInverse(x []float32, rows, heads int) { t.rotate(x, rows, heads, -1) }

// rotate turns x by the table's angles times sign (+1 or -1).
func (t *Table) rotate(x []float32, rows, heads int, sign float32) {
	if grain := max(1, 4096/(heads*2*t.Half)); rows > grain {
		parallel.For(rows, grain, func(lo, hi int) { t.rotateRows(x, heads, lo, hi, sign) })
		return
	}
	t.rotateRows(x, heads, 0, rows, sign)
}

func (t *Table) rotateRows(x []float32, heads, lo, hi int, sign float32) {
	half := t.Half
	width := heads * 2 * half
	for r := lo; r < hi; r++ {
		cos, sin := t.Cos[r*half:(r+1)*half], t.Sin[r*half:(r+1)*half]
		row := x[r*width : (r+1)*width]
		// Frequency i turns element i of every head's first half with element i of its second half; going
		// frequency by frequency keeps one angle in registers across the heads.
		for i, c := range cos {
			s := sign * sin[i]
			for j := i; j+half < len(row); j += 2 * half {
				a, b := row[j], row[j+half]
				row[j] = a*c - b*s
				row[j+half] = b*c + a*s
			}
		}
	}
}
