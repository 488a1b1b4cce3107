package safetensors

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chunked is a Source that writes t's bytes a few at a time, as a generator of a large tensor does.
func chunked(t Tensor, chunk int) Source {
	return Source{Name: t.Name, DType: t.DType, Shape: t.Shape, Fill: func(w io.Writer) error {
		for lo := 0; lo < len(t.Data); lo += chunk {
			if _, err := w.Write(t.Data[lo:min(lo+chunk, len(t.Data))]); err != nil {
				return err
			}
		}
		return nil
	}}
}

func TestWriteStreamMatchesWrite(t *testing.T) {
	dir := t.TempDir()
	tensors := []Tensor{
		FromFloat32("b.weight", BF16, []int{3, 5}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}),
		FromFloat32("a.weight", F32, []int{2, 2}, []float32{-1, 0.5, 0.25, 8}),
		FromInt64("ids", I64, []int{3}, []int64{7, -1, 3}),
		FromFloat32("scalar", F32, []int{}, []float32{42}),
	}
	want := filepath.Join(dir, "want.safetensors")
	if err := Write(want, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	wantBytes, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 3, 1 << 20} {
		var sources []Source
		for _, x := range tensors {
			sources = append(sources, chunked(x, chunk))
		}
		path := filepath.Join(dir, "stream.safetensors")
		if err := WriteStream(path, sources, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantBytes) {
			t.Errorf("chunk %d: streamed file differs from Write's (%d bytes, want %d)", chunk, len(got), len(wantBytes))
		}
		f, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		x, err := f.Tensor("b.weight")
		if err != nil {
			t.Fatal(err)
		}
		v, err := x.Float32()
		if err != nil || v[14] != 15 {
			t.Errorf("chunk %d: b.weight = %v, %v", chunk, v, err)
		}
		f.Close()
	}
}

func TestWriteStreamErrors(t *testing.T) {
	good := FromFloat32("x", F32, []int{4}, []float32{1, 2, 3, 4})
	cases := []struct {
		name    string
		sources []Source
		want    string
	}{
		{"short", []Source{{Name: "x", DType: F32, Shape: []int{4}, Fill: func(w io.Writer) error { _, err := w.Write(good.Data[:12]); return err }}}, "wrote 12 bytes"},
		{"long", []Source{{Name: "x", DType: F32, Shape: []int{4}, Fill: func(w io.Writer) error { _, err := w.Write(append(good.Data, 0)); return err }}}, "wrote 17 bytes"},
		{"fill fails", []Source{{Name: "x", DType: F32, Shape: []int{4}, Fill: func(io.Writer) error { return io.ErrUnexpectedEOF }}}, "unexpected EOF"},
		{"duplicate", []Source{chunked(good, 4), chunked(good, 4)}, "appears twice"},
		{"unknown dtype", []Source{{Name: "x", DType: "Q4", Shape: []int{4}, Fill: func(io.Writer) error { return nil }}}, "unknown dtype"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "x.safetensors")
			err := WriteStream(path, c.sources, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			// The write is atomic: neither the file nor its temporary is left behind.
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("left %d files in the folder after a failed write", len(entries))
			}
		})
	}
}
