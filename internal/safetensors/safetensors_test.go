package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/tensor"
)

func TestRoundTripAllDTypes(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	floats := []float32{1, -2.5, 0.125, 0.0078125, 448, -0}
	ints := []int64{0, -1, 7, 127, -128, 100}
	tensors := []Tensor{
		FromFloat32("f32", F32, []int{2, 3}, floats),
		FromFloat32("f64", F64, []int{6}, floats),
		FromFloat32("bf16", BF16, []int{3, 2}, floats),
		FromFloat32("f16", F16, []int{6}, floats),
		FromInt64("i64", I64, []int{6}, ints),
		FromInt64("i32", I32, []int{6}, ints),
		FromInt64("i16", I16, []int{6}, ints),
		FromInt64("i8", I8, []int{6}, ints),
		FromInt64("u8", U8, []int{2, 3}, []int64{0, 1, 2, 200, 255, 3}),
		FromBool("bool", []int{6}, []bool{true, false, true, true, false, false}),
		FromFloat32("scalar", F32, []int{}, []float32{42}),
		FromFloat32("empty", F32, []int{0, 4}, nil),
	}
	if err := Write(path, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	if len(f.Names()) != len(tensors) {
		t.Fatalf("names %v", f.Names())
	}
	for _, name := range []string{"f32", "f64", "bf16", "f16"} {
		tt, err := f.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if v != floats[i] { // every value above is exact in all four types
				t.Errorf("%s[%d] = %g, want %g", name, i, v, floats[i])
			}
		}
	}
	for _, name := range []string{"i64", "i32", "i16", "i8"} {
		tt, _ := f.Tensor(name)
		got, err := tt.Int64()
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if got[i] != ints[i] {
				t.Errorf("%s[%d] = %d, want %d", name, i, got[i], ints[i])
			}
		}
	}
	u8, _ := f.Tensor("u8")
	if v, _ := u8.Int64(); v[3] != 200 || u8.Shape[1] != 3 {
		t.Errorf("u8 = %v %v", v, u8.Shape)
	}
	b, _ := f.Tensor("bool")
	if v, _ := b.Bool(); !v[0] || v[1] || !v[3] {
		t.Errorf("bool = %v", v)
	}
	s, _ := f.Tensor("scalar")
	if v, _ := s.Float32(); len(s.Shape) != 0 || v[0] != 42 {
		t.Errorf("scalar = %v shape %v", v, s.Shape)
	}
	if _, err := b.Float32(); err == nil || !strings.Contains(err.Error(), `"bool"`) {
		t.Errorf("bool as float: %v", err)
	}
	// View aliases the mapping with the tensor's dtype and shape.
	f32, _ := f.Tensor("f32")
	if v, err := f32.View(); err != nil || v.DType() != F32 || v.Storage() != tensor.Mapped || v.Rank() != len(f32.Shape) || &v.Raw()[0] != &f32.Data[0] {
		t.Errorf("view of f32 = %v, %v", v, err)
	}
	if v, err := b.View(); err != nil || v.DType() != BOOL || v.Len() != b.NumElements() {
		t.Errorf("view of bool = %v, %v", v, err)
	}
	// Every tensor's data is aligned to its element size (the writer orders by size).
	for _, name := range f.Names() {
		tt, _ := f.Tensor(name)
		if len(tt.Data) > 0 && uintptrOf(tt.Data)%uintptr(tt.DType.Size()) != 0 {
			t.Errorf("%s misaligned", name)
		}
	}
}

func TestCheckShape(t *testing.T) {
	x := FromFloat32("w", F32, []int{2, 3}, make([]float32, 6))
	x.Source = "m.safetensors"
	if err := x.CheckShape(2, 3); err != nil {
		t.Error(err)
	}
	err := x.CheckShape(3, 2)
	if err == nil || !strings.Contains(err.Error(), `m.safetensors: tensor "w": shape [2 3], want [3 2]`) {
		t.Errorf("got %v", err)
	}
}

