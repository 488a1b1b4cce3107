package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/safetensors"
)

// A checkpoint is a folder checkpoints/step_NNNNNNNN holding draft.safetensors (float32 master weights,
// d2t, t2d), optimizer.safetensors (AdamW moments) and state.json (step, data position, best metric,
// configuration). It is written into a temporary folder that is renamed into place, so a checkpoint folder
// is either complete or absent.

type checkpointState struct {
	Step          int          `json:"step"`
	TotalSteps    int          `json:"total_steps"`
	LoaderEpoch   int          `json:"loader_epoch"`
	LoaderPos     int          `json:"loader_pos"`
	OptimizerStep int          `json:"optimizer_step"`
	Best          float64      `json:"best_simulated_acceptance_length"`
	BestStep      int          `json:"best_step"`
	Seed          uint64       `json:"seed"`
	BatchSize     int          `json:"batch_size"`
	Draft         draft.Config `json:"draft_config"`
}

func (t *Trainer) checkpointRoot() string { return checkpointRoot(t.Cfg.OutputDir) }

func checkpointRoot(runDir string) string { return filepath.Join(runDir, "checkpoints") }

// LatestCheckpoint is the newest complete checkpoint of a run folder (train.output_dir), "" when it has
// none.
func LatestCheckpoint(runDir string) (string, error) {
	all, err := Checkpoints(checkpointRoot(runDir))
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[len(all)-1], nil
}

func checkpointName(step int) string { return fmt.Sprintf("step_%08d", step) }

// Save writes a checkpoint of the current state and removes old ones, keeping the last KeepCheckpoints and
// the best by simulated acceptance length.
func (t *Trainer) Save() error {
	root := t.checkpointRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create checkpoint folder: %w", err)
	}
	// Only a metric measured at this very step ranks the checkpoint: one from an earlier evaluation belongs
	// to other weights.
	if r := t.lastMetric(); r != nil && r.Step == t.Step && (r.SimAccLen > t.Best || t.BestStep == 0) {
		t.Best, t.BestStep = r.SimAccLen, t.Step
	}
	final := filepath.Join(root, checkpointName(t.Step))
	tmp, err := os.MkdirTemp(root, "."+checkpointName(t.Step)+".tmp-")
	if err != nil {
		return fmt.Errorf("create checkpoint: %w", err)
	}
	defer os.RemoveAll(tmp) // after the rename there is nothing left to remove
	d := t.Draft
	if err := safetensors.Write(filepath.Join(tmp, "draft.safetensors"), export.Tensors(d, export.SGLang, safetensors.F32), map[string]string{"format": "pt"}); err != nil {
		return err
	}
	var opt []safetensors.Tensor
	for i, p := range d.W.Params(&d.Config) {
		opt = append(opt,
			safetensors.FromFloat32("m."+p.Name, safetensors.F32, p.Shape, t.Opt.M[i]),
			safetensors.FromFloat32("v."+p.Name, safetensors.F32, p.Shape, t.Opt.V[i]))
	}
	if err := safetensors.Write(filepath.Join(tmp, "optimizer.safetensors"), opt, nil); err != nil {
		return err
	}
	st := checkpointState{Step: t.Step, TotalSteps: t.TotalSteps, LoaderEpoch: t.Loader.Epoch, LoaderPos: t.Loader.Pos,
		OptimizerStep: t.Opt.Step, Best: finite(t.Best), BestStep: t.BestStep, Seed: t.Cfg.Seed, BatchSize: t.Cfg.BatchSize, Draft: d.Config}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(tmp, "state.json"), append(raw, '\n')); err != nil {
		return err
	}
	os.RemoveAll(final) // a checkpoint of this step from an earlier, interrupted run
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	if err := atomicfile.SyncDir(root); err != nil {
		return err
	}
	t.logf("saved checkpoint %s", final)
	return t.rotate()
}

func finite(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return x
}

// Checkpoints lists the complete checkpoint folders under root, oldest first.
func Checkpoints(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "step_") {
			out = append(out, filepath.Join(root, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (t *Trainer) rotate() error {
	all, err := Checkpoints(t.checkpointRoot())
	if err != nil {
		return err
	}
	keep := max(t.Cfg.KeepCheckpoints, 1)
	best := checkpointName(t.BestStep)
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

// Resume restores the trainer from a checkpoint folder: weights, optimiser moments, step, data position and
// best metric. The run's seed and batch size must match the checkpoint's, or the data order would differ.
func (t *Trainer) Resume(dir string) error {
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var st checkpointState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("resume: %s: %v", filepath.Join(dir, "state.json"), err)
	}
	if st.Seed != t.Cfg.Seed || st.BatchSize != t.Cfg.BatchSize {
		return fmt.Errorf("resume: checkpoint %s was trained with seed %d and batch size %d, this run has %d and %d", dir, st.Seed, st.BatchSize, t.Cfg.Seed, t.Cfg.BatchSize)
	}
	c := &t.Draft.Config
	if st.Draft.HiddenSize != c.HiddenSize || st.Draft.DraftVocabSize != c.DraftVocabSize || st.Draft.IntermediateSize != c.IntermediateSize {
		return fmt.Errorf("resume: checkpoint %s holds a draft of another shape", dir)
	}
	f, err := safetensors.Open(filepath.Join(dir, "draft.safetensors"))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	w, err := draft.LoadWeights(c, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	of, err := safetensors.Open(filepath.Join(dir, "optimizer.safetensors"))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	defer of.Close()
	for i, p := range w.Params(c) {
		for _, mv := range []struct {
			prefix string
			dst    []float32
		}{{"m.", t.Opt.M[i]}, {"v.", t.Opt.V[i]}} {
			tt, err := of.Tensor(mv.prefix + p.Name)
			if err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			if err := tt.CheckShape(p.Shape...); err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			vals, err := tt.Float32()
			if err != nil {
				return fmt.Errorf("resume: %w", err)
			}
			copy(mv.dst, vals)
		}
	}
	t.Draft.W = w
	t.Opt.Step = st.OptimizerStep
	t.Step, t.Loader.Epoch, t.Loader.Pos = st.Step, st.LoaderEpoch, st.LoaderPos
	t.Best, t.BestStep = st.Best, st.BestStep
	if st.TotalSteps != t.TotalSteps {
		t.logf("warning: the checkpoint planned %d steps, this run plans %d: the learning-rate schedule changes", st.TotalSteps, t.TotalSteps)
	}
	// Metrics logged after the checkpoint belong to steps that will run again: drop them.
	metricsPath := filepath.Join(t.Cfg.OutputDir, "metrics.jsonl")
	t.History = readHistory(metricsPath, st.Step)
	if err := atomicfile.Write(metricsPath, func(w io.Writer) error {
		for _, r := range t.History {
			line, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	t.logf("resumed from %s at step %d", dir, st.Step)
	return nil
}

// readHistory reloads the metrics logged up to step (for the plot of a resumed run).
func readHistory(path string, upTo int) []Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r Record
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.Step <= upTo {
			out = append(out, r)
		}
	}
	return out
}
