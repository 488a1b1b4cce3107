package safetensors

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rawFile is a safetensors file with the given header JSON and data section.
func rawFile(header string, data []byte) []byte {
	buf := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	return append(append(buf, header...), data...)
}

// FuzzSafetensorsHeader parses arbitrary bytes as a safetensors file. Whatever the header claims, parsing
// must fail with an error naming the file or give tensors whose every element can be read.
func FuzzSafetensorsHeader(f *testing.F) {
	f.Add(rawFile(`{"__metadata__": {"format": "pt"}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}`, make([]byte, 16)))
	f.Add(rawFile(`{"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}, "b": {"dtype": "I64", "shape": [], "data_offsets": [6, 14]}}`, make([]byte, 14)))
	f.Add(rawFile(`{"w": {"dtype": "F32", "shape": [4611686018427387904, 64], "data_offsets": [0, 0]}}`, nil))
	f.Add(rawFile(`{"e": {"dtype": "BOOL", "shape": [0, 4096], "data_offsets": [0, 0]}}`, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parse("fuzz.safetensors", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.safetensors") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		for _, name := range file.Names() {
			tt, err := file.Tensor(name)
			if err != nil {
				t.Fatal(err)
			}
			n := tt.NumElements()
			if n < 0 || int64(n)*int64(tt.DType.Size()) != int64(len(tt.Data)) {
				t.Fatalf("tensor %q: %d elements of %s in %d bytes", name, n, tt.DType, len(tt.Data))
			}
			var got int
			if v, err := tt.Float32(); err == nil {
				got = len(v)
			} else if v, err := tt.Int64(); err == nil {
				got = len(v)
			} else {
				t.Fatalf("tensor %q of %s reads as neither floats nor integers", name, tt.DType)
			}
			if got != n {
				t.Fatalf("tensor %q: read %d of %d elements", name, got, n)
			}
			tt.View() // may refuse (misaligned, rank too high) but must not panic
		}
	})
}

func TestReadLimited(t *testing.T) {
	path := filepath.Join(t.TempDir(), IndexFile)
	os.WriteFile(path, []byte("12345"), 0o644)
	if raw, err := readLimited(path, 5); err != nil || string(raw) != "12345" {
		t.Errorf("at the limit: %q, %v", raw, err)
	}
	if _, err := readLimited(path, 4); err == nil || !strings.Contains(err.Error(), "over the limit of 4 bytes") || !strings.Contains(err.Error(), path) {
		t.Errorf("over the limit: %v", err)
	}
}
