package hidden

import (
	"fmt"
	"path/filepath"
	"sort"
	"sync"

	"github.com/specforge/specforge/internal/vocab"
)

// Store reads the samples of a complete shard folder by their index in the dataset.
type Store struct {
	Manifest *Manifest
	dir      string
	shards   []*Shard
	first    []int // first sample of each shard
	// Each shard's size and checksum are checked against the manifest once, when it is first read.
	verified  []sync.Once
	verifyErr []error
}

// Open opens every shard of dir; the manifest must say the generation is complete.
func Open(dir string) (*Store, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if !m.Complete {
		return nil, fmt.Errorf("%s: generation incomplete (%d of %d samples): run gen-hidden again to finish it", dir, shardSamples(m), m.Samples)
	}
	s := &Store{Manifest: m, dir: dir, verified: make([]sync.Once, len(m.Shards)), verifyErr: make([]error, len(m.Shards))}
	for _, info := range m.Shards {
		sh, err := OpenShard(filepath.Join(dir, info.File))
		if err != nil {
			s.Close()
			return nil, err
		}
		s.shards = append(s.shards, sh)
		switch x := sh.index; {
		case sh.Len() != info.Samples:
			err = fmt.Errorf("%d samples, the manifest says %d", sh.Len(), info.Samples)
		case x.HiddenSize != m.Target.HiddenSize || len(x.AuxSlots) != len(m.AuxLayers) || x.DType != m.DType:
			err = fmt.Errorf("%d aux slots of %d %s values, the manifest says %d of %d %s",
				len(x.AuxSlots), x.HiddenSize, x.DType.ShortName(), len(m.AuxLayers), m.Target.HiddenSize, m.DType.ShortName())
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, info.File), err)
		}
		sh.vocabSize = m.Target.VocabSize
		s.first = append(s.first, info.FirstSample)
	}
	return s, nil
}

// verify checks shard k against the manifest's size and checksum, the first time only: reading a shard
// once costs little beside decoding it, and a corrupted shard stops training instead of feeding it garbage.
func (s *Store) verify(k int) error {
	s.verified[k].Do(func() {
		info := s.Manifest.Shards[k]
		path := filepath.Join(s.dir, info.File)
		sum, size, err := FileSHA256(path)
		switch {
		case err != nil:
			s.verifyErr[k] = err
		case size != info.Bytes:
			s.verifyErr[k] = fmt.Errorf("%s: %d bytes, the manifest says %d: the shard was changed or damaged; run `specforge inspect` on the folder", path, size, info.Bytes)
		case sum != info.SHA256:
			s.verifyErr[k] = fmt.Errorf("%s: checksum mismatch (sha256 %s, the manifest says %s): the shard was changed or damaged; run gen-hidden again", path, sum, info.SHA256)
		}
	})
	return s.verifyErr[k]
}

func shardSamples(m *Manifest) int {
	n := 0
	for _, s := range m.Shards {
		n += s.Samples
	}
	return n
}

// Len is the number of samples.
func (s *Store) Len() int { return shardSamples(s.Manifest) }

// Layout is the target's hidden size and the number of aux layers a sample holds.
func (s *Store) Layout() (hiddenSize, auxLayers int) {
	return s.Manifest.Target.HiddenSize, len(s.Manifest.AuxLayers)
}

// Sample decodes sample i. Safe for concurrent use.
func (s *Store) Sample(i int) (*Sample, error) {
	k := sort.SearchInts(s.first, i+1) - 1
	if k < 0 || i >= s.Len() {
		return nil, fmt.Errorf("sample %d outside [0, %d)", i, s.Len())
	}
	if err := s.verify(k); err != nil {
		return nil, err
	}
	return s.shards[k].Read(i - s.first[k])
}

// CountLossTokens counts, per target id, the stored tokens that carry loss (for the draft vocabulary).
func (s *Store) CountLossTokens(counter *vocab.Counter) error {
	for k, sh := range s.shards {
		if err := s.verify(k); err != nil {
			return err
		}
		for i := 0; i < sh.Len(); i++ {
			ids, mask, err := sh.ReadTokens(i)
			if err != nil {
				return err
			}
			if err := counter.Add(ids, mask); err != nil {
				return fmt.Errorf("%s: sample %d: %w", s.Manifest.Shards[k].File, i, err)
			}
		}
	}
	return nil
}

// Close closes every shard.
func (s *Store) Close() error {
	for _, sh := range s.shards {
		sh.Close()
	}
	return nil
}

// Problem is a shard that failed verification.
type Problem struct {
	File, Reason string
}

// Verify checks every shard of the manifest in dir against its size and checksum, and that its index
// reads; deep also decodes every sample.
func Verify(dir string, deep bool) (*Manifest, []Problem, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, nil, err
	}
	var problems []Problem
	for _, info := range m.Shards {
		path := filepath.Join(dir, info.File)
		sum, size, err := FileSHA256(path)
		switch {
		case err != nil:
			problems = append(problems, Problem{info.File, err.Error()})
			continue
		case size != info.Bytes:
			problems = append(problems, Problem{info.File, fmt.Sprintf("%d bytes, the manifest says %d", size, info.Bytes)})
			continue
		case sum != info.SHA256:
			problems = append(problems, Problem{info.File, "checksum mismatch"})
			continue
		}
		sh, err := OpenShard(path)
		if err != nil {
			problems = append(problems, Problem{info.File, err.Error()})
			continue
		}
		if deep {
			for i := 0; i < sh.Len(); i++ {
				if _, err := sh.Read(i); err != nil {
					problems = append(problems, Problem{info.File, err.Error()})
					break
				}
			}
		}
		sh.Close()
	}
	return m, problems, nil
}
