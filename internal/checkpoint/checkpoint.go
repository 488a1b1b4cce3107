// Package checkpoint owns the training checkpoint format: a folder checkpoints/step_NNNNNNNN of a run folder
// holding draft.safetensors (float32 master weights, d2t, t2d), optimizer.safetensors (AdamW moments) and
// state.json (step, data position, best metric, configuration); and the run folder's listing of them
// (List, Latest, Prune keeping the last N and the best). Training saves and resumes through it, export reads
// through it.
package checkpoint

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/safetensors"
)

// File names inside a checkpoint folder.
const (
	StateFile     = "state.json"
	WeightsFile   = "draft.safetensors"
	OptimizerFile = "optimizer.safetensors"
)

// State is state.json: everything besides the tensors that a resumed run needs to continue exactly.
type State struct {
	Step          int     `json:"step"`
	TotalSteps    int     `json:"total_steps"`
	LoaderEpoch   int     `json:"loader_epoch"`
	LoaderPos     int     `json:"loader_pos"`
	OptimizerStep int     `json:"optimizer_step"`
	Best          float64 `json:"best_simulated_acceptance_length"`
	BestStep      int     `json:"best_step"`
	Seed          uint64  `json:"seed"`
	BatchSize     int     `json:"batch_size"`
	// WorldSize and GradAccum complete the global batch (world_size x batch_size x grad_accum); 0 in a
	// checkpoint written before they were recorded, which was a single process's.
	WorldSize int `json:"world_size,omitempty"`
	GradAccum int `json:"grad_accum,omitempty"`
	// Draft is a pointer so that a state.json without draft_config (not written by specforge) is told apart.
	Draft *draft.Config `json:"draft_config"`
}

// Root is the folder of a run folder (train.output_dir) that holds its checkpoints.
func Root(runDir string) string { return filepath.Join(runDir, "checkpoints") }

// Name is the folder name of the checkpoint of a step; names sort by step.
func Name(step int) string { return fmt.Sprintf("step_%08d", step) }

// Is reports whether dir is a checkpoint folder (it has a state.json).
func Is(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, StateFile))
	return err == nil
}

// List returns the complete checkpoint folders of a run folder, oldest first.
func List(runDir string) ([]string, error) {
	root := Root(runDir)
	entries, err := os.ReadDir(root)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	var out []string
	for _, e := range entries {
		// Folders being written are hidden (".step_..."), so every step_ folder is complete.
		if e.IsDir() && strings.HasPrefix(e.Name(), "step_") {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// Latest is the newest complete checkpoint of a run folder, "" when it has none.
func Latest(runDir string) (string, error) {
	all, err := List(runDir)
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[len(all)-1], nil
}

// Moments are the optimiser's first and second moments, one pair of slices per draft parameter.
type Moments struct {
	M, V [][]float32
}

// Save writes the checkpoint of st.Step into the run folder and returns its path. weights are the draft's
// tensors as they are to be stored; params name and shape the moments. The checkpoint is written into a
// temporary folder that is renamed into place, so a checkpoint folder is either complete or absent.
func Save(runDir string, st State, weights []safetensors.Tensor, params []draft.Param, mom Moments) (string, error) {
	root := Root(runDir)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", fmt.Errorf("create checkpoint folder: %w", err)
	}
	final := filepath.Join(root, Name(st.Step))
	tmp, err := os.MkdirTemp(root, "."+Name(st.Step)+".tmp-")
	if err != nil {
		return "", fmt.Errorf("create checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename there is nothing left to remove
	if err := safetensors.Write(filepath.Join(tmp, WeightsFile), weights, map[string]string{"format": "pt"}); err != nil {
		return "", err
	}
	var opt []safetensors.Tensor
	for i, p := range params {
		opt = append(opt,
			safetensors.FromFloat32("m."+p.Name, safetensors.F32, p.Shape, mom.M[i]),
			safetensors.FromFloat32("v."+p.Name, safetensors.F32, p.Shape, mom.V[i]))
	}
	if err := safetensors.Write(filepath.Join(tmp, OptimizerFile), opt, nil); err != nil {
		return "", err
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode checkpoint state: %w", err)
	}
	if err := atomicfile.WriteBytes(filepath.Join(tmp, StateFile), append(raw, '\n')); err != nil {
		return "", err
	}
	os.RemoveAll(final) // a checkpoint of this step from an earlier, interrupted run
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := atomicfile.SyncDir(root); err != nil {
		return "", err
	}
	return final, nil
}

// Prune removes the checkpoints of a run folder but the last keep (at least one) and that of bestStep.
func Prune(runDir string, keep, bestStep int) error {
	all, err := List(runDir)
	if err != nil {
		return err
	}
	keep = max(keep, 1)
	best := Name(bestStep)
	for i, dir := range all {
		if i >= len(all)-keep || filepath.Base(dir) == best {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove old checkpoint: %w", err)
		}
	}
	return nil
}

// ReadState reads the state.json of a checkpoint folder.
func ReadState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var st State
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	if st.Draft == nil {
		return nil, fmt.Errorf("%s: no draft_config: not a specforge checkpoint", path)
	}
	if err := st.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &st, nil
}

// check refuses counters no run writes: a negative loader_pos would index the data order out of range.
func (st *State) check() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"step", st.Step}, {"total_steps", st.TotalSteps}, {"loader_epoch", st.LoaderEpoch}, {"loader_pos", st.LoaderPos},
		{"optimizer_step", st.OptimizerStep}, {"best_step", st.BestStep}} {
		if f.v < 0 {
			return fmt.Errorf("%s is %d, want 0 or more", f.name, f.v)
		}
	}
	switch {
	case st.BatchSize < 1:
		return fmt.Errorf("batch_size is %d, want 1 or more", st.BatchSize)
	case st.BestStep > st.Step:
		return fmt.Errorf("best_step %d is after step %d", st.BestStep, st.Step)
	case math.IsNaN(st.Best) || math.IsInf(st.Best, 0):
		return fmt.Errorf("best_simulated_acceptance_length is %v", st.Best)
	}
	return nil
}

// OpenWeights opens the draft tensors of a checkpoint folder (SGLang names, float32); the caller closes it.
func OpenWeights(dir string) (*safetensors.File, error) {
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return f, nil
}

// ReadMoments fills mom with the optimiser moments of a checkpoint folder, checking each against the shape of
// its parameter.
func ReadMoments(dir string, params []draft.Param, mom Moments) error {
	of, err := safetensors.Open(filepath.Join(dir, OptimizerFile))
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	defer of.Close()
	for i, p := range params {
		for _, mv := range []struct {
			prefix string
			dst    []float32
		}{{"m.", mom.M[i]}, {"v.", mom.V[i]}} {
			tt, err := of.Tensor(mv.prefix + p.Name)
			if err != nil {
				return fmt.Errorf("read checkpoint: %w", err)
			}
			if err := tt.CheckShape(p.Shape...); err != nil {
				return fmt.Errorf("read checkpoint: %w", err)
			}
			vals, err := tt.Float32()
			if err != nil {
				return fmt.Errorf("read checkpoint: %w", err)
			}
			copy(mv.dst, vals)
		}
	}
	return nil
}
