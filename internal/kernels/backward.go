package kernels

import (
	"math"
	"runtime"

	"github.com/specforge/specforge/internal/parallel"
)

// RMSNormBackward adds to dx the gradient through y = w*x*rstd and adds to dw the weight gradient
// (dw may be nil for a frozen weight, dx nil for a frozen input). With n = dim:
// dx = rstd*(w*dy) - rstd^3/n * x * sum_j(w_j dy_j x_j).
func RMSNormBackward(dx, dw, dy, x, w, rstd []float32, rows, dim int) {
	partials := parallelRows(rows, max(1, 4096/dim), dim, dw != nil, func(lo, hi int, dwPart []float64) {
		for r := lo; r < hi; r++ {
			xr, dyr := x[r*dim:(r+1)*dim], dy[r*dim:(r+1)*dim]
			inv := float64(rstd[r])
			var dot float64
			for i := range xr {
				dot += float64(w[i]) * float64(dyr[i]) * float64(xr[i])
				if dwPart != nil {
					dwPart[i] += float64(dyr[i]) * float64(xr[i]) * inv
				}
			}
			if dx == nil {
				continue
			}
			dxr := dx[r*dim : (r+1)*dim]
			c := inv * inv * inv * dot / float64(dim)
			for i := range xr {
				dxr[i] += float32(inv*float64(w[i])*float64(dyr[i]) - c*float64(xr[i]))
			}
		}
	})
	addPartials(dw, partials)
}

// parallelRows runs fn over row ranges; when withPartial, each range gets its own float64 accumulator of
// length width, and the accumulators are returned for the caller to sum (a race-free weight gradient).
func parallelRows(rows, grain, width int, withPartial bool, fn func(lo, hi int, part []float64)) [][]float64 {
	var parts [][]float64
	if !withPartial {
		parallel.For(rows, grain, func(lo, hi int) { fn(lo, hi, nil) })
		return nil
	}
	ranges := splitRanges(rows, grain)
	parts = make([][]float64, len(ranges))
	parallel.For(len(ranges), 1, func(lo, hi int) {
		for k := lo; k < hi; k++ {
			parts[k] = make([]float64, width)
			fn(ranges[k][0], ranges[k][1], parts[k])
		}
	})
	return parts
}

func splitRanges(n, grain int) [][2]int {
	workers := runtime.GOMAXPROCS(0)
	chunk := max(grain, (n+workers-1)/workers)
	var out [][2]int
	for lo := 0; lo < n; lo += chunk {
		out = append(out, [2]int{lo, min(lo+chunk, n)})
	}
	return out
}

func addPartials(dst []float32, parts [][]float64) {
	if dst == nil {
		return
	}
	for i := range dst {
		var s float64
		for _, p := range parts {
			s += p[i]
		}
		dst[i] += float32(s)
	}
}

// SwiGLUBackwardGo is SwiGLUBackward in pure Go, compiled in every build: it adds to dgate and dup the
// gradients of out = silu(gate)*up.
func SwiGLUBackwardGo(dgate, dup, dout, gate, up []float32) {
	parallel.For(len(dout), 1<<14, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gate[i]
			sg := Sigmoid(g)
			silu := g * sg
			dup[i] += dout[i] * silu
			dgate[i] += dout[i] * up[i] * sg * (1 + g*(1-sg))
		}
	})
}

// SoftCrossEntropy computes, for each row r with weight coef[r] != 0, the cross-entropy of logits row r
// against the target distribution targets row r: loss_r = logsumexp(z) - sum_v p_v z_v (p sums to 1), and
// replaces the logits row by the gradient coef[r]*(softmax(z) - p). Rows with coef 0 are zeroed and carry no
// loss. It returns sum_r loss_r over the other rows, and writes argmax_v z into pred (first max). One row of logits and
// probabilities is live at a time per worker: the [rows, V] probabilities are never stored.
func SoftCrossEntropy(logits, targets []float32, coef []float32, pred []int32, rows, v int) float64 {
	parts := parallelRows(rows, max(1, 8192/v), 1, true, func(lo, hi int, acc []float64) {
		for r := lo; r < hi; r++ {
			z := logits[r*v : (r+1)*v]
			best := Argmax(z)
			pred[r] = int32(best)
			c := coef[r]
			if c == 0 {
				clear(z)
				continue
			}
			p := targets[r*v : (r+1)*v]
			m := z[best]
			dot := dot64(p, z)
			expShift(z, m)
			sum := sum64(z)
			lse := float64(m) + math.Log(sum)
			acc[0] += lse - dot
			inv := float32(1 / sum)
			for j := range z {
				z[j] = c * (z[j]*inv - p[j])
			}
		}
	})
	var total float64
	for _, p := range parts {
		total += p[0]
	}
	return total
}

// SoftCrossEntropyAccept is SoftCrossEntropy for the LK losses: besides each row's cross-entropy (summed
// and returned) it measures the row's acceptance accept[r] = sum_v min(p_v, q_v), with q = softmax(z), the
// probability that a token drafted from q survives verification against p. Each logits row becomes the
// gradient of klCoef[r]*CE_r + w_r*accept_r, where w_r = accCoef[r], or accCoef[r]/accept_r when logAccept
// (the gradient of accCoef[r]*log(accept_r); 0 where accept_r is 0, as such rows carry no loss). The min's
// subgradient is torch.minimum's: 1 where q_v < p_v, 1/2 at ties, 0 elsewhere; through the softmax,
// d accept/d z_j = q_j (g_j - sum_v g_v q_v).
func SoftCrossEntropyAccept(logits, targets, klCoef, accCoef []float32, logAccept bool, accept []float64, pred []int32, rows, v int) float64 {
	parts := parallelRows(rows, max(1, 8192/v), 1, true, func(lo, hi int, acc []float64) {
		for r := lo; r < hi; r++ {
			z := logits[r*v : (r+1)*v]
			best := Argmax(z)
			pred[r] = int32(best)
			p := targets[r*v : (r+1)*v]
			m := z[best]
			dot := dot64(p, z)
			expShift(z, m)
			sum := sum64(z)
			acc[0] += float64(m) + math.Log(sum) - dot
			a, gq := acceptRow(z, p, float32(1/sum)) // acceptance, sum_v g_v q_v
			accept[r] = a
			w := float64(accCoef[r])
			if logAccept {
				w = 0
				if a > 0 {
					w = float64(accCoef[r]) / a
				}
			}
			acceptGrad(z, p, klCoef[r], float32(w), float32(gq))
		}
	})
	var total float64
	for _, p := range parts {
		total += p[0]
	}
	return total
}
