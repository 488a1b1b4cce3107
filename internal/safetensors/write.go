package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/half"
)

// FromFloat32 builds an in-memory tensor of the given float dtype (F32, F64, BF16 or F16) from float32
// values; BF16 and F16 round to nearest even.
func FromFloat32(name string, dtype DType, shape []int, values []float32) Tensor {
	if NumElements(shape) != len(values) {
		panic(fmt.Sprintf("safetensors.FromFloat32(%q): %d values for shape %v", name, len(values), shape))
	}
	data := make([]byte, len(values)*dtype.Size())
	switch dtype {
	case F32:
		for i, v := range values {
			binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(v))
		}
	case F64:
		for i, v := range values {
			binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(float64(v)))
		}
	case BF16, F16:
		bits := make([]uint16, len(values))
		if dtype == BF16 {
			half.F32ToBF16(bits, values)
		} else {
			half.F32ToF16(bits, values)
		}
		for i, b := range bits {
			binary.LittleEndian.PutUint16(data[2*i:], b)
		}
	default:
		panic(fmt.Sprintf("safetensors.FromFloat32(%q): %s is not a float dtype", name, dtype))
	}
	return Tensor{Name: name, DType: dtype, Shape: append([]int(nil), shape...), Data: data}
}

// FromInt64 builds an in-memory integer tensor (I64, I32, I16, I8 or U8) from int64 values.
func FromInt64(name string, dtype DType, shape []int, values []int64) Tensor {
	if NumElements(shape) != len(values) {
		panic(fmt.Sprintf("safetensors.FromInt64(%q): %d values for shape %v", name, len(values), shape))
	}
	data := make([]byte, len(values)*dtype.Size())
	for i, v := range values {
		switch dtype {
		case I64:
			binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
		case I32:
			binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
		case I16:
			binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
		case I8, U8:
			data[i] = byte(v)
		default:
			panic(fmt.Sprintf("safetensors.FromInt64(%q): %s is not an integer dtype", name, dtype))
		}
	}
	return Tensor{Name: name, DType: dtype, Shape: append([]int(nil), shape...), Data: data}
}

// FromBool builds an in-memory BOOL tensor.
func FromBool(name string, shape []int, values []bool) Tensor {
	if NumElements(shape) != len(values) {
		panic(fmt.Sprintf("safetensors.FromBool(%q): %d values for shape %v", name, len(values), shape))
	}
	data := make([]byte, len(values))
	for i, v := range values {
		if v {
			data[i] = 1
		}
	}
	return Tensor{Name: name, DType: BOOL, Shape: append([]int(nil), shape...), Data: data}
}

// Write stores tensors in path atomically (a reader never sees a partial file). Tensors are laid out like the
// reference implementation does: larger element types first, then by name, so every tensor is aligned to its
// element size.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	return atomicfile.Write(path, func(w io.Writer) error { return Encode(w, tensors, metadata) })
}

// Encode writes tensors in safetensors format to w.
func Encode(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	sources := make([]Source, len(tensors))
	for i, t := range tensors {
		if t.DType.Size() == 0 {
			return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		if want := t.NumElements() * t.DType.Size(); len(t.Data) != want {
			return fmt.Errorf("tensor %q: %d bytes for shape %v of %s, want %d", t.Name, len(t.Data), t.Shape, t.DType, want)
		}
		data := t.Data
		sources[i] = Source{Name: t.Name, DType: t.DType, Shape: t.Shape, Fill: func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		}}
	}
	return EncodeStream(w, sources, metadata)
}

// Source is a tensor whose bytes are produced while the file is written, so that a file larger than memory
// can be written: Fill must write exactly NumElements(Shape) * DType.Size() bytes, little-endian.
type Source struct {
	Name  string
	DType DType
	Shape []int
	Fill  func(w io.Writer) error
}

// Bytes is the size of the tensor's data.
func (s *Source) Bytes() int64 { return int64(NumElements(s.Shape)) * int64(s.DType.Size()) }

// WriteStream stores tensors whose bytes are generated as they are written in path, atomically (temporary
// file, fsync, rename), laid out as Write lays them out. Only the header and the writer's buffer are held in
// memory.
func WriteStream(path string, tensors []Source, metadata map[string]string) error {
	return atomicfile.Write(path, func(w io.Writer) error { return EncodeStream(w, tensors, metadata) })
}

// EncodeStream writes the header of tensors to w, then each tensor's bytes as its Fill produces them.
func EncodeStream(w io.Writer, tensors []Source, metadata map[string]string) error {
	order := make([]Source, len(tensors))
	copy(order, tensors)
	sort.SliceStable(order, func(i, j int) bool {
		if a, b := order[i].DType.Size(), order[j].DType.Size(); a != b {
			return a > b
		}
		return order[i].Name < order[j].Name
	})
	header := map[string]any{}
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var offset int64
	for i, t := range order {
		if t.DType.Size() == 0 {
			return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		}
		if i > 0 && t.Name == order[i-1].Name {
			return fmt.Errorf("tensor %q appears twice", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[t.Name] = headerEntry{DType: t.DType.String(), Shape: shape, DataOffsets: [2]int64{offset, offset + t.Bytes()}}
		offset += t.Bytes()
	}
	js, err := json.Marshal(header)
	if err != nil {
		return err
	}
	// Pad the header with spaces so the data section starts 8-byte aligned, as the reference writer does.
	if pad := (8 - len(js)%8) % 8; pad > 0 {
		js = append(js, bytes.Repeat([]byte{' '}, pad)...)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(js)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range order {
		cw := &countingWriter{w: w}
		if err := t.Fill(cw); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if cw.n != t.Bytes() {
			// The header already promised t.Bytes(): a short or long tensor would shift every later one.
			return fmt.Errorf("tensor %q: wrote %d bytes for shape %v of %s, want %d", t.Name, cw.n, t.Shape, t.DType, t.Bytes())
		}
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
