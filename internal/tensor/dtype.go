package tensor

import (
	"fmt"
	"slices"
	"strings"
)

// DType is an element type, spelt as in the safetensors header ("F32", "BF16", ...): a dtype read from a
// file, printed in an error or written to a header is spelt one way. It is a string kind so that packages
// which still name dtypes by string literal ("" for none) keep compiling; ParseDType is the checked way in.
type DType string

// The element types. The zero value "" is no type: a Tensor that was never built.
const (
	F32  DType = "F32"
	BF16 DType = "BF16"
	F16  DType = "F16"
	F64  DType = "F64"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	Bool DType = "BOOL"
)

// dtypes lists every type with its element size, in the order Names prints them.
var dtypes = [...]struct {
	d    DType
	size int
}{{F32, 4}, {BF16, 2}, {F16, 2}, {F64, 8}, {I64, 8}, {I32, 4}, {I16, 2}, {I8, 1}, {U8, 1}, {Bool, 1}}

// codeF32 is F32's code in a Tensor (its index in dtypes plus one).
const codeF32 = 1

// codeOf is d's code in a Tensor (0 for an unknown type).
func codeOf(d DType) uint8 {
	for i, t := range dtypes {
		if t.d == d {
			return uint8(i + 1)
		}
	}
	return 0
}

// Size is the number of bytes of one element, or 0 for an unknown type.
func (d DType) Size() int {
	switch d { // the common types first, without a table walk
	case F32, I32:
		return 4
	case BF16, F16:
		return 2
	}
	for _, t := range dtypes {
		if t.d == d {
			return t.size
		}
	}
	return 0
}

// Valid reports whether d is one of the element types above.
func (d DType) Valid() bool { return d.Size() > 0 }

// String is the safetensors name of d.
func (d DType) String() string { return string(d) }

// IsFloat reports whether d holds floating-point values.
func (d DType) IsFloat() bool { return d == F32 || d == BF16 || d == F16 || d == F64 }

// ParseDType reads a safetensors dtype name.
func ParseDType(name string) (DType, error) {
	if d := DType(name); d.Valid() {
		return d, nil
	}
	return "", fmt.Errorf("unknown dtype %q (supported: %s)", name, Names())
}

// Names lists the dtype names, comma-separated, for error messages.
func Names() string {
	names := make([]string, len(dtypes))
	for i, t := range dtypes {
		names[i] = string(t.d)
	}
	return strings.Join(names, ", ")
}

// The command line (--dtype) and the hidden-state manifests spell the three floating-point storage types in
// lowercase: shortNames is that spelling, ShortName and ParseShortName its one way out and in.
var shortNames = [...]struct {
	d       DType
	name    string
	aliases []string
}{{BF16, "bf16", []string{"bfloat16"}}, {F16, "f16", []string{"fp16", "float16"}}, {F32, "f32", []string{"fp32", "float32"}}}

// ShortName is d in lowercase ("bf16", "f16", "f32"), or "" when d is not one of those three.
func (d DType) ShortName() string {
	for _, s := range shortNames {
		if s.d == d {
			return s.name
		}
	}
	return ""
}

// ParseShortName reads a floating-point storage type spelt as ShortName spells it, in any case, or by one of
// the torch-style aliases (bfloat16, fp16, float16, fp32, float32).
func ParseShortName(name string) (DType, error) {
	lower := strings.ToLower(name)
	for _, s := range shortNames {
		if lower == s.name || slices.Contains(s.aliases, lower) {
			return s.d, nil
		}
	}
	return "", fmt.Errorf("dtype %q: want bf16, f16 or f32", name)
}
