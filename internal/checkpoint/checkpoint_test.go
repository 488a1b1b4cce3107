package checkpoint

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/safetensors"
)

// TestSaveListPrune saves five checkpoints and keeps the last two plus the best; the survivors read back
// with their state, weights and moments.
func TestSaveListPrune(t *testing.T) {
	run := t.TempDir()
	params := []draft.Param{{Name: "fc.weight", Shape: []int{2, 3}}, {Name: "norm.weight", Shape: []int{2}}}
	for step := 1; step <= 5; step++ {
		s := float32(step)
		w := []safetensors.Tensor{safetensors.FromFloat32("fc.weight", safetensors.F32, []int{2, 3}, []float32{s, 0, 0, 0, 0, s})}
		mom := Moments{M: [][]float32{{s, 1, 2, 3, 4, 5}, {s, 0}}, V: [][]float32{{0, 0, 0, 0, 0, s}, {0, s}}}
		dc := draft.Config{HiddenSize: 2}
		dir, err := Save(run, State{Step: step, Seed: 7, BatchSize: 1, Draft: &dc}, w, params, mom)
		if err != nil {
			t.Fatal(err)
		}
		if !Is(dir) || filepath.Base(dir) != Name(step) {
			t.Fatalf("saved %s", dir)
		}
		if err := Prune(run, 2, 2); err != nil {
			t.Fatal(err)
		}
	}
	all, err := List(run)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range all {
		names = append(names, filepath.Base(d))
	}
	if want := []string{Name(2), Name(4), Name(5)}; !slices.Equal(names, want) {
		t.Fatalf("kept %v, want %v", names, want)
	}
	latest, err := Latest(run)
	if err != nil || latest != all[2] {
		t.Fatalf("latest %q %v", latest, err)
	}
	st, err := ReadState(latest)
	if err != nil || st.Step != 5 || st.Seed != 7 || st.Draft.HiddenSize != 2 {
		t.Fatalf("state %+v %v", st, err)
	}
	f, err := OpenWeights(latest)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := f.Tensor("fc.weight")
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := fc.Float32()
	f.Close()
	if vals[0] != 5 {
		t.Errorf("weights of step 5 read back as %v", vals)
	}
	mom := Moments{M: [][]float32{make([]float32, 6), make([]float32, 2)}, V: [][]float32{make([]float32, 6), make([]float32, 2)}}
	if err := ReadMoments(latest, params, mom); err != nil {
		t.Fatal(err)
	}
	if mom.M[0][0] != 5 || mom.V[1][1] != 5 {
		t.Errorf("moments read back as %v %v", mom.M, mom.V)
	}
	if err := ReadMoments(latest, []draft.Param{{Name: "fc.weight", Shape: []int{3, 2}}}, mom); err == nil {
		t.Error("moments of another shape read back")
	}
}

func TestReadStateRefusesForeignState(t *testing.T) {
	if _, err := ReadState(t.TempDir()); err == nil {
		t.Error("a folder without state.json read as a checkpoint")
	}
}

// TestReadStateRefusesBadCounters: a state.json with a negative loader_pos panicked on resume (the data
// order indexed at -5); now every counter is checked, naming the file and the field.
func TestReadStateRefusesBadCounters(t *testing.T) {
	const good = `"step": 4, "total_steps": 8, "loader_epoch": 1, "loader_pos": 2, "optimizer_step": 4, "best_step": 2, "best_simulated_acceptance_length": 1.5, "batch_size": 2, "draft_config": {}`
	for _, c := range []struct{ field, value, want string }{
		{"", "", ""},
		{"loader_pos", "-5", "loader_pos is -5"},
		{"step", "-1", "step is -1"},
		{"loader_epoch", "-2", "loader_epoch is -2"},
		{"optimizer_step", "-3", "optimizer_step is -3"},
		{"batch_size", "0", "batch_size is 0"},
		{"best_step", "9", "best_step 9 is after step 4"},
	} {
		dir := t.TempDir()
		js := "{" + good
		if c.field != "" {
			js += `, "` + c.field + `": ` + c.value
		}
		if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(js+"}"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadState(dir)
		if c.want == "" {
			if err != nil {
				t.Errorf("valid state: %v", err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), StateFile) {
			t.Errorf("%s %s: %v, want %q", c.field, c.value, err, c.want)
		}
	}
}
