package capture

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/specforge/specforge/internal/hidden"
)

// Fingerprint identifies a target folder by its config.json and the contents of its weight files
// (*.safetensors): a trainer refuses states computed by any other target. Every weight byte is hashed, once
// per process start, so two folders holding the same model under other paths agree.
func Fingerprint(dir string) (string, error) {
	h := sha256.New()
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return "", fmt.Errorf("fingerprint the target: %w", err)
	}
	fmt.Fprintf(h, "config.json %d\n", len(cfg))
	h.Write(cfg)
	files, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", fmt.Errorf("fingerprint the target: no *.safetensors in %s", dir)
	}
	slices.Sort(files)
	for _, f := range files {
		sum, size, err := hidden.FileSHA256(f)
		if err != nil {
			return "", fmt.Errorf("fingerprint the target: %w", err)
		}
		fmt.Fprintf(h, "%s %d %s\n", filepath.Base(f), size, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
