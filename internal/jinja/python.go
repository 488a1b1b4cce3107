package jinja

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// pyStr approximates Python str() for scalars (None -> "None", True -> "True").
func pyStr(v *exec.Value) string {
	switch {
	case isNone(v):
		return "None"
	case v.IsBool():
		if v.Bool() {
			return "True"
		}
		return "False"
	case v.IsFloat():
		return pyFloatRepr(v.Float())
	}
	return v.String()
}

// pyFloatRepr = Python repr(float): shortest round-trip digits, exponent form if exp < -4 or >= 16.
func pyFloatRepr(f float64) string {
	if math.IsInf(f, 0) {
		if f > 0 {
			return "inf"
		}
		return "-inf"
	}
	if math.IsNaN(f) {
		return "nan"
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	es := strconv.FormatFloat(f, 'e', -1, 64) // e.g. -1.5e-07
	mant, expS, _ := strings.Cut(es, "e")
	exp, _ := strconv.Atoi(expS)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es = "-"
			exp = -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
	}
	if exp < 0 {
		return sign + "0." + strings.Repeat("0", -exp-1) + digits
	}
	if len(digits) <= exp+1 {
		return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
	}
	return sign + digits[:exp+1] + "." + digits[exp+1:]
}

// Python str.isspace (unicode.IsSpace lacks \x1c-\x1f).
func isPySpace(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) }
