package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// IndexFile is the name of the index of a sharded Hugging Face checkpoint.
const IndexFile = "model.safetensors.index.json"

// Checkpoint is the set of safetensors files of one model folder: model.safetensors, or the shards listed by
// model.safetensors.index.json.
type Checkpoint struct {
	Dir    string
	files  []*File
	byName map[string]*Tensor
}

// OpenCheckpoint opens the weights of a model folder. A sharded checkpoint's index must name every tensor
// that its shards hold, and each shard must hold the tensors the index gives it.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	c := &Checkpoint{Dir: dir, byName: map[string]*Tensor{}}
	indexPath := filepath.Join(dir, IndexFile)
	if _, err := os.Stat(indexPath); err == nil {
		if err := c.openSharded(indexPath); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err != nil {
		return nil, fmt.Errorf("%s: no model.safetensors or %s", dir, IndexFile)
	}
	if err := c.add(single); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// maxIndexBytes bounds model.safetensors.index.json. An index names the tensors that the shards' headers
// name again, so it is held to the headers' limit (DeepSeek-V3's 91k tensors take 9 MB); a larger one would
// only be read into memory to be refused later.
const maxIndexBytes = maxHeaderBytes

func (c *Checkpoint) openSharded(indexPath string) error {
	raw, err := readLimited(indexPath, maxIndexBytes)
	if err != nil {
		return fmt.Errorf("read index: %w", err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return fmt.Errorf("%s: invalid JSON: %v", indexPath, err)
	}
	if len(index.WeightMap) == 0 {
		return fmt.Errorf("%s: weight_map is missing or empty", indexPath)
	}
	var shards []string
	seen := map[string]bool{}
	for _, shard := range index.WeightMap {
		if !seen[shard] {
			seen[shard] = true
			shards = append(shards, shard)
		}
	}
	sort.Strings(shards)
	for _, shard := range shards {
		if filepath.Base(shard) != shard {
			return fmt.Errorf("%s: shard name %q must be a file in the same folder", indexPath, shard)
		}
		if err := c.add(filepath.Join(c.Dir, shard)); err != nil {
			return err
		}
	}
	for name, shard := range index.WeightMap {
		t, ok := c.byName[name]
		if !ok {
			return fmt.Errorf("%s: tensor %q is listed in %s but missing from the shards", filepath.Join(c.Dir, shard), name, IndexFile)
		}
		if filepath.Base(t.Source) != shard {
			return fmt.Errorf("%s: tensor %q is in %s, but the index says %s", indexPath, name, t.Source, shard)
		}
	}
	return nil
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%s: over the limit of %d bytes", path, limit)
	}
	return raw, nil
}

func (c *Checkpoint) add(path string) error {
	f, err := Open(path)
	if err != nil {
		return err
	}
	c.files = append(c.files, f)
	for _, name := range f.names {
		if prev, dup := c.byName[name]; dup {
			return fmt.Errorf("tensor %q is in both %s and %s", name, prev.Source, path)
		}
		c.byName[name] = f.tensors[name]
	}
	return nil
}

// Tensor returns the named tensor; the error for a missing one names the folder.
func (c *Checkpoint) Tensor(name string) (*Tensor, error) {
	t, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", c.Dir, name, ErrNotFound)
	}
	return t, nil
}

// Has reports whether the checkpoint holds the named tensor.
func (c *Checkpoint) Has(name string) bool { _, ok := c.byName[name]; return ok }

// Names lists every tensor, sorted.
func (c *Checkpoint) Names() []string {
	names := make([]string, 0, len(c.byName))
	for n := range c.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DataBytes is the size of all the tensors' data, for checking a configuration against the checkpoint.
func (c *Checkpoint) DataBytes() int64 {
	var n int64
	for _, t := range c.byName {
		n += int64(len(t.Data))
	}
	return n
}

// Close unmaps every file of the checkpoint.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	c.files = nil
	return errors.Join(errs...)
}
