package kernels

import (
	"math"

	"github.com/specforge/specforge/internal/parallel"
)

// RMSNorm computes out[r] = w * x[r] / sqrt(mean(x[r]^2) + eps) for rows of length dim. out may alias x.
// The statistic accumulates in float64.
func RMSNorm(out, x, w []float32, rows, dim int, eps float32) {
	RMSNormForward(out, nil, x, w, rows, dim, eps)
}

// RMSNormForward is RMSNorm that also stores each row's 1/rms in rstd (unless nil), for the backward pass.
func RMSNormForward(out, rstd, x, w []float32, rows, dim int, eps float32) {
	// Small calls (decoding) run here: a closure for parallel.For would be one more allocation per call.
	if grain := max(1, 4096/dim); rows > grain {
		parallel.For(rows, grain, func(lo, hi int) { rmsNormRows(out, rstd, x, w, lo, hi, dim, eps) })
		return
	}
	rmsNormRows(out, rstd, x, w, 0, rows, dim, eps)
}

func rmsNormRows(out, rstd, x, w []float32, lo, hi, dim int, eps float32) {
	for r := lo; r < hi; r++ {
		xr, or := x[r*dim:(r+1)*dim], out[r*dim:(r+1)*dim]
		inv := float32(1 / math.Sqrt(meanSquare(xr)+float64(eps)))
		if rstd != nil {
			rstd[r] = inv
		}
		for i, v := range xr {
			or[i] = w[i] * (v * inv)
		}
	}
}

// meanSquare keeps four partial sums: one running sum would be a chain of dependent additions, the
// whole cost of a norm over a short row.
func meanSquare(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		s0 += float64(v[0]) * float64(v[0])
		s1 += float64(v[1]) * float64(v[1])
		s2 += float64(v[2]) * float64(v[2])
		s3 += float64(v[3]) * float64(v[3])
	}
	for ; i < len(x); i++ {
		s0 += float64(x[i]) * float64(x[i])
	}
	return (s0 + s1 + s2 + s3) / float64(len(x))
}
