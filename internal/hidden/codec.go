// Package hidden stores the target's hidden states for offline training: shards of samples (token ids, loss
// mask, the aux hidden states [T, 3H] and the final hidden state [T, H]) written once by gen-hidden and read
// many times by training, plus a manifest that records how they were made.
package hidden

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/klauspost/compress/zstd"

	"github.com/specforge/specforge/internal/half"
	"github.com/specforge/specforge/internal/tensor"
)

// encodeValues converts float32 values to the storage type d (BF16, F16 or F32; F32 is exact) and splits the bytes into planes (all first
// bytes, then all second bytes, ...) before zstd: the sign/exponent bytes of neighbouring activations are
// alike and compress well once they sit together, which a byte-interleaved stream hides from the
// compressor. Lossless for the storage type.
func encodeValues(enc *zstd.Encoder, dst []byte, v []float32, d tensor.DType) []byte {
	w := d.Size()
	raw := make([]byte, len(v)*w)
	switch d {
	case tensor.F32:
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
		}
	case tensor.BF16, tensor.F16:
		bits := make([]uint16, len(v))
		if d == tensor.BF16 {
			half.F32ToBF16(bits, v)
		} else {
			half.F32ToF16(bits, v)
		}
		for i, b := range bits {
			binary.LittleEndian.PutUint16(raw[2*i:], b)
		}
	}
	planes := make([]byte, len(raw))
	n := len(v)
	for i := 0; i < n; i++ {
		for p := 0; p < w; p++ {
			planes[p*n+i] = raw[i*w+p]
		}
	}
	return enc.EncodeAll(planes, dst)
}

// decodeValues reverses encodeValues into out (len = number of values).
func decodeValues(dec *zstd.Decoder, blob []byte, out []float32, d tensor.DType) error {
	w := d.Size()
	n := len(out)
	planes, err := dec.DecodeAll(blob, make([]byte, 0, n*w))
	if err != nil {
		return err
	}
	if len(planes) != n*w {
		return fmt.Errorf("decoded %d bytes, want %d", len(planes), n*w)
	}
	switch d {
	case tensor.F32:
		for i := range out {
			out[i] = math.Float32frombits(uint32(planes[i]) | uint32(planes[n+i])<<8 | uint32(planes[2*n+i])<<16 | uint32(planes[3*n+i])<<24)
		}
	case tensor.BF16, tensor.F16:
		bits := make([]uint16, n)
		for i := range bits {
			bits[i] = uint16(planes[i]) | uint16(planes[n+i])<<8
		}
		if d == tensor.BF16 {
			half.BF16ToF32(out, bits)
		} else {
			half.F16ToF32(out, bits)
		}
	}
	return nil
}
