package hidden

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/tensor"
)

// withIndex rewrites the index (and footer) of the shard bytes raw through edit.
func withIndex(t testing.TB, raw []byte, edit func(*shardIndex)) []byte {
	t.Helper()
	at := int64(binary.LittleEndian.Uint64(raw[len(raw)-24:]))
	var x shardIndex
	if err := json.Unmarshal(raw[at:len(raw)-24], &x); err != nil {
		t.Fatal(err)
	}
	edit(&x)
	js, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	out := append(bytes.Clone(raw[:at]), js...)
	out = binary.LittleEndian.AppendUint64(out, uint64(at))
	out = binary.LittleEndian.AppendUint64(out, uint64(len(js)))
	return append(out, shardMagic...)
}

func writeTestShard(t testing.TB, dir string, samples ...Sample) (string, ShardInfo) {
	t.Helper()
	path := filepath.Join(dir, "s.sfh")
	info, err := WriteShard(path, samples, tensor.BF16, []int{1, 2, 1}, 16)
	if err != nil {
		t.Fatal(err)
	}
	return path, info
}

// TestShardIndexLimits: negative or absurd fields in a shard index were a panic (make with a negative
// size, a slice out of range) or an allocation the size of the claim; now each is an error naming the field.
func TestShardIndexLimits(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeTestShard(t, dir, randomSample(rand.New(rand.NewPCG(3, 3)), 6, 48, 16))
	raw, _ := os.ReadFile(path)
	for _, c := range []struct {
		name string
		edit func(*shardIndex)
		want string
	}{
		{"negative tokens", func(x *shardIndex) { x.Records[0].Tokens = -5 }, "records[0]"},
		{"negative aux bytes", func(x *shardIndex) { x.Records[0].AuxBytes = -1 }, "records[0]"},
		{"negative offset", func(x *shardIndex) { x.Records[0].Offset = -1 << 40 }, "records[0]"},
		{"record past the end", func(x *shardIndex) { x.Records[0].HiddenBytes = 1 << 62 }, "outside the"},
		{"overflowing sum", func(x *shardIndex) {
			x.Records[0].AuxBytes, x.Records[0].HiddenBytes, x.Records[0].Offset = 1<<62, 1<<62, 1<<62
		}, "records[0]"},
		{"tokens beyond their bytes", func(x *shardIndex) { x.Records[0].Tokens = 1 << 40 }, "records[0]"},
		{"forged expansion", func(x *shardIndex) {
			x.HiddenSize, x.AuxWidth = 4096, 3*4096
			x.Records[0].Tokens, x.Records[0].AuxBytes, x.Records[0].HiddenBytes = 20, 0, 0
		}, "maxExpansion"},
		{"negative hidden size", func(x *shardIndex) { x.HiddenSize, x.AuxWidth = -16, -48 }, "hidden_size -16"},
		{"huge hidden size", func(x *shardIndex) { x.HiddenSize, x.AuxWidth = 1<<40, 3<<40 }, "hidden_size"},
		{"aux width", func(x *shardIndex) { x.AuxWidth = 47 }, "width 47"},
		{"slot out of range", func(x *shardIndex) { x.AuxSlots = []int{0, 5, 1} }, "aux_slots[1] = 5"},
		{"negative slot", func(x *shardIndex) { x.AuxSlots = []int{0, -1, 1} }, "aux_slots[1] = -1"},
		{"no slots", func(x *shardIndex) { x.AuxSlots, x.AuxWidth = nil, 0 }, "0 aux slots"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bad.sfh")
			if err := os.WriteFile(p, withIndex(t, raw, c.edit), 0o644); err != nil {
				t.Fatal(err)
			}
			sh, err := OpenShard(p)
			if err == nil {
				sh.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not name the file and %q", err, c.want)
			}
		})
	}
}

// TestStoreVerifies: a shard changed after generation (same size, other bytes) and token ids outside the
// target's vocabulary trained silently; now the first read from the shard fails with the reason.
func TestStoreVerifies(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	openAndRead := func(vocab int, damage func(path string)) error {
		dir := t.TempDir()
		_, info := writeTestShard(t, dir, randomSample(r, 6, 48, 16), randomSample(r, 3, 48, 16))
		info.File = "s.sfh"
		m := &Manifest{Format: FormatVersion, Target: TargetInfo{HiddenSize: 16, VocabSize: vocab}, AuxLayers: []int{1, 2, 1},
			DType: tensor.BF16, Samples: 2, Shards: []ShardInfo{info}, Complete: true}
		if err := m.write(dir, ManifestFile); err != nil {
			t.Fatal(err)
		}
		if damage != nil {
			damage(filepath.Join(dir, "s.sfh"))
		}
		s, err := Open(dir)
		if err != nil {
			return err
		}
		defer s.Close()
		for i := range s.Len() {
			if _, err := s.Sample(i); err != nil {
				return err
			}
		}
		return nil
	}
	if err := openAndRead(1000, nil); err != nil {
		t.Fatalf("intact store: %v", err)
	}
	flip := func(path string) {
		raw, _ := os.ReadFile(path)
		raw[2] ^= 0x40 // a token id byte: the sample still decodes
		os.WriteFile(path, raw, 0o644)
	}
	if err := openAndRead(1<<30, flip); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("changed shard: %v", err)
	}
	if err := openAndRead(10, nil); err == nil || !strings.Contains(err.Error(), "outside the target's vocabulary of 10") {
		t.Errorf("ids outside the vocabulary: %v", err)
	}
}

// FuzzOpenShard opens arbitrary shard bytes and reads every sample: errors are fine, panics and
// allocations beyond the file's claims are not.
func FuzzOpenShard(f *testing.F) {
	dir := f.TempDir()
	_, _ = writeTestShard(f, dir, randomSample(rand.New(rand.NewPCG(5, 5)), 4, 48, 16))
	raw, err := os.ReadFile(filepath.Join(dir, "s.sfh"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add(withIndex(f, raw, func(x *shardIndex) { x.Records[0].Tokens = -5 }))
	f.Add(withIndex(f, raw, func(x *shardIndex) { x.AuxSlots = []int{0, 7, 1} }))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "s.sfh")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sh, err := OpenShard(p)
		if err != nil {
			return
		}
		defer sh.Close()
		for i := range sh.Len() {
			s, err := sh.Read(i)
			if err != nil {
				continue
			}
			if len(s.Aux) != len(s.IDs)*sh.index.AuxWidth || len(s.Hidden) != len(s.IDs)*sh.index.HiddenSize {
				t.Fatalf("sample %d: %d tokens, %d aux and %d hidden values", i, len(s.IDs), len(s.Aux), len(s.Hidden))
			}
		}
	})
}
