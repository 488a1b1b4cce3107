// Package interop reads the hidden states other EAGLE-3 trainers write, SpecForge's torch.save files and
// speculators' safetensors files, so that specforge can train on them.
package interop

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/pytorch"
	"github.com/nlpodyssey/gopickle/types"
)

// Limits on a torch.save file, checked before anything is sized from it.
const (
	// MaxTorchFileBytes bounds a torch.save file after gunzip: one sample of 32K tokens of an 8192-wide
	// target (three aux states and the final one in bf16) is 2 GiB, and a gzip bomb must stop well before
	// the machine's memory does.
	MaxTorchFileBytes = 4 << 30
	// maxPickleBytes bounds data.pkl: the pickle of a dict of a few tensors is under a kilobyte; its
	// storages live in separate records.
	maxPickleBytes = 1 << 20
	// maxTensors bounds the entries of the dict (SpecForge writes four).
	maxTensors = 64
	// maxRank bounds a tensor's dimensions (hidden states are at most [1, T, 3H]).
	maxRank = 8
)

// Tensor is a tensor read from a torch.save file, widened: float storages to Floats, integer and bool
// storages to Ints.
type Tensor struct {
	Storage string // the torch storage class, e.g. "BFloat16Storage"
	Shape   []int
	Floats  []float32
	Ints    []int64
}

// allowedGlobals are the only pickle globals a torch.save dict of tensors needs. Everything else (os.system,
// builtins.eval, any class a pickle could call) is refused by name, so that reading a file never runs code.
var allowedGlobals = map[string]func() any{
	"torch._utils._rebuild_tensor_v2": func() any { return &pytorch.RebuildTensorV2{} },
	"collections.OrderedDict":         func() any { return &types.OrderedDictClass{} },
	"torch.FloatStorage":              func() any { return &pytorch.FloatStorageClass{} },
	"torch.HalfStorage":               func() any { return &pytorch.HalfStorageClass{} },
	"torch.BFloat16Storage":           func() any { return &pytorch.BFloat16StorageClass{} },
	"torch.DoubleStorage":             func() any { return &pytorch.DoubleStorageClass{} },
	"torch.LongStorage":               func() any { return &pytorch.LongStorageClass{} },
	"torch.IntStorage":                func() any { return &pytorch.IntStorageClass{} },
	"torch.ShortStorage":              func() any { return &pytorch.ShortStorageClass{} },
	"torch.CharStorage":               func() any { return &pytorch.CharStorageClass{} },
	"torch.ByteStorage":               func() any { return &pytorch.ByteStorageClass{} },
	"torch.BoolStorage":               func() any { return &pytorch.BoolStorageClass{} },
}

// storageElemSize is the bytes per element of each storage class.
func storageElemSize(c pytorch.StorageClassInterface) (string, int) {
	switch c.(type) {
	case *pytorch.FloatStorageClass:
		return "FloatStorage", 4
	case *pytorch.HalfStorageClass:
		return "HalfStorage", 2
	case *pytorch.BFloat16StorageClass:
		return "BFloat16Storage", 2
	case *pytorch.DoubleStorageClass:
		return "DoubleStorage", 8
	case *pytorch.LongStorageClass:
		return "LongStorage", 8
	case *pytorch.IntStorageClass:
		return "IntStorage", 4
	case *pytorch.ShortStorageClass:
		return "ShortStorage", 2
	case *pytorch.CharStorageClass:
		return "CharStorage", 1
	case *pytorch.ByteStorageClass:
		return "ByteStorage", 1
	case *pytorch.BoolStorageClass:
		return "BoolStorage", 1
	}
	return "", 0
}

// ReadTorch reads a torch.save file (gzip-compressed or not) holding a dict of tensors.
func ReadTorch(file string) (map[string]*Tensor, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	var head [2]byte
	if n, _ := io.ReadFull(f, head[:]); n == 2 && head == [2]byte{0x1f, 0x8b} {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", file, err)
		}
		defer gz.Close()
		r = gz
	} else if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxTorchFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (truncated or corrupt)", file, err)
	}
	if len(data) > MaxTorchFileBytes {
		return nil, fmt.Errorf("%s: more than %d bytes (MaxTorchFileBytes)", file, int64(MaxTorchFileBytes))
	}
	return DecodeTorch(file, data)
}

