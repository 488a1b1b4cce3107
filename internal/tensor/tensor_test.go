package tensor

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

func TestDTypeNames(t *testing.T) {
	for _, c := range []struct {
		name string
		d    DType
		size int
	}{{"F32", F32, 4}, {"BF16", BF16, 2}, {"F16", F16, 2}, {"I64", I64, 8}, {"I32", I32, 4}, {"BOOL", Bool, 1}, {"F64", F64, 8}, {"U8", U8, 1}} {
		d, err := ParseDType(c.name)
		if err != nil || d != c.d || d.String() != c.name || d.Size() != c.size {
			t.Errorf("ParseDType(%q) = %v (%q, %d bytes), %v; want %v, %d bytes", c.name, d, d.String(), d.Size(), err, c.d, c.size)
		}
	}
	if _, err := ParseDType("F8_E4M3"); err == nil || !strings.Contains(err.Error(), `unknown dtype "F8_E4M3"`) {
		t.Errorf("ParseDType(F8_E4M3) error = %v", err)
	}
	if DType("").Size() != 0 || DType("").Valid() {
		t.Error("the zero DType must be invalid and sizeless")
	}
	var got struct{ D DType }
	b, err := json.Marshal(struct{ D DType }{BF16})
	if err != nil || string(b) != `{"D":"BF16"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	if err := json.Unmarshal(b, &got); err != nil || got.D != BF16 {
		t.Fatalf("json round trip = %v, %v", got.D, err)
	}
}

func TestShortNames(t *testing.T) {
	for _, c := range []struct {
		in, short string // short: the canonical spelling of the result
		want      DType
	}{
		{"bf16", "bf16", BF16}, {"f16", "f16", F16}, {"f32", "f32", F32},
		{"BF16", "bf16", BF16}, {"bfloat16", "bf16", BF16}, {"FP16", "f16", F16}, {"float16", "f16", F16}, {"fp32", "f32", F32}, {"float32", "f32", F32},
	} {
		d, err := ParseShortName(c.in)
		if err != nil || d != c.want || d.ShortName() != c.short {
			t.Errorf("ParseShortName(%q) = %v (%q), %v; want %v (%q)", c.in, d, d.ShortName(), err, c.want, c.short)
		}
	}
	for _, in := range []string{"fp8", "i64", "BOOL", ""} {
		if _, err := ParseShortName(in); err == nil || err.Error() != fmt.Sprintf("dtype %q: want bf16, f16 or f32", in) {
			t.Errorf("ParseShortName(%q) error = %v", in, err)
		}
	}
	for _, d := range []DType{I64, Bool, F64, ""} {
		if d.ShortName() != "" {
			t.Errorf("%v.ShortName() = %q, want none", d, d.ShortName())
		}
	}
}

func TestViewsShareStorage(t *testing.T) {
	x := make([]float32, 24)
	for i := range x {
		x[i] = float32(i)
	}
	a := FromF32(x, 4, 3, 2)
	if a.Rank() != 3 || a.Dim(1) != 3 || a.Len() != 24 || a.Bytes() != 96 || a.DType() != F32 {
		t.Fatalf("tensor %v", a)
	}
	r := a.Rows(1, 3)
	if r.Dim(0) != 2 || r.Len() != 12 || r.F32()[0] != 6 {
		t.Fatalf("rows view %v starts at %v", r, r.F32()[0])
	}
	r.F32()[0] = -1
	if x[6] != -1 {
		t.Error("a row view must alias its parent")
	}
	m := a.Reshape(8, 3).Rows(7, 8)
	if &m.F32()[0] != &x[21] {
		t.Error("reshape then rows must alias element 21")
	}
	if e := a.Rows(2, 2); e.Len() != 0 || len(e.F32()) != 0 {
		t.Errorf("empty view %v", e)
	}
	if !(Tensor{}).IsNil() || (Tensor{}).F32() != nil {
		t.Error("the zero tensor is nil and has no data")
	}
	if v := Vec(x); v.Rank() != 1 || v.Dim(0) != 24 || &v.F32()[0] != &x[0] || v.DType() != F32 {
		t.Errorf("Vec = %v", v)
	}
	if got := testing.AllocsPerRun(100, func() { _ = a.Rows(1, 2).Reshape(6).F32(); _ = Vec(x).F32() }); got != 0 {
		t.Errorf("views allocate %v times", got)
	}
}

func TestFromBytes(t *testing.T) {
	buf := make([]float32, 3)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 12)
	x, err := FromBytes(F32, Mapped, raw, 3)
	if err != nil || &x.F32()[0] != &buf[0] || x.Storage() != Mapped {
		t.Fatalf("FromBytes = %v, %v", x, err)
	}
	if _, err := FromBytes(F32, Host, raw[1:5], 1); err == nil {
		t.Error("misaligned F32 data must be refused")
	}
	if _, err := FromBytes(BF16, Host, raw, 5); err == nil {
		t.Error("a shape that does not match the bytes must be refused")
	}
	if _, err := FromBytes(U8, Host, raw, 1<<16, 1<<16); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a shape of more than MaxLen elements: error %v", err)
	}
	h, err := FromBytes(BF16, Host, raw, 6)
	if err != nil || len(h.Raw()) != 12 {
		t.Fatalf("bf16 = %v, %v", h, err)
	}
	if b := h.Rows(2, 4).Bits16(); len(b) != 2 || unsafe.Pointer(&b[0]) != unsafe.Pointer(&raw[4]) {
		t.Errorf("Bits16 of rows [2, 4) = %d values at %p, want 2 at %p", len(b), &b[0], &raw[4])
	}
	defer func() {
		if recover() == nil {
			t.Error("F32() of a BF16 tensor must panic")
		}
	}()
	h.F32()
}
