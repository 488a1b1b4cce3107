// Package tensor holds specforge's n-dimensional array: a Tensor knows its element type (DType), its shape
// and where its bytes live (host memory, a memory-mapped file region; device memory later). A Tensor is a
// small value (no heap allocation to build, view or pass one), and views share their parent's storage.
package tensor

import (
	"fmt"
	"unsafe"
)

// MaxRank is the largest number of dimensions a Tensor has. The shape is a fixed array so that building or
// slicing a tensor never allocates.
const MaxRank = 4

// Storage says where a tensor's bytes live.
type Storage uint8

const (
	// Host is ordinary Go memory.
	Host Storage = iota
	// Mapped is a read-only memory-mapped file region: it must not be written, and stays valid while the
	// file is open.
	Mapped
)

func (s Storage) String() string {
	switch s {
	case Host:
		return "host"
	case Mapped:
		return "mapped"
	}
	return fmt.Sprintf("Storage(%d)", uint8(s))
}

// Tensor is a dense row-major array. The zero Tensor is the nil tensor (IsNil): an absent optional operand.
type Tensor struct {
	ptr     unsafe.Pointer // first element; nil for an empty or nil tensor
	n       int            // elements
	shape   [MaxRank]int
	rank    uint8
	code    uint8 // the dtype as 1 + its index in dtypes (0: nil tensor): a byte compare on the hot path
	storage Storage
}

// shapeOf checks dims and returns them as a shape array, its rank and its element count. dims never reaches
// fmt (not even on the panic paths): that would move every caller's variadic slice to the heap.
func shapeOf(dims []int) ([MaxRank]int, uint8, int) {
	var s [MaxRank]int
	if len(dims) > MaxRank {
		panic(fmt.Sprintf("tensor: rank %d > %d", len(dims), MaxRank))
	}
	n := 1
	for i, d := range dims {
		s[i] = d
		if d < 0 {
			panic("tensor: negative dimension in shape " + format(s, len(dims)))
		}
		n *= d
	}
	return s, uint8(len(dims)), n
}

// format prints a shape array; it takes the array by value so that callers' shapes stay on their stacks.
func format(s [MaxRank]int, rank int) string { return fmt.Sprint(s[:rank]) }

// FromF32 wraps x as an F32 host tensor of the given shape (Vec(x) when no shape is given), without copying.
// It panics when the shape does not hold len(x) elements. It does not inline: hot paths wrap their buffers
// with Vec.
func FromF32(x []float32, dims ...int) Tensor {
	t := Vec(x)
	if len(dims) > 0 {
		t.shapeTo(dims)
	}
	return t
}

// shapeTo gives t the shape dims, which must hold its elements.
func (t *Tensor) shapeTo(dims []int) {
	s, r, n := shapeOf(dims)
	if n != t.n {
		panic(fmt.Sprintf("tensor: shape %s holds %d elements, the slice has %d", format(s, int(r)), n, t.n))
	}
	t.shape, t.rank = s, r
}

// FromBytes wraps raw little-endian bytes of dtype d as a tensor of the given shape, without copying. F32
// data must be 4-byte aligned (the float32 accessors alias it). storage says whose bytes they are.
func FromBytes(d DType, storage Storage, data []byte, dims ...int) (Tensor, error) {
	if !d.Valid() {
		return Tensor{}, fmt.Errorf("tensor from bytes: invalid dtype %q", d)
	}
	if len(dims) > MaxRank {
		return Tensor{}, fmt.Errorf("tensor from bytes: rank %d > %d", len(dims), MaxRank)
	}
	for _, d := range dims {
		if d < 0 {
			return Tensor{}, fmt.Errorf("tensor from bytes: negative dimension in shape %v", dims)
		}
	}
	s, r, n := shapeOf(dims)
	if n*d.Size() != len(data) {
		return Tensor{}, fmt.Errorf("tensor from bytes: shape %s of %s needs %d bytes, have %d", format(s, int(r)), d, n*d.Size(), len(data))
	}
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
		if uintptr(p)%uintptr(d.Size()) != 0 {
			return Tensor{}, fmt.Errorf("tensor from bytes: %s data at %p is not %d-byte aligned", d, p, d.Size())
		}
	}
	return Tensor{ptr: p, n: n, shape: s, rank: r, code: codeOf(d), storage: storage}, nil
}

