// Package safetensors reads and writes the safetensors format of Hugging Face checkpoints: an 8-byte
// little-endian header length, a JSON header naming every tensor's dtype, shape and byte range, then the raw
// little-endian data. Files are memory-mapped, so opening a checkpoint costs no copy; sharded checkpoints
// (model.safetensors.index.json) are opened as one set.
package safetensors

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"sort"
	"unsafe"

	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/tensor"
)

// maxHeaderBytes bounds the JSON header, as the reference implementation does (100 MB).
const maxHeaderBytes = 100 << 20

// Tensor is one named array. Data holds the raw little-endian bytes; for a tensor read from a File it points
// into the read-only mapping and stays valid until the File is closed.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
	// Source names the file the tensor came from, for error messages ("" for tensors built in memory).
	Source string
}

// NumElements is the product of the shape (1 for a scalar).
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// NumElements is the number of elements of t.
func (t *Tensor) NumElements() int { return NumElements(t.Shape) }

func (t *Tensor) where() string {
	if t.Source == "" {
		return fmt.Sprintf("tensor %q", t.Name)
	}
	return fmt.Sprintf("%s: tensor %q", t.Source, t.Name)
}

// CheckShape returns an error naming the file and tensor unless t has exactly the given shape.
func (t *Tensor) CheckShape(want ...int) error {
	if len(want) == len(t.Shape) {
		same := true
		for i := range want {
			same = same && want[i] == t.Shape[i]
		}
		if same {
			return nil
		}
	}
	return fmt.Errorf("%s: shape %v, want %v", t.where(), t.Shape, want)
}

// View is t's data as a tensor.Tensor of its dtype and shape, without copying: Mapped storage for a tensor
// read from a File (valid until the File is closed, not to be written), Host for one built in memory. It
// fails for data the Tensor cannot alias (misaligned for its dtype, or of rank above tensor.MaxRank).
func (t *Tensor) View() (tensor.Tensor, error) {
	storage := tensor.Host
	if t.Source != "" {
		storage = tensor.Mapped
	}
	v, err := tensor.FromBytes(t.DType, storage, t.Data, t.Shape...)
	if err != nil {
		return tensor.Tensor{}, fmt.Errorf("%s: %w", t.where(), err)
	}
	return v, nil
}

// Float32 returns a new slice with the values converted to float32. Integer and bool tensors are refused:
// reading token ids as weights is a bug, not a conversion.
func (t *Tensor) Float32() ([]float32, error) {
	n := t.NumElements()
	out := make([]float32, n)
	switch t.DType {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.Data[4*i:]))
		}
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	case BF16:
		half.BF16ToF32(out, t.uint16s())
	case F16:
		half.F16ToF32(out, t.uint16s())
	default:
		return nil, fmt.Errorf("%s: dtype %s, want a float type (F32, F64, BF16, F16)", t.where(), t.DType)
	}
	return out, nil
}

// Float64 returns the values of a float tensor as float64 (exact for every float type).
func (t *Tensor) Float64() ([]float64, error) {
	if t.DType == F64 {
		out := make([]float64, t.NumElements())
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:]))
		}
		return out, nil
	}
	f, err := t.Float32()
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out, nil
}

// Int64 returns the values of an integer or bool tensor as int64.
func (t *Tensor) Int64() ([]int64, error) {
	n := t.NumElements()
	out := make([]int64, n)
	d := t.Data
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(d[i]))
		}
	case U8, BOOL:
		for i := range out {
			out[i] = int64(d[i])
		}
	default:
		return nil, fmt.Errorf("%s: dtype %s, want an integer or BOOL type", t.where(), t.DType)
	}
	return out, nil
}

// Bool returns the values of a BOOL or integer tensor as bool (non-zero is true).
func (t *Tensor) Bool() ([]bool, error) {
	v, err := t.Int64()
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(v))
	for i, x := range v {
		out[i] = x != 0
	}
	return out, nil
}

func (t *Tensor) uint16s() []uint16 {
	n := t.NumElements()
	if n > 0 && uintptr(unsafe.Pointer(&t.Data[0]))%2 == 0 && littleEndian {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&t.Data[0])), n)
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
	}
	return out
}

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// File is an open safetensors file.
type File struct {
	Path     string
	Metadata map[string]string
	tensors  map[string]*Tensor
	names    []string // in data order
	unmap    func() error
}

