package hidden

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"

	"github.com/specforge/specforge/internal/tensor"
)

// Record is one sample as a shard stores it and a capture server sends it: the token ids (int32 LE) and
// loss mask bytes, then the aux hidden states (each stored block once) and the final hidden state, each
// byte-plane split and zstd-compressed. Bytes holds all three parts, AuxBytes and HiddenBytes the lengths of
// the last two.
type Record struct {
	Tokens, AuxBytes, HiddenBytes int
	Bytes                         []byte
}

// RecordEncoder encodes samples into records with gen-hidden's zstd level, so that the bytes are the same
// wherever they are made. Not safe for concurrent use.
type RecordEncoder struct {
	enc       *zstd.Encoder
	d         tensor.DType
	slots     []int
	stored, h int
	unique    []float32
	blob      []byte
}

// NewRecordEncoder encodes samples of aux layers auxLayers (repeats stored once), each hiddenSize wide, in
// storage type d.
func NewRecordEncoder(d tensor.DType, auxLayers []int, hiddenSize int) (*RecordEncoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	slots, stored := auxSlots(auxLayers)
	return &RecordEncoder{enc: enc, d: d, slots: slots, stored: stored, h: hiddenSize}, nil
}

// AuxSlots maps aux layer ids to the stored blocks of a record, first occurrence first: a layer read more
// than once is stored once.
func AuxSlots(layers []int) []int {
	slots, _ := auxSlots(layers)
	return slots
}

// Encode encodes sample s (its aux states [T, len(auxLayers)*hiddenSize]): the bytes WriteShard stores for it.
func (e *RecordEncoder) Encode(s *Sample) Record {
	T := len(s.IDs)
	buf := make([]byte, 0, 5*T)
	for _, id := range s.IDs {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(id))
	}
	for _, m := range s.LossMask {
		if m {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
	}
	e.unique = compactAux(e.unique[:0], s.Aux, e.slots, e.stored, e.h, T)
	e.blob = encodeValues(e.enc, e.blob[:0], e.unique, e.d)
	r := Record{Tokens: T, AuxBytes: len(e.blob)}
	buf = append(buf, e.blob...)
	e.blob = encodeValues(e.enc, e.blob[:0], s.Hidden, e.d)
	r.HiddenBytes = len(e.blob)
	r.Bytes = append(buf, e.blob...)
	return r
}

// Close releases the encoder.
func (e *RecordEncoder) Close() error { return e.enc.Close() }

// CheckRecord refuses a record whose parts do not add up to its bytes, or whose states would decode to more
// than maxExpansion bytes per stored byte (a forged record sized as gigabytes); slots (AuxSlots) and h say
// what a token holds.
func CheckRecord(r Record, d tensor.DType, slots []int, h int) error {
	_, stored := auxSlots(slots)
	if r.Tokens < 0 || r.AuxBytes < 0 || r.HiddenBytes < 0 || int64(len(r.Bytes)) != 5*int64(r.Tokens)+int64(r.AuxBytes)+int64(r.HiddenBytes) {
		return fmt.Errorf("%d tokens and %d + %d bytes of states in a record of %d bytes", r.Tokens, r.AuxBytes, r.HiddenBytes, len(r.Bytes))
	}
	perToken := int64(stored+1) * int64(h) * int64(d.Size())
	if allowed := maxExpansion * (int64(r.AuxBytes) + int64(r.HiddenBytes) + 1); int64(r.Tokens) > allowed/perToken {
		return fmt.Errorf("%d tokens of states (%d bytes each) stored in %d bytes: more than %dx (maxExpansion)", r.Tokens, perToken, r.AuxBytes+r.HiddenBytes, maxExpansion)
	}
	return nil
}

// DecodeRecord decodes a record of the aux slots (each HiddenSize h wide) in storage type d; token ids at or
// above vocabSize (when positive) are refused. The sizes must have been checked (CheckRecord, or a shard's
// index).
func DecodeRecord(dec *zstd.Decoder, r Record, d tensor.DType, slots []int, h, vocabSize int) (*Sample, error) {
	T := r.Tokens
	out := &Sample{IDs: make([]int32, T), LossMask: make([]bool, T), Aux: make([]float32, T*len(slots)*h), Hidden: make([]float32, T*h)}
	if err := decodeTokens(r.Bytes[:5*T], out.IDs, out.LossMask, vocabSize); err != nil {
		return nil, err
	}
	blob := r.Bytes[5*T:]
	_, stored := auxSlots(slots)
	unique := make([]float32, T*stored*h)
	if err := decodeValues(dec, blob[:r.AuxBytes], unique, d); err != nil {
		return nil, fmt.Errorf("aux: %w", err)
	}
	for t := 0; t < T; t++ {
		for slot, block := range slots {
			copy(out.Aux[(t*len(slots)+slot)*h:(t*len(slots)+slot+1)*h], unique[(t*stored+block)*h:(t*stored+block+1)*h])
		}
	}
	if err := decodeValues(dec, blob[r.AuxBytes:r.AuxBytes+r.HiddenBytes], out.Hidden, d); err != nil {
		return nil, fmt.Errorf("hidden: %w", err)
	}
	return out, nil
}

// decodeTokens reads the ids and loss mask from buf (5 bytes a token), refusing ids outside the vocabulary.
func decodeTokens(buf []byte, ids []int32, mask []bool, vocabSize int) error {
	T := len(ids)
	for t := range T {
		id := binary.LittleEndian.Uint32(buf[4*t:])
		if vocabSize > 0 && id >= uint32(vocabSize) {
			return fmt.Errorf("token %d: id %d outside the target's vocabulary of %d", t, int32(id), vocabSize)
		}
		ids[t] = int32(id)
		mask[t] = buf[4*T+t] == 1
	}
	return nil
}
