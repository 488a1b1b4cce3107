// Package goldentest is a test helper, imported only by _test.go files: it finds the shared test assets
// (../shared) and reads the golden test cases (tensors from an independent PyTorch reference, with a manifest
// giving each tensor's meaning and tolerance) and compares results against them.
package goldentest

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/specforge/specforge/internal/safetensors"
)

// SharedDir finds the shared assets folder: $SPECFORGE_SHARED, or ../shared beside the repository root.
func SharedDir() (string, error) {
	if d := os.Getenv("SPECFORGE_SHARED"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			shared := filepath.Join(dir, "..", "shared")
			if _, err := os.Stat(shared); err != nil {
				return "", fmt.Errorf("shared assets not found at %s (set SPECFORGE_SHARED)", shared)
			}
			return filepath.Clean(shared), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repository root (go.mod) not found above the working directory")
		}
		dir = parent
	}
}

// Shared returns a path inside the shared folder, skipping the test with a loud message when the folder is
// absent (CI always has it).
func Shared(t testing.TB, rel ...string) string {
	t.Helper()
	dir, err := SharedDir()
	if err != nil {
		t.Skipf("SKIPPED, shared assets missing: %v", err)
	}
	return filepath.Join(append([]string{dir}, rel...)...)
}

// Dir is the golden suite under test: $SPECFORGE_GOLDENS, or goldens in the shared folder. Any folder of
// cases in the same format can be tested this way, with other shapes and hyper-parameters (run with
// -count=1 after regenerating a suite in place: the test cache does not see new case folders).
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SPECFORGE_GOLDENS"); d != "" {
		return d
	}
	return Shared(t, "goldens")
}

// Tolerance is the allowed elementwise deviation: |got - want| <= Atol + Rtol*|want|.
type Tolerance struct {
	Atol float64 `json:"atol"`
	Rtol float64 `json:"rtol"`
}

// Case is one golden case folder.
type Case struct {
	Dir      string
	Manifest struct {
		Case        string                     `json:"case"`
		Hyperparams map[string]json.RawMessage `json:"hyperparams"`
		// OptimizerIsolation is the tolerance of clip + AdamW applied to the golden gradients alone.
		OptimizerIsolation *struct {
			F32 *Tolerance `json:"f32_impl"`
		} `json:"optimizer_isolation"`
		Files map[string]struct {
			Tensors map[string]struct {
				DType     string          `json:"dtype"`
				Shape     []int           `json:"shape"`
				Tolerance json.RawMessage `json:"tolerance"`
			} `json:"tensors"`
		} `json:"files"`
	}
	files map[string]*safetensors.File
}

// Open loads the manifest of case name of the suite (see Dir).
func Open(t testing.TB, name string) *Case {
	t.Helper()
	c := &Case{Dir: filepath.Join(Dir(t), name), files: map[string]*safetensors.File{}}
	raw, err := os.ReadFile(filepath.Join(c.Dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &c.Manifest); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		for _, f := range c.files {
			f.Close()
		}
	})
	return c
}

