package pipeline

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/specforge/specforge/internal/checkpoint"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/model"
)

// Exported is what Export wrote.
type Exported struct {
	Source   string           // the draft or checkpoint folder the draft was read from
	Imported *export.Imported // the head as read
	Draft    *draft.Draft     // the draft as written
	Options  export.Options   // the options it was written with, the verifier filled in
}

// Export writes the draft that from names (exportSource) to out in layout f, fitted to the target of
// targetDir when it is set (only its embedding and lm_head are read), and validates the files by reading
// them back. The verifier defaults to the target the draft was trained for when that folder exists.
// Warnings go to log.
func Export(from, targetDir, out string, f export.Format, o export.Options, log io.Writer) (*Exported, error) {
	src, err := exportSource(from)
	if err != nil {
		return nil, err
	}
	im, err := ReadDraft(src, log)
	if err != nil {
		return nil, err
	}
	d, err := exportDraft(im, targetDir)
	if err != nil {
		return nil, err
	}
	if o.Verifier == "" && d.Config.TargetPath != "" {
		// A relative path would be read relative to wherever the engine starts.
		if abs, err := filepath.Abs(d.Config.TargetPath); err == nil && isDir(abs) {
			o.Verifier = abs
		}
	}
	if f == export.Speculators && o.Verifier == "" && d.Config.TargetPath == "" {
		return nil, fmt.Errorf("the speculators format records the verifier model: pass --verifier NAME_OR_PATH or --target DIR")
	}
	if err := export.Write(out, d, f, o); err != nil {
		return nil, err
	}
	for _, w := range export.AuxWarnings(&d.Config, f) {
		fmt.Fprintf(log, "warning: %s\n", w)
	}
	return &Exported{Source: src, Imported: im, Draft: d, Options: o}, nil
}

// exportSource resolves what export reads from dir: a draft folder or a checkpoint is itself, a run folder
// (train.output_dir) stands for its final draft, or its latest checkpoint while it has none.
func exportSource(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err == nil || checkpoint.Is(dir) {
		return dir, nil
	}
	if _, err := os.Stat(filepath.Join(dir, "draft", "config.json")); err == nil {
		return filepath.Join(dir, "draft"), nil
	}
	latest, err := checkpoint.Latest(dir)
	if err == nil && latest == "" {
		err = fmt.Errorf("--checkpoint %s: not a checkpoint (state.json), a draft folder (config.json) or a run folder (draft/ or checkpoints/)", dir)
	}
	return latest, err
}

// exportDraft assembles the imported head, fitted to the target when one is given.
func exportDraft(im *export.Imported, targetDir string) (*draft.Draft, error) {
	if targetDir == "" {
		return im.Draft()
	}
	head, _, err := model.LoadHead(targetDir)
	if err != nil {
		return nil, err
	}
	d, err := im.ForTarget(head)
	if err != nil {
		return nil, err
	}
	if d.Config.TargetPath == "" {
		d.Config.TargetPath = targetDir
	}
	return d, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
