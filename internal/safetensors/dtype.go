package safetensors

import "strings"

// DType is a safetensors element type, spelt as in the file header.
type DType string

// The element types specforge reads and writes.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

var dtypeSizes = map[DType]int{F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1}

// Size is the number of bytes of one element, or 0 for an unknown type.
func (d DType) Size() int { return dtypeSizes[d] }

// IsFloat reports whether d holds floating-point values.
func (d DType) IsFloat() bool { return d == F64 || d == F32 || d == F16 || d == BF16 }

func supportedDTypes() string {
	return strings.Join([]string{"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}, ", ")
}