// writeRaw writes a file with the given header JSON and data section.
func writeRaw(t *testing.T, header string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad.safetensors")
	buf := make([]byte, 8)
	binary.LittleEndian.PutUint64(buf, uint64(len(header)))
	buf = append(buf, header...)
	buf = append(buf, data...)
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOpenErrors(t *testing.T) {
	cases := []struct {
		name, header string
		data         []byte
		want         string
	}{
		{"corrupt json", `{"a": {"dtype": "F32",`, nil, "corrupt header"},
		{"unknown dtype", `{"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}`, []byte{0}, `tensor "w": unknown dtype "F8_E4M3"`},
		{"out of range", `{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}`, make([]byte, 8), `tensor "w": data offsets [0, 16] out of range`},
		{"size mismatch", `{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}`, make([]byte, 8), `tensor "w": 8 bytes for shape [3] of F32, want 12`},
		{"overlap", `{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}`, make([]byte, 12), `overlap`},
		{"negative dim", `{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}}`, nil, "negative dimension"},
		// 2^62 x 64 elements wrap to 0 in int64: the byte range [0, 0] must not pass for them.
		{"element count overflows", `{"w": {"dtype": "F32", "shape": [4611686018427387904, 64], "data_offsets": [0, 0]}}`, nil, "shape [4611686018427387904 64]: the size overflows int64 bytes"},
		{"byte count overflows", `{"w": {"dtype": "F64", "shape": [2305843009213693952], "data_offsets": [0, 0]}}`, nil, "the size overflows int64 bytes"},
		{"overflow before a zero dim", `{"w": {"dtype": "F32", "shape": [4611686018427387904, 64, 0], "data_offsets": [0, 0]}}`, nil, "the size overflows int64 bytes"},
		{"dim beyond int64", `{"w": {"dtype": "F32", "shape": [1e30], "data_offsets": [0, 0]}}`, nil, `tensor "w": bad header entry`},
		{"huge shape, small range", `{"w": {"dtype": "BF16", "shape": [1048576, 1048576], "data_offsets": [0, 8]}}`, make([]byte, 8), "8 bytes for shape [1048576 1048576] of BF16, want 2199023255552"},
		{"offsets beyond int64", `{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 1e30]}}`, make([]byte, 4), `tensor "w": bad header entry`},
		{"negative offset", `{"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}`, make([]byte, 4), "data offsets [-4, 0] out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeRaw(t, c.header, c.data)
			_, err := Open(path)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("got %v, want an error naming %s and containing %q", err, path, c.want)
			}
		})
	}
	t.Run("truncated header", func(t *testing.T) {
		path := writeRaw(t, `{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}`, make([]byte, 4))
		raw, _ := os.ReadFile(path)
		os.WriteFile(path, raw[:20], 0o644)
		if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "truncated header") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("huge header length", func(t *testing.T) {
		for _, hlen := range []uint64{maxHeaderBytes + 1, 1 << 63, math.MaxUint64} {
			buf := binary.LittleEndian.AppendUint64(nil, hlen)
			path := filepath.Join(t.TempDir(), "huge.safetensors")
			os.WriteFile(path, append(buf, "{}"...), 0o644)
			if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "exceeds the limit of 104857600 bytes") || !strings.Contains(err.Error(), path) {
				t.Errorf("header length %d: got %v", hlen, err)
			}
		}
	})
	t.Run("tiny file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tiny.safetensors")
		os.WriteFile(path, []byte{1, 2}, 0o644)
		if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "not a safetensors file") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("missing tensor", func(t *testing.T) {
		path := writeRaw(t, `{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}`, make([]byte, 4))
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		_, err = f.Tensor("v")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"v"`) {
			t.Errorf("got %v", err)
		}
	})
}

func TestShardedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	a := FromFloat32("model.a", F32, []int{2}, []float32{1, 2})
	b := FromFloat32("model.b", BF16, []int{1}, []float32{3})
	if err := Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Tensor{a}, nil); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{b}, nil); err != nil {
		t.Fatal(err)
	}
	index := map[string]any{"metadata": map[string]any{"total_size": 10}, "weight_map": map[string]string{
		"model.a": "model-00001-of-00002.safetensors", "model.b": "model-00002-of-00002.safetensors"}}
	js, _ := json.Marshal(index)
	os.WriteFile(filepath.Join(dir, IndexFile), js, 0o644)
	c, err := OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); len(got) != 2 || got[0] != "model.a" || got[1] != "model.b" {
		t.Errorf("names %v", got)
	}
	tb, err := c.Tensor("model.b")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tb.Float32(); v[0] != 3 {
		t.Errorf("model.b = %v", v)
	}
	if _, err := c.Tensor("model.c"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
		t.Errorf("missing tensor: %v", err)
	}
	c.Close()

	// An index that names a tensor no shard holds is refused with the tensor's name.
	index["weight_map"].(map[string]string)["model.c"] = "model-00002-of-00002.safetensors"
	js, _ = json.Marshal(index)
	os.WriteFile(filepath.Join(dir, IndexFile), js, 0o644)
	if _, err := OpenCheckpoint(dir); err == nil || !strings.Contains(err.Error(), `"model.c"`) {
		t.Errorf("got %v", err)
	}
	if _, err := OpenCheckpoint(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no model.safetensors") {
		t.Errorf("empty folder: %v", err)
	}
}

// The golden files were written by an independent Python writer; reading them checks our reader against it.
func TestReadsReferenceFile(t *testing.T) {
	path := "../../../shared/assets/models/stories260K/model.safetensors"
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := len(f.Names()); n != 47 {
		t.Errorf("%d tensors, want 47", n)
	}
	emb, err := f.Tensor("model.embed_tokens.weight")
	if err != nil {
		t.Fatal(err)
	}
	if err := emb.CheckShape(512, 64); err != nil {
		t.Error(err)
	}
}