// DecodeTorch reads the bytes of a torch.save zip archive holding a dict of tensors; name is used in errors.
func DecodeTorch(name string, data []byte) (tensors map[string]*Tensor, err error) {
	if !bytes.HasPrefix(data, []byte("PK\x03\x04")) {
		if bytes.HasPrefix(data, []byte{0x80}) {
			return nil, fmt.Errorf("%s: legacy torch.save format (torch < 1.6 or _use_new_zipfile_serialization=False): not supported, save it again with torch.save's default format", name)
		}
		return nil, fmt.Errorf("%s: not a torch.save file (no zip archive)", name)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w (truncated or corrupt)", name, err)
	}
	records := map[string]*zip.File{}
	var pkl *zip.File
	for _, zf := range zr.File {
		records[zf.Name] = zf
		if path.Base(zf.Name) == "data.pkl" {
			if pkl != nil {
				return nil, fmt.Errorf("%s: two data.pkl records (%s, %s)", name, pkl.Name, zf.Name)
			}
			pkl = zf
		}
	}
	if pkl == nil {
		return nil, fmt.Errorf("%s: no data.pkl in the archive: not a torch.save file", name)
	}
	if _, ok := records[path.Join(path.Dir(pkl.Name), "constants.pkl")]; ok {
		return nil, fmt.Errorf("%s: a TorchScript archive, not a torch.save dict of tensors", name)
	}
	raw, err := readRecord(pkl, maxPickleBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	prefix := path.Dir(pkl.Name)
	storages := map[string]pytorch.StorageInterface{}
	u := pickle.NewUnpickler(bytes.NewReader(raw))
	u.FindClass = func(module, class string) (any, error) {
		if mk, ok := allowedGlobals[module+"."+class]; ok {
			return mk(), nil
		}
		return nil, fmt.Errorf("global %s.%s refused: a torch.save dict of tensors needs only torch's tensor and storage rebuild functions and OrderedDict, and loading anything else could run code", module, class)
	}
	u.PersistentLoad = func(id any) (any, error) {
		return loadStorage(id, prefix, records, storages)
	}
	obj, err := loadPickle(&u)
	if err != nil {
		return nil, fmt.Errorf("%s: pickle %s: %w", name, pkl.Name, err)
	}
	out, err := tensorDict(obj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// loadPickle runs the unpickler. gopickle panics on some malformed opcode sequences (an empty stack, a wrong
// operand type); a file from elsewhere must be an error, never a crash.
func loadPickle(u *pickle.Unpickler) (obj any, err error) {
	defer func() {
		if r := recover(); r != nil {
			obj, err = nil, fmt.Errorf("malformed pickle: %v", r)
		}
	}()
	return u.Load()
}

// readRecord reads one archive record of at most limit bytes.
func readRecord(zf *zip.File, limit int64) ([]byte, error) {
	if zf.UncompressedSize64 > uint64(limit) {
		return nil, fmt.Errorf("record %s: %d bytes, more than %d", zf.Name, zf.UncompressedSize64, limit)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("record %s: %w", zf.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("record %s: %w (truncated or corrupt)", zf.Name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("record %s: more than %d bytes", zf.Name, limit)
	}
	return b, nil
}

// loadStorage resolves a persistent id ('storage', class, key, location, numel) to the archive's record
// data/<key>, whose size must be exactly numel elements.
func loadStorage(id any, prefix string, records map[string]*zip.File, loaded map[string]pytorch.StorageInterface) (any, error) {
	t, ok := id.(*types.Tuple)
	if !ok || t.Len() < 5 {
		return nil, fmt.Errorf("persistent id %v: want ('storage', class, key, location, size)", id)
	}
	kind, _ := t.Get(0).(string)
	class, okClass := t.Get(1).(pytorch.StorageClassInterface)
	key, okKey := t.Get(2).(string)
	location, okLoc := t.Get(3).(string)
	numel, okSize := t.Get(4).(int)
	if kind != "storage" || !okClass || !okKey || !okLoc || !okSize {
		return nil, fmt.Errorf("persistent id %v: want ('storage', class, key, location, size)", id)
	}
	if s, ok := loaded[key]; ok {
		return s, nil
	}
	className, size := storageElemSize(class)
	zf, ok := records[path.Join(prefix, "data", key)]
	if !ok || strings.Contains(key, "/") {
		return nil, fmt.Errorf("storage %q: no record data/%s in the archive", key, key)
	}
	if numel < 0 || uint64(numel)*uint64(size) != zf.UncompressedSize64 {
		return nil, fmt.Errorf("storage %q: %d %s elements declared, the record holds %d bytes", key, numel, className, zf.UncompressedSize64)
	}
	raw, err := readRecord(zf, int64(zf.UncompressedSize64))
	if err != nil {
		return nil, err
	}
	if len(raw) != numel*size {
		return nil, fmt.Errorf("storage %q: %d bytes, want %d (truncated)", key, len(raw), numel*size)
	}
	s := class.New(numel, location)
	if err := s.SetFromFileWithSize(bytes.NewReader(raw), numel); err != nil {
		return nil, fmt.Errorf("storage %q: %w", key, err)
	}
	loaded[key] = s
	return s, nil
}

// tensorDict checks that obj is a dict of string keys to tensors and widens each tensor.
func tensorDict(obj any) (map[string]*Tensor, error) {
	var entries [][2]any
	switch d := obj.(type) {
	case *types.Dict:
		for _, e := range *d {
			entries = append(entries, [2]any{e.Key, e.Value})
		}
	case *types.OrderedDict:
		for el := d.List.Front(); el != nil; el = el.Next() {
			e := el.Value.(*types.OrderedDictEntry)
			entries = append(entries, [2]any{e.Key, e.Value})
		}
	default:
		return nil, fmt.Errorf("the pickle holds a %T, want a dict of tensors", obj)
	}
	if len(entries) > maxTensors {
		return nil, fmt.Errorf("a dict of %d entries, more than %d", len(entries), maxTensors)
	}
	out := map[string]*Tensor{}
	for _, e := range entries {
		key, ok := e[0].(string)
		if !ok {
			return nil, fmt.Errorf("a dict key of type %T, want a string: not a dict of tensors", e[0])
		}
		t, ok := e[1].(*pytorch.Tensor)
		if !ok {
			return nil, fmt.Errorf("%q is a %T, want a tensor: not a dict of tensors", key, e[1])
		}
		w, err := widen(t)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", key, err)
		}
		out[key] = w
	}
	return out, nil
}

// widen copies a tensor's elements out of its storage, in row-major order, following its offset and strides.
func widen(t *pytorch.Tensor) (*Tensor, error) {
	if len(t.Size) > maxRank || len(t.Size) != len(t.Stride) {
		return nil, fmt.Errorf("shape %v with strides %v: want at most %d matching dimensions", t.Size, t.Stride, maxRank)
	}
	numel, last := 1, t.StorageOffset
	for i, n := range t.Size {
		if n < 0 || t.Stride[i] < 0 {
			return nil, fmt.Errorf("shape %v with strides %v: negative", t.Size, t.Stride)
		}
		if n == 0 {
			numel = 0
			break
		}
		if numel > MaxTorchFileBytes/n || (n-1) > MaxTorchFileBytes/max(t.Stride[i], 1) {
			return nil, fmt.Errorf("shape %v with strides %v: too large", t.Size, t.Stride)
		}
		numel *= n
		last += (n - 1) * t.Stride[i]
	}
	if t.StorageOffset < 0 {
		return nil, fmt.Errorf("storage offset %d", t.StorageOffset)
	}
	out := &Tensor{Shape: append([]int(nil), t.Size...)}
	var length int
	var floats func(i int) float32
	var ints func(i int) int64
	switch s := t.Source.(type) {
	case *pytorch.FloatStorage:
		out.Storage, length, floats = "FloatStorage", len(s.Data), func(i int) float32 { return s.Data[i] }
	case *pytorch.HalfStorage:
		out.Storage, length, floats = "HalfStorage", len(s.Data), func(i int) float32 { return s.Data[i] }
	case *pytorch.BFloat16Storage:
		out.Storage, length, floats = "BFloat16Storage", len(s.Data), func(i int) float32 { return s.Data[i] }
	case *pytorch.DoubleStorage:
		out.Storage, length, floats = "DoubleStorage", len(s.Data), func(i int) float32 { return float32(s.Data[i]) }
	case *pytorch.LongStorage:
		out.Storage, length, ints = "LongStorage", len(s.Data), func(i int) int64 { return s.Data[i] }
	case *pytorch.IntStorage:
		out.Storage, length, ints = "IntStorage", len(s.Data), func(i int) int64 { return int64(s.Data[i]) }
	case *pytorch.ShortStorage:
		out.Storage, length, ints = "ShortStorage", len(s.Data), func(i int) int64 { return int64(s.Data[i]) }
	case *pytorch.CharStorage:
		out.Storage, length, ints = "CharStorage", len(s.Data), func(i int) int64 { return int64(s.Data[i]) }
	case *pytorch.ByteStorage:
		out.Storage, length, ints = "ByteStorage", len(s.Data), func(i int) int64 { return int64(s.Data[i]) }
	case *pytorch.BoolStorage:
		out.Storage, length, ints = "BoolStorage", len(s.Data), func(i int) int64 {
			if s.Data[i] {
				return 1
			}
			return 0
		}
	default:
		return nil, fmt.Errorf("storage of type %T", t.Source)
	}
	if numel > 0 && last >= length {
		return nil, fmt.Errorf("shape %v, strides %v and offset %d reach element %d of a storage of %d", t.Size, t.Stride, t.StorageOffset, last, length)
	}
	// Elements of a tensor that does not overlap itself are distinct elements of its storage. An expanded
	// view (stride 0) would let a few stored bytes widen to gigabytes; no hidden state is saved that way.
	if numel > length {
		return nil, fmt.Errorf("shape %v with strides %v: %d elements over a storage of %d (an overlapping or expanded view)", t.Size, t.Stride, numel, length)
	}
	if floats != nil {
		out.Floats = make([]float32, 0, numel)
	} else {
		out.Ints = make([]int64, 0, numel)
	}
	if numel == 0 {
		return out, nil
	}
	idx := make([]int, len(t.Size))
	for {
		at := t.StorageOffset
		for d, i := range idx {
			at += i * t.Stride[d]
		}
		if floats != nil {
			out.Floats = append(out.Floats, floats(at))
		} else {
			out.Ints = append(out.Ints, ints(at))
		}
		d := len(idx) - 1
		for ; d >= 0; d-- {
			if idx[d]++; idx[d] < t.Size[d] {
				break
			}
			idx[d] = 0
		}
		if d < 0 {
			return out, nil
		}
	}
}