// headerEntry is one tensor's header entry as written. Its dtype is decoded as a string and parsed after, so
// that an unknown dtype is reported with the tensor's name.
type headerEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Open memory-maps path and validates its header: every tensor must have a known dtype, a shape whose size
// matches its byte range, and a byte range inside the file that overlaps no other.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open safetensors: %w", err)
	}
	data, unmap, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	file, err := parse(path, data)
	if err != nil {
		unmap()
		return nil, err
	}
	file.unmap = unmap
	return file, nil
}

func parse(path string, data []byte) (*File, error) {
	size := int64(len(data))
	if size < 8 {
		return nil, fmt.Errorf("%s: not a safetensors file: %d bytes, need at least the 8-byte header length", path, size)
	}
	hlen := binary.LittleEndian.Uint64(data)
	if hlen > maxHeaderBytes {
		return nil, fmt.Errorf("%s: corrupt header: header length %d exceeds the limit of %d bytes", path, hlen, maxHeaderBytes)
	}
	if int64(hlen) > size-8 {
		return nil, fmt.Errorf("%s: corrupt or truncated header: header length %d, but the file has %d bytes after it", path, hlen, size-8)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+hlen], &raw); err != nil {
		return nil, fmt.Errorf("%s: corrupt header: %v", path, err)
	}
	body := data[8+hlen:]
	file := &File{Path: path, tensors: make(map[string]*Tensor, len(raw))}
	type span struct {
		name     string
		from, to int64
	}
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &file.Metadata); err != nil {
				return nil, fmt.Errorf("%s: __metadata__ must map strings to strings: %v", path, err)
			}
			continue
		}
		var e headerEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %v", path, name, err)
		}
		dtype, err := tensor.ParseDType(e.DType)
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, name, err)
		}
		nbytes, err := byteSize(e.Shape, dtype.Size())
		if err != nil {
			return nil, fmt.Errorf("%s: tensor %q: %w", path, name, err)
		}
		from, to := e.DataOffsets[0], e.DataOffsets[1]
		if from < 0 || to < from || to > int64(len(body)) {
			return nil, fmt.Errorf("%s: tensor %q: data offsets [%d, %d] out of range (data section has %d bytes; file truncated?)", path, name, from, to, len(body))
		}
		if to-from != nbytes {
			return nil, fmt.Errorf("%s: tensor %q: %d bytes for shape %v of %s, want %d", path, name, to-from, e.Shape, dtype, nbytes)
		}
		shape := e.Shape
		if shape == nil {
			shape = []int{}
		}
		file.tensors[name] = &Tensor{Name: name, DType: dtype, Shape: shape, Data: body[from:to:to], Source: path}
		spans = append(spans, span{name, from, to})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].from != spans[j].from {
			return spans[i].from < spans[j].from
		}
		return spans[i].name < spans[j].name
	})
	for i, s := range spans {
		if i > 0 && s.from < spans[i-1].to && s.to > s.from {
			return nil, fmt.Errorf("%s: tensors %q and %q overlap in the data section", path, spans[i-1].name, s.name)
		}
		file.names = append(file.names, s.name)
	}
	return file, nil
}

// byteSize is the size in bytes of a tensor of the given shape and element size. Every dimension must be
// non-negative and the product of the non-zero ones, in bytes, must fit in an int64: a header is read from a
// stranger's file, and a product that wraps around (shape [2^62, 64] is 0 elements modulo 2^64) would
// otherwise pass for a tensor of the size its byte range has.
func byteSize(shape []int, elemSize int) (int64, error) {
	total, zero := uint64(elemSize), false
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if d == 0 {
			zero = true
			continue
		}
		hi, lo := bits.Mul64(total, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("shape %v: the size overflows int64 bytes", shape)
		}
		total = lo
	}
	if zero {
		return 0, nil
	}
	return int64(total), nil
}

// Names lists the tensors in the order of their data.
func (f *File) Names() []string { return append([]string(nil), f.names...) }

// Tensor returns the named tensor or an error naming the file.
func (f *File) Tensor(name string) (*Tensor, error) {
	t, ok := f.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", f.Path, name, ErrNotFound)
	}
	return t, nil
}

// Close unmaps the file; tensors read from it must not be used afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap = nil
	return err
}

// ErrNotFound is wrapped by the errors for missing tensors.
var ErrNotFound = errors.New("not found")