// Tensor returns a tensor of one of the case's safetensors files.
func (c *Case) Tensor(t testing.TB, file, name string) *safetensors.Tensor {
	t.Helper()
	f, ok := c.files[file]
	if !ok {
		var err error
		if f, err = safetensors.Open(filepath.Join(c.Dir, file)); err != nil {
			t.Fatal(err)
		}
		c.files[file] = f
	}
	x, err := f.Tensor(name)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// Floats returns a float tensor as float64.
func (c *Case) Floats(t testing.TB, file, name string) []float64 {
	t.Helper()
	v, err := c.Tensor(t, file, name).Float64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Ints returns an integer or bool tensor as int64.
func (c *Case) Ints(t testing.TB, file, name string) []int64 {
	t.Helper()
	v, err := c.Tensor(t, file, name).Int64()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Has reports whether file of the case holds tensor name.
func (c *Case) Has(file, name string) bool {
	_, ok := c.Manifest.Files[file].Tensors[name]
	return ok
}

// Shape is the shape of tensor name of file as the manifest gives it.
func (c *Case) Shape(t testing.TB, file, name string) []int {
	t.Helper()
	entry, ok := c.Manifest.Files[file].Tensors[name]
	if !ok {
		t.Fatalf("%s: manifest has no %s in %s", c.Manifest.Case, name, file)
	}
	return entry.Shape
}

// HasHyper reports whether the manifest has hyperparameter key.
func (c *Case) HasHyper(key string) bool {
	_, ok := c.Manifest.Hyperparams[key]
	return ok
}

// Hyper decodes one hyperparameter of the manifest into v.
func (c *Case) Hyper(t testing.TB, key string, v any) {
	t.Helper()
	raw, ok := c.Manifest.Hyperparams[key]
	if !ok {
		t.Fatalf("%s: no hyperparameter %q", c.Manifest.Case, key)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: hyperparameter %q: %v", c.Manifest.Case, key, err)
	}
}

// F32Tolerance is the manifest's float32-implementation tolerance of a tensor of a file.
func (c *Case) F32Tolerance(t testing.TB, file, name string) Tolerance {
	t.Helper()
	entry, ok := c.Manifest.Files[file].Tensors[name]
	if !ok {
		t.Fatalf("%s: manifest has no %s in %s", c.Manifest.Case, name, file)
	}
	var tol struct {
		F32 *Tolerance `json:"f32_impl"`
	}
	if err := json.Unmarshal(entry.Tolerance, &tol); err != nil || tol.F32 == nil {
		t.Fatalf("%s: %s has no f32_impl tolerance", c.Manifest.Case, name)
	}
	return *tol.F32
}

// OptimizerTolerance is the manifest's float32 tolerance of the optimiser-only test (optimizer_isolation).
func (c *Case) OptimizerTolerance(t testing.TB) Tolerance {
	t.Helper()
	if c.Manifest.OptimizerIsolation == nil || c.Manifest.OptimizerIsolation.F32 == nil {
		t.Fatalf("%s: manifest has no optimizer_isolation.f32_impl tolerance", c.Manifest.Case)
	}
	return *c.Manifest.OptimizerIsolation.F32
}

// Compare checks got against the float64 expected tensor name of file (e.g. "expected_f64.safetensors") with
// the manifest's float32 tolerance. rows, if not nil, restricts the comparison to rows (of the leading
// dimensions flattened) where rows[i] is true. It reports the largest deviation seen.
func (c *Case) Compare(t testing.TB, file, name string, got []float32, rows []bool) {
	t.Helper()
	want := c.Floats(t, file, name)
	tol := c.F32Tolerance(t, file, name)
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(want))
		return
	}
	width := len(want)
	if rows != nil {
		width = len(want) / len(rows)
	}
	worst, bad := 0.0, 0
	for i := range want {
		if rows != nil && !rows[i/width] {
			continue
		}
		d := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(float64(got[i])) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
		if d > tol.Atol+tol.Rtol*math.Abs(want[i]) {
			if bad < 3 {
				t.Errorf("%s[%d] = %g, want %g (|diff| %g > atol %g)", name, i, got[i], want[i], d, tol.Atol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance", name, bad, len(want))
	}
	t.Logf("%s: max |diff| %.3g (atol %.3g)", name, worst, tol.Atol)
}

// CompareScaled checks got against the float64 expected tensor name of file with a tolerance relative to
// the tensor's scale: |got - want| <= atol + rel*max|want| elementwise. Tests of reduced-precision
// arithmetic (bf16 products) use it with bounds they derive and state; it reports the deviation seen
// relative to the scale.
func (c *Case) CompareScaled(t testing.TB, file, name string, got []float32, rel, atol float64) {
	t.Helper()
	want := c.Floats(t, file, name)
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(want))
		return
	}
	scale := 0.0
	for _, w := range want {
		scale = math.Max(scale, math.Abs(w))
	}
	bound := atol + rel*scale
	worst, bad := 0.0, 0
	for i := range want {
		d := math.Abs(float64(got[i]) - want[i])
		if math.IsNaN(float64(got[i])) {
			d = math.Inf(1)
		}
		worst = math.Max(worst, d)
		if d > bound {
			if bad < 3 {
				t.Errorf("%s[%d] = %g, want %g (|diff| %g > %g)", name, i, got[i], want[i], d, bound)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values out of tolerance", name, bad, len(want))
	}
	t.Logf("%s: max |diff| %.3g = %.2e of the scale %.3g (bound %.3g)", name, worst, worst/math.Max(scale, 1e-300), scale, bound)
}
