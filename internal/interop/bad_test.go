package interop

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/safetensors"
)

// torchZip builds a torch.save archive: data.pkl and the given storage records under sample/.
func torchZip(t testing.TB, pkl []byte, records map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, b []byte) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	add("sample/data.pkl", pkl)
	for k, b := range records {
		add("sample/data/"+k, b)
	}
	add("sample/version", []byte("3\n"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// pickleUnicode is the BINUNICODE opcode for s.
func pickleUnicode(s string) []byte {
	b := []byte{'X'}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// tensorPickle pickles {key: tensor of n elements of storage class storage in record "0"} as torch.save does.
func tensorPickle(key, storage string, n byte) []byte { return viewPickle(key, storage, n, n, 1) }

// viewPickle pickles {key: a view of size (size,) and stride (stride,) of a storage of numel elements}.
func viewPickle(key, storage string, numel, size, stride byte) []byte {
	var p []byte
	p = append(p, 0x80, 2, '}', '(')
	p = append(p, pickleUnicode(key)...)
	p = append(p, "ctorch._utils\n_rebuild_tensor_v2\n"...)
	p = append(p, '(', '(')
	p = append(p, pickleUnicode("storage")...)
	p = append(p, "ctorch\n"+storage+"\n"...)
	p = append(p, pickleUnicode("0")...)
	p = append(p, pickleUnicode("cpu")...)
	p = append(p, 'K', numel, 't', 'Q')                             // (..., numel) BINPERSID
	p = append(p, 'K', 0, 'K', size, 0x85, 'K', stride, 0x85, 0x89) // offset 0, (size,), (stride,), False
	p = append(p, "ccollections\nOrderedDict\n)R"...)
	p = append(p, 't', 'R', 'u', '.')
	return p
}

func TestTorchRoundTrip(t *testing.T) {
	data := torchZip(t, tensorPickle("x", "LongStorage", 3), map[string][]byte{"0": {1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	d, err := DecodeTorch("x.ckpt", data)
	if err != nil {
		t.Fatal(err)
	}
	if x := d["x"]; x == nil || len(x.Ints) != 3 || x.Ints[0] != 1 || x.Ints[1] != 2 || x.Ints[2] != -1 || x.Storage != "LongStorage" {
		t.Fatalf("got %+v", d["x"])
	}
}

// TestBadTorchFiles: each bad file is an error naming the file and what is wrong with it, never a panic.
func TestBadTorchFiles(t *testing.T) {
	long3 := map[string][]byte{"0": make([]byte, 24)}
	fixtureCkpt := func() []byte {
		b, err := os.ReadFile(filepath.Join(fixtureDir(t), "specforge_offline", "rows_0-2000", "data_0.ckpt"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name string
		data func() []byte
		want []string
	}{
		{"code execution", func() []byte {
			p := append([]byte{0x80, 2}, "cos\nsystem\n"...)
			p = append(append(p, pickleUnicode("touch /tmp/pwned")...), 0x85, 'R', '.')
			return torchZip(t, p, nil)
		}, []string{"os.system", "refused", "run code"}},
		{"builtins eval", func() []byte {
			p := append([]byte{0x80, 2}, "cbuiltins\neval\n"...)
			p = append(append(p, pickleUnicode("1")...), 0x85, 'R', '.')
			return torchZip(t, p, nil)
		}, []string{"builtins.eval", "refused"}},
		{"not a dict", func() []byte { return torchZip(t, []byte{0x80, 2, ']', '.'}, nil) }, []string{"want a dict of tensors"}},
		{"dict of ints", func() []byte {
			p := append([]byte{0x80, 2, '}'}, pickleUnicode("input_ids")...)
			return torchZip(t, append(p, 'K', 1, 's', '.'), nil)
		}, []string{`"input_ids" is a int`, "not a dict of tensors"}},
		{"malformed pickle", func() []byte { return torchZip(t, []byte{0x80, 2, 's', '.'}, nil) }, []string{"pickle"}},
		{"storage larger than its record", func() []byte {
			return torchZip(t, tensorPickle("x", "LongStorage", 4), long3)
		}, []string{`storage "0"`, "4 LongStorage elements declared", "24 bytes"}},
		{"expanded view", func() []byte {
			return torchZip(t, viewPickle("x", "LongStorage", 1, 200, 0), map[string][]byte{"0": make([]byte, 8)})
		}, []string{`tensor "x"`, "200 elements over a storage of 1"}},
		{"view past its storage", func() []byte {
			return torchZip(t, viewPickle("x", "LongStorage", 3, 3, 2), long3)
		}, []string{`tensor "x"`, "reach element 4 of a storage of 3"}},
		{"storage without record", func() []byte { return torchZip(t, tensorPickle("x", "LongStorage", 3), nil) }, []string{"no record data/0"}},
		{"no data.pkl", func() []byte {
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			zw.Create("sample/version")
			zw.Close()
			return buf.Bytes()
		}, []string{"no data.pkl"}},
		{"legacy format", func() []byte { return []byte{0x80, 2, 0x8a, 0x0a} }, []string{"legacy torch.save format"}},
		{"not torch", func() []byte { return []byte("hello") }, []string{"not a torch.save file"}},
		{"truncated", func() []byte { b := fixtureCkpt(); return b[:len(b)/2] }, []string{"truncated or corrupt"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeTorch("dir/data_7.ckpt", c.data())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range append(c.want, "dir/data_7.ckpt") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func fixtureDir(t testing.TB) string {
	t.Helper()
	dir, _, _, _ := fixture(t.(*testing.T))
	return dir
}

// TestBadSampleFiles: files of the right format with the wrong content, and truncated files, are errors
// naming the file.
func TestBadSampleFiles(t *testing.T) {
	dir, target, aux, norm := fixture(t)
	shape := Shape{HiddenSize: target.HiddenSize, VocabSize: target.VocabSize, AuxLayers: len(aux)}
	tmp := t.TempDir()
	H, T := target.HiddenSize, 5
	write := func(name string, tensors ...safetensors.Tensor) string {
		p := filepath.Join(tmp, name)
		if err := safetensors.Write(p, tensors, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ids := safetensors.FromInt64("token_ids", safetensors.I64, []int{T}, make([]int64, T))
	wrongShape := write("hs_0.safetensors", ids, safetensors.FromFloat32("hidden_states", safetensors.BF16, []int{T, 3, H}, make([]float32, T*3*H)))
	if _, err := ReadSpeculators(wrongShape, shape, norm); err == nil || !strings.Contains(err.Error(), wrongShape) || !strings.Contains(err.Error(), "shape [5 3 64], want [5 4 64]") {
		t.Errorf("wrong shape: %v", err)
	}
	badID := write("hs_1.safetensors", safetensors.FromInt64("token_ids", safetensors.I64, []int{T}, []int64{1, 2, 512, 3, 4}),
		safetensors.FromFloat32("hidden_states", safetensors.BF16, []int{T, 4, H}, make([]float32, T*4*H)))
	if _, err := ReadSpeculators(badID, shape, norm); err == nil || !strings.Contains(err.Error(), badID) || !strings.Contains(err.Error(), "token_ids[2] = 512, outside the target's vocabulary of 512") {
		t.Errorf("bad id: %v", err)
	}
	noStates := write("hs_2.safetensors", ids)
	if _, err := ReadSpeculators(noStates, shape, norm); err == nil || !strings.Contains(err.Error(), noStates) || !strings.Contains(err.Error(), "hidden_states") {
		t.Errorf("missing tensor: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "speculators_offline", "hs_0.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(tmp, "hs_3.safetensors")
	os.WriteFile(truncated, raw[:len(raw)-100], 0o644)
	if _, err := ReadSpeculators(truncated, shape, norm); err == nil || !strings.Contains(err.Error(), truncated) {
		t.Errorf("truncated safetensors: %v", err)
	}
	gz, err := os.ReadFile(filepath.Join(dir, "specforge_offline", "rows_0-2000", "data_3.ckpt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	truncatedGz := filepath.Join(tmp, "data_3.ckpt.gz")
	os.WriteFile(truncatedGz, gz[:len(gz)/2], 0o644)
	if _, err := ReadSpecForge(truncatedGz, shape); err == nil || !strings.Contains(err.Error(), truncatedGz) || !strings.Contains(err.Error(), "truncated or corrupt") {
		t.Errorf("truncated gzip: %v", err)
	}
	// A SpecForge sample of another target: the aux width is not 3 of this target's hidden size.
	other := Shape{HiddenSize: 32, VocabSize: 512, AuxLayers: 3}
	ckpt := filepath.Join(dir, "specforge_offline", "rows_0-2000", "data_0.ckpt")
	if _, err := ReadSpecForge(ckpt, other); err == nil || !strings.Contains(err.Error(), ckpt) || !strings.Contains(err.Error(), `"hidden_state" of shape [1 85 64], want [1, 85, 32]`) {
		t.Errorf("other target: %v", err)
	}
}
