package draft

import (
	"fmt"

	"github.com/specforge/specforge/internal/tensor"
)

// bf16Step holds what a bf16 training step multiplies by: the draft's matrices rounded to bf16 (made
// afresh at each TTT call from the float32 masters, which the optimiser updates), and the scratch in which
// each backward rounds its gradient. Norm weights, the attention, the loss and the optimiser stay float32.
type bf16Step struct {
	fc, q, k, v, o, gate, up, down, lmHead []byte
	conv                                   []byte
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
	for _, x := range []struct {
		lin *linear
		buf *[]byte
	}{
		{&l.fc, &s.fc}, {&l.q, &s.q}, {&l.k, &s.k}, {&l.v, &s.v}, {&l.o, &s.o},
		{&l.gate, &s.gate}, {&l.up, &s.up}, {&l.down, &s.down}, {&l.lmHead, &s.lmHead},
	} {
		n := len(x.lin.w)
		*x.buf = tensor.Resize(*x.buf, 2*n)
		t, err := tensor.FromBytes(tensor.BF16, tensor.Host, *x.buf, n)
		if err != nil {
			panic(err) // the buffer was just sized for w
		}
		l.be.Convert(t, t32(x.lin.w))
		x.lin.w16, x.lin.conv = t, &s.conv
	}
}
