// Package tensor holds specforge's n-dimensional array: a Tensor knows its element type (DType), its shape
// and where its bytes live (host memory, a memory-mapped file region; device memory later). A Tensor is a
// small value (no heap allocation to build, view or pass one), and views share their parent's storage.
package tensor

import (
	"errors"
	"fmt"
	"math"
	"strconv"
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

// MaxLen is the most elements a Tensor holds, and the largest dimension.
const MaxLen = math.MaxInt32

// errTooLong is what Vec panics with; a message built from the length would keep Vec from inlining.
var errTooLong = errors.New("tensor: a slice of more than MaxLen elements")

// Tensor is a dense row-major array. The zero Tensor is the nil tensor (IsNil): an absent optional operand.
//
// Its counts are int32 and it has four fields (the shape and the small fields grouped) so that it is four
// words: the compiler keeps a value of at most four words and four fields in registers, where a larger one
// (a [MaxRank]int shape) lives in memory and is copied through temporaries at every call, and an op takes
// several tensors on the hot path of decoding.
type Tensor struct {
	ptr   unsafe.Pointer // first element; nil for an empty or nil tensor
	n     int32          // elements
	shape dims
	meta  meta
}

// dims is a shape: dimension i of a rank-r shape for i < r, 0 beyond.
type dims struct{ d0, d1, d2, d3 int32 }

// at is dimension i (0 <= i < MaxRank).
func (s dims) at(i int) int {
	switch i {
	case 0:
		return int(s.d0)
	case 1:
		return int(s.d1)
	case 2:
		return int(s.d2)
	}
	return int(s.d3)
}

// set sets dimension i (0 <= i < MaxRank) to d (0 <= d <= MaxLen).
func (s *dims) set(i, d int) {
	switch i {
	case 0:
		s.d0 = int32(d)
	case 1:
		s.d1 = int32(d)
	case 2:
		s.d2 = int32(d)
	default:
		s.d3 = int32(d)
	}
}

type meta struct {
	rank    uint8
	code    uint8 // the dtype as 1 + its index in dtypes (0: nil tensor): a byte compare on the hot path
	storage Storage
}

// shapeOf returns ds as a shape, its rank and its element count, or why it is no shape (a negative
// dimension, more than MaxLen elements). ds never reaches fmt (not even on the error paths): that would
// move every caller's variadic slice to the heap.
func shapeOf(ds []int) (s dims, rank uint8, n int, bad string) {
	if len(ds) > MaxRank {
		panic(fmt.Sprintf("tensor: rank %d > %d", len(ds), MaxRank))
	}
	n = 1
	for i, d := range ds {
		if d < 0 {
			return dims{}, 0, 0, "negative dimension " + strconv.Itoa(d)
		}
		if d > MaxLen || n*d > MaxLen {
			return dims{}, 0, 0, "more than MaxLen elements"
		}
		s.set(i, d)
		n *= d
	}
	return s, uint8(len(ds)), n, ""
}

// mustShape is shapeOf for the constructors that panic on a bad shape.
func mustShape(ds []int) (dims, uint8, int) {
	s, r, n, bad := shapeOf(ds)
	if bad != "" {
		panic("tensor: shape with " + bad)
	}
	return s, r, n
}

// format prints a shape; it takes it by value so that callers' shapes stay on their stacks.
func format(s dims, rank int) string {
	var a [MaxRank]int
	for i := range rank {
		a[i] = s.at(i)
	}
	return fmt.Sprint(a[:rank])
}

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

// shapeTo gives t the shape ds, which must hold its elements.
func (t *Tensor) shapeTo(ds []int) {
	s, r, n := mustShape(ds)
	if n != int(t.n) {
		panic(fmt.Sprintf("tensor: shape %s holds %d elements, the slice has %d", format(s, int(r)), n, t.n))
	}
	t.shape, t.meta.rank = s, r
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
	s, r, n, bad := shapeOf(dims)
	if bad != "" {
		return Tensor{}, fmt.Errorf("tensor from bytes: shape %v with %s", dims, bad)
	}
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
	return Tensor{ptr: p, n: int32(n), shape: s, meta: meta{rank: r, code: codeOf(d), storage: storage}}, nil
}

// IsNil reports whether t is the zero Tensor (an absent operand).
func (t Tensor) IsNil() bool { return t.meta.code == 0 }

// DType is the element type.
func (t Tensor) DType() DType {
	if t.meta.code == 0 {
		return ""
	}
	return dtypes[t.meta.code-1].d
}

// Storage says where the bytes live.
func (t Tensor) Storage() Storage { return t.meta.storage }

// Rank is the number of dimensions.
func (t Tensor) Rank() int { return int(t.meta.rank) }

// Dim is the size of dimension i.
func (t Tensor) Dim(i int) int {
	if i < 0 || i >= int(t.meta.rank) {
		panic(fmt.Sprintf("tensor: dimension %d of a rank-%d tensor", i, t.meta.rank))
	}
	return t.shape.at(i)
}

// Shape returns the dimensions as a new slice (for messages and checks off the hot path).
func (t Tensor) Shape() []int {
	s := make([]int, t.meta.rank)
	for i := range s {
		s[i] = t.shape.at(i)
	}
	return s
}

// Len is the number of elements.
func (t Tensor) Len() int { return int(t.n) }

// Bytes is the size of the data in bytes.
func (t Tensor) Bytes() int { return int(t.n) * t.DType().Size() }

// F32 returns the data of an F32 tensor without copying (nil for the nil tensor). It panics for any other
// dtype: an op that reads floats from a BF16 tensor must convert on purpose.
func (t Tensor) F32() []float32 {
	if t.meta.code != codeF32 {
		return t.notF32() // kept out of line so that F32 inlines
	}
	return unsafe.Slice((*float32)(t.ptr), int(t.n))
}

func (t Tensor) notF32() []float32 {
	if t.meta.code == 0 {
		return nil
	}
	panic(fmt.Sprintf("tensor: F32 data of a %s tensor", t.DType()))
}

// Bits16 returns the bit patterns of a BF16 or F16 tensor without copying (nil for the nil tensor), for the
// kernels that widen them. It panics for any other dtype.
func (t Tensor) Bits16() []uint16 {
	if d := t.DType(); d != BF16 && d != F16 {
		if t.meta.code == 0 {
			return nil
		}
		panic(fmt.Sprintf("tensor: 16-bit float data of a %s tensor", d))
	}
	return unsafe.Slice((*uint16)(t.ptr), int(t.n))
}

// Raw returns the data as bytes without copying.
func (t Tensor) Raw() []byte {
	return unsafe.Slice((*byte)(t.ptr), int(t.n)*t.DType().Size())
}

// rowLen is the number of elements of one index along the first dimension.
func (t Tensor) rowLen() int {
	r := 1
	for i := 1; i < int(t.meta.rank); i++ {
		r *= t.shape.at(i)
	}
	return r
}

// Rows is the view of rows [lo, hi) along the first dimension, sharing t's storage.
func (t Tensor) Rows(lo, hi int) Tensor {
	if t.meta.rank == 0 || lo < 0 || hi < lo || hi > int(t.shape.d0) {
		panic(fmt.Sprintf("tensor: rows [%d, %d) of shape %v", lo, hi, t.Shape()))
	}
	w := t.rowLen()
	v := t
	v.shape.d0 = int32(hi - lo)
	v.n = int32((hi - lo) * w)
	if v.n == 0 {
		v.ptr = nil
	} else {
		v.ptr = unsafe.Add(t.ptr, lo*w*t.DType().Size())
	}
	return v
}

// Reshape is the view of t with another shape of the same number of elements.
func (t Tensor) Reshape(dims ...int) Tensor {
	s, r, n := mustShape(dims)
	if n != int(t.n) {
		panic(fmt.Sprintf("tensor: reshape %v (%d elements) to %s", t.Shape(), t.n, format(s, int(r))))
	}
	v := t
	v.shape, v.meta.rank = s, r
	return v
}

func (t Tensor) String() string {
	return fmt.Sprintf("%s%v (%s)", t.DType(), t.Shape(), t.meta.storage)
}

// Resize returns buf with length n, reallocated only when its capacity is short (the contents are not
// cleared): workspaces reused across calls of different sizes. A new buffer of hugePageMin bytes or more
// asks for transparent huge pages (see adviseHugePages).
func Resize[T any](buf []T, n int) []T {
	if cap(buf) >= n {
		return buf[:n]
	}
	buf = make([]T, n)
	if size := uintptr(n) * unsafe.Sizeof(buf[0]); size >= hugePageMin {
		adviseHugePages(unsafe.Pointer(unsafe.SliceData(buf)), size)
	}
	return buf
}

// hugePageMin is the buffer size from which Resize asks for huge pages: the logits, gradients and
// activations of real-size models, which the products sweep faster than the TLB can map 4 KiB pages.
const hugePageMin = 16 << 20

// Vec wraps x as a one-dimensional F32 host tensor without copying: FromF32 without a shape, small enough
// to inline where a forward wraps its buffers on every call. It panics when x has more than MaxLen elements.
func Vec(x []float32) Tensor {
	if len(x) > MaxLen {
		panic(errTooLong)
	}
	return Tensor{ptr: unsafe.Pointer(unsafe.SliceData(x)), n: int32(len(x)), shape: dims{d0: int32(len(x))}, meta: meta{rank: 1, code: codeF32}}
}
