package safetensors

import "github.com/specforge/specforge/internal/tensor"

// DType is a safetensors element type: the one dtype type of specforge, tensor.DType, whose names are the
// ones the file header uses.
type DType = tensor.DType

// The element types specforge reads and writes, under the names this package always gave them.
const (
	F64  = tensor.F64
	F32  = tensor.F32
	F16  = tensor.F16
	BF16 = tensor.BF16
	I64  = tensor.I64
	I32  = tensor.I32
	I16  = tensor.I16
	I8   = tensor.I8
	U8   = tensor.U8
	BOOL = tensor.Bool
)
