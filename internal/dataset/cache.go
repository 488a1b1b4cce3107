package dataset

import (
	"encoding/binary"
	"fmt"

	"github.com/specforge/specforge/internal/batch"
	"github.com/specforge/specforge/internal/safetensors"
	"github.com/specforge/specforge/internal/vocab"
)

// A tokenized dataset file is a safetensors file with three tensors: offsets I64 [n+1] (sample i is
// tokens offsets[i]..offsets[i+1]), input_ids I32 [total] and loss_mask U8 [total]. It is memory-mapped
// when read, so training touches only the samples it uses.

// WriteTokenized stores samples at path atomically.
func WriteTokenized(path string, samples []*Tokenized, metadata map[string]string) error {
	offsets := make([]int64, len(samples)+1)
	for i, s := range samples {
		offsets[i+1] = offsets[i] + int64(len(s.IDs))
	}
	total := int(offsets[len(samples)])
	ids := make([]byte, 0, 4*total)
	mask := make([]byte, 0, total)
	for _, s := range samples {
		for _, id := range s.IDs {
			ids = binary.LittleEndian.AppendUint32(ids, uint32(id))
		}
		mask = append(mask, s.LossMask...)
	}
	return safetensors.Write(path, []safetensors.Tensor{
		safetensors.FromInt64("offsets", safetensors.I64, []int{len(offsets)}, offsets),
		{Name: "input_ids", DType: safetensors.I32, Shape: []int{total}, Data: ids},
		{Name: "loss_mask", DType: safetensors.U8, Shape: []int{total}, Data: mask},
	}, metadata)
}

// Tokenized files opened for reading.
type File struct {
	f       *safetensors.File
	offsets []int64
	ids     *safetensors.Tensor
	mask    *safetensors.Tensor
}

// OpenTokenized maps a tokenized dataset file.
func OpenTokenized(path string) (*File, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	d := &File{f: f}
	fail := func(err error) (*File, error) {
		f.Close()
		return nil, err
	}
	off, err := f.Tensor("offsets")
	if err != nil {
		return fail(err)
	}
	if d.offsets, err = off.Int64(); err != nil {
		return fail(err)
	}
	if d.ids, err = f.Tensor("input_ids"); err != nil {
		return fail(err)
	}
	if d.mask, err = f.Tensor("loss_mask"); err != nil {
		return fail(err)
	}
	n := int64(d.ids.NumElements())
	if d.ids.DType != safetensors.I32 || d.mask.DType != safetensors.U8 || int64(d.mask.NumElements()) != n ||
		len(d.offsets) == 0 || d.offsets[0] != 0 || d.offsets[len(d.offsets)-1] != n {
		return fail(fmt.Errorf("%s: not a tokenized dataset (offsets, I32 input_ids and U8 loss_mask of one length)", path))
	}
	for i := 1; i < len(d.offsets); i++ {
		if d.offsets[i] < d.offsets[i-1] {
			return fail(fmt.Errorf("%s: offsets decrease at sample %d", path, i))
		}
	}
	return d, nil
}

// Len is the number of samples.
func (d *File) Len() int { return len(d.offsets) - 1 }

// Tokens is the total number of tokens.
func (d *File) Tokens() int64 { return d.offsets[len(d.offsets)-1] }

// Sample returns the ids and loss mask of sample i (fresh slices).
func (d *File) Sample(i int) ([]int32, []uint8) {
	from, to := d.offsets[i], d.offsets[i+1]
	ids := make([]int32, to-from)
	for k := range ids {
		ids[k] = int32(binary.LittleEndian.Uint32(d.ids.Data[4*(from+int64(k)):]))
	}
	mask := append([]uint8(nil), d.mask.Data[from:to]...)
	return ids, mask
}

// Pad reads samples idx and pads them to a common length (batch.New).
func (d *File) Pad(idx []int) *batch.Tokens {
	ids := make([][]int32, len(idx))
	masks := make([][]uint8, len(idx))
	lens := make([]int, len(idx))
	for i, k := range idx {
		ids[i], masks[i] = d.Sample(k)
		lens[i] = len(ids[i])
	}
	p := batch.New(lens)
	for i := range ids {
		row := i * p.T
		copy(p.IDs[row:], ids[i])
		for t, m := range masks[i] {
			p.LossMask[row+t] = m == 1
		}
	}
	return p
}

// Close unmaps the file.
func (d *File) Close() error { return d.f.Close() }

// CountLossTokens counts, per target id, the tokens that carry loss: the statistic the draft vocabulary is
// chosen from.
func (d *File) CountLossTokens(vocabSize int) (*vocab.Counter, error) {
	c := vocab.NewCounter(vocabSize)
	n := d.Tokens()
	for i := int64(0); i < n; i++ {
		if d.mask.Data[i] == 0 {
			continue
		}
		id := int32(binary.LittleEndian.Uint32(d.ids.Data[4*i:]))
		if id < 0 || int(id) >= vocabSize {
			return nil, fmt.Errorf("token id %d outside the target vocabulary [0, %d)", id, vocabSize)
		}
		c.Counts[id]++
	}
	return c, nil
}
