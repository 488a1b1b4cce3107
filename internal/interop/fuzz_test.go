package interop

import "testing"

// FuzzDecodeTorch: any bytes are read as a torch.save archive without a panic, a hang or an allocation
// beyond the limits, and a dict it returns holds only tensors whose elements match their shape.
func FuzzDecodeTorch(f *testing.F) {
	f.Add(torchZip(f, tensorPickle("input_ids", "LongStorage", 2), map[string][]byte{"0": make([]byte, 16)}))
	f.Add(torchZip(f, tensorPickle("hidden_state", "BFloat16Storage", 4), map[string][]byte{"0": make([]byte, 8)}))
	f.Add(torchZip(f, tensorPickle("x", "FloatStorage", 2), map[string][]byte{"0": make([]byte, 4)}))
	f.Add(torchZip(f, append([]byte{0x80, 2}, "cos\nsystem\n)R."...), nil))
	f.Add([]byte{0x80, 2, ']', '.'})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeTorch("fuzz.ckpt", data)
		if err != nil {
			return
		}
		for k, x := range d {
			n := 1
			for _, s := range x.Shape {
				n *= s
			}
			if len(x.Floats)+len(x.Ints) != n {
				t.Fatalf("%q: %d elements for shape %v", k, len(x.Floats)+len(x.Ints), x.Shape)
			}
		}
	})
}