// IsNil reports whether t is the zero Tensor (an absent operand).
func (t Tensor) IsNil() bool { return t.code == 0 }

// DType is the element type.
func (t Tensor) DType() DType {
	if t.code == 0 {
		return ""
	}
	return dtypes[t.code-1].d
}

// Storage says where the bytes live.
func (t Tensor) Storage() Storage { return t.storage }

// Rank is the number of dimensions.
func (t Tensor) Rank() int { return int(t.rank) }

// Dim is the size of dimension i.
func (t Tensor) Dim(i int) int {
	if i < 0 || i >= int(t.rank) {
		panic(fmt.Sprintf("tensor: dimension %d of a rank-%d tensor", i, t.rank))
	}
	return t.shape[i]
}

// Shape returns the dimensions as a new slice (for messages and checks off the hot path).
func (t Tensor) Shape() []int { return append([]int(nil), t.shape[:t.rank]...) }

// Len is the number of elements.
func (t Tensor) Len() int { return t.n }

// Bytes is the size of the data in bytes.
func (t Tensor) Bytes() int { return t.n * t.DType().Size() }

// F32 returns the data of an F32 tensor without copying (nil for the nil tensor). It panics for any other
// dtype: an op that reads floats from a BF16 tensor must convert on purpose.
func (t Tensor) F32() []float32 {
	if t.code != codeF32 {
		return t.notF32() // kept out of line so that F32 inlines
	}
	return unsafe.Slice((*float32)(t.ptr), t.n)
}

func (t Tensor) notF32() []float32 {
	if t.code == 0 {
		return nil
	}
	panic(fmt.Sprintf("tensor: F32 data of a %s tensor", t.DType()))
}

// Raw returns the data as bytes without copying.
func (t Tensor) Raw() []byte {
	return unsafe.Slice((*byte)(t.ptr), t.n*t.DType().Size())
}

// rowLen is the number of elements of one index along the first dimension.
func (t Tensor) rowLen() int {
	r := 1
	for _, d := range t.shape[1:t.rank] {
		r *= d
	}
	return r
}

// Rows is the view of rows [lo, hi) along the first dimension, sharing t's storage.
func (t Tensor) Rows(lo, hi int) Tensor {
	if t.rank == 0 || lo < 0 || hi < lo || hi > t.shape[0] {
		panic(fmt.Sprintf("tensor: rows [%d, %d) of shape %v", lo, hi, t.Shape()))
	}
	w := t.rowLen()
	v := t
	v.shape[0] = hi - lo
	v.n = (hi - lo) * w
	if v.n == 0 {
		v.ptr = nil
	} else {
		v.ptr = unsafe.Add(t.ptr, lo*w*t.DType().Size())
	}
	return v
}

// Reshape is the view of t with another shape of the same number of elements.
func (t Tensor) Reshape(dims ...int) Tensor {
	s, r, n := shapeOf(dims)
	if n != t.n {
		panic(fmt.Sprintf("tensor: reshape %v (%d elements) to %s", t.Shape(), t.n, format(s, int(r))))
	}
	v := t
	v.shape, v.rank = s, r
	return v
}

func (t Tensor) String() string {
	return fmt.Sprintf("%s%v (%s)", t.DType(), t.Shape(), t.storage)
}

// Resize returns buf with length n, reallocated only when its capacity is short (the contents are not
// cleared): workspaces reused across calls of different sizes.
func Resize[T any](buf []T, n int) []T {
	if cap(buf) < n {
		return make([]T, n)
	}
	return buf[:n]
}

// Vec wraps x as a one-dimensional F32 host tensor without copying: FromF32 without a shape, small enough
// to inline where a forward wraps its buffers on every call.
func Vec(x []float32) Tensor {
	return Tensor{ptr: unsafe.Pointer(unsafe.SliceData(x)), n: len(x), shape: [MaxRank]int{len(x)}, rank: 1, code: codeF32}
}
