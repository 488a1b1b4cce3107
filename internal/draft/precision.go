package draft

import (
	"fmt"

	"github.com/specforge/specforge/internal/tensor"
)

// bf16Step holds what a bf16 training step multiplies by: the draft's matrices rounded to bf16 (made
// afresh at each TTT call from the float32 masters, which the optimiser updates), and the scratch in which
// each backward rounds its gradient. The attention's products round their
// operands to bf16 too (backend.Attention.BF16); norm weights, softmaxes, the loss and the optimiser stay float32.
type bf16Step struct {
	w    [][]byte // per product of layer.linears
	conv []byte
}

// checkPrecision accepts the products a Workspace may ask for.
func checkPrecision(p tensor.DType) error {
	switch p {
	case "", tensor.F32, tensor.BF16:
		return nil
	}
	return fmt.Errorf("draft: training precision %s is not F32 or BF16", p)
}

// round binds l's products to bf16 copies of its weights, kept in s.
func (s *bf16Step) round(l *layer) {
	lins := l.linears()
	for len(s.w) < len(lins) {
		s.w = append(s.w, nil)
	}
	for i, lin := range lins {
		n := len(lin.w)
		s.w[i] = tensor.Resize(s.w[i], 2*n)
		t, err := tensor.FromBytes(tensor.BF16, tensor.Host, s.w[i], n)
		if err != nil {
			panic(err) // the buffer was just sized for w
		}
		l.be.Convert(t, t32(lin.w))
		lin.w16, lin.conv = t, &s.conv
	}
}
