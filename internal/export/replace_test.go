package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/model"
)

// TestWriteRefusesForeignFolders: --out pointed at the target's folder replaced its model.safetensors and
// config (the target no longer loaded); now a folder holding anything but an earlier export is refused and
// left as it was, an earlier export is replaced whole, and Force replaces any folder whole.
func TestWriteRefusesForeignFolders(t *testing.T) {
	d := goldenDraft(t)
	target := filepath.Join(t.TempDir(), "stories260K")
	src := goldentest.Shared(t, "assets", "models", "stories260K")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(target, e.Name()), raw, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	err = Write(target, d, SGLang, Options{})
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("export into the target's folder: %v", err)
	}
	if _, err := model.Load(target); err != nil {
		t.Fatalf("the target no longer loads: %v", err)
	}

	// Only config.json and model.safetensors, but a model rather than a draft.
	modelOnly := filepath.Join(t.TempDir(), "m")
	os.MkdirAll(modelOnly, 0o755)
	for _, n := range []string{"config.json", "model.safetensors"} {
		raw, _ := os.ReadFile(filepath.Join(src, n))
		os.WriteFile(filepath.Join(modelOnly, n), raw, 0o644)
	}
	if err := Write(modelOnly, d, SGLang, Options{}); err == nil || !strings.Contains(err.Error(), "not an EAGLE-3 draft export") {
		t.Errorf("export over a model: %v", err)
	}

	out := filepath.Join(t.TempDir(), "draft")
	for _, f := range []Format{SGLang, VLLM} { // the second replaces the first
		if err := Write(out, d, f, Options{}); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	if got, err := Read(out); err != nil || got.Format != VLLM {
		t.Fatalf("after re-export: %v, %v", got, err)
	}
	if err := Write(target, d, SGLang, Options{Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
	left, _ := os.ReadDir(target)
	if len(left) != 2 {
		t.Errorf("--force left %d entries, want the export's two", len(left))
	}
	siblings, _ := os.ReadDir(filepath.Dir(out))
	for _, e := range siblings {
		if e.Name() != "draft" {
			t.Errorf("left %s beside the export", e.Name())
		}
	}
}
