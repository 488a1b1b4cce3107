package hidden

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/tensor"
)

// Sample is one stored sample.
type Sample struct {
	IDs      []int32
	LossMask []bool
	Aux      []float32 // [T, AuxWidth]
	Hidden   []float32 // [T, HiddenSize] after the target's final norm
}

// A shard file holds records (ids int32 LE, loss mask bytes, then the aux and final hidden states, each
// byte-plane split and zstd-compressed), a JSON index of the records, and a footer: index offset and
// length (uint64 LE) and the magic "SFHSHRD1".
const shardMagic = "SFHSHRD1"

type recordIndex struct {
	Offset      int64 `json:"offset"`
	Tokens      int   `json:"tokens"`
	AuxBytes    int   `json:"aux_bytes"`
	HiddenBytes int   `json:"hidden_bytes"`
}

type shardIndex struct {
	DType      tensor.DType `json:"-"` // stored as "dtype" in its short name (MarshalJSON)
	AuxWidth   int          `json:"aux_width"`
	HiddenSize int          `json:"hidden_size"`
	// AuxSlots maps each of the aux slots (of HiddenSize values) to the stored block holding it: repeated
	// aux layers (shallow targets read one layer more than once) are stored once.
	AuxSlots []int         `json:"aux_slots"`
	Records  []recordIndex `json:"records"`
}

// MarshalJSON writes the index with the dtype in its short name ("bf16"), first, as shards always spelt it.
func (x shardIndex) MarshalJSON() ([]byte, error) {
	type fields shardIndex // without the methods, so that Marshal does not recurse
	return json.Marshal(struct {
		DType string `json:"dtype"`
		fields
	}{x.DType.ShortName(), fields(x)})
}

// UnmarshalJSON reads what MarshalJSON writes; a dtype other than bf16, f16 or f32 is an error.
func (x *shardIndex) UnmarshalJSON(b []byte) error {
	type fields shardIndex
	var v struct {
		DType string `json:"dtype"`
		fields
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	d, err := tensor.ParseShortName(v.DType)
	if err != nil {
		return err
	}
	*x = shardIndex(v.fields)
	x.DType = d
	return nil
}

// auxSlots maps aux layer ids to stored blocks, first occurrence first.
func auxSlots(layers []int) (slots []int, stored int) {
	seen := map[int]int{}
	for _, l := range layers {
		if _, ok := seen[l]; !ok {
			seen[l] = len(seen)
		}
		slots = append(slots, seen[l])
	}
	return slots, len(seen)
}

// ShardInfo describes a written shard.
type ShardInfo struct {
	File        string `json:"file"`
	FirstSample int    `json:"first_sample"`
	Samples     int    `json:"samples"`
	Tokens      int64  `json:"tokens"`
	Bytes       int64  `json:"bytes"`
	SHA256      string `json:"sha256"`
}

// WriteShard writes samples to path atomically and returns its size and checksum. auxLayers are the layer
// ids of the aux slots (repeats are stored once).
func WriteShard(path string, samples []Sample, d tensor.DType, auxLayers []int, hiddenSize int) (ShardInfo, error) {
	if d.ShortName() == "" {
		return ShardInfo{}, fmt.Errorf("%s: hidden states are stored as bf16, f16 or f32, not %s", path, d)
	}
	auxWidth := len(auxLayers) * hiddenSize
	info := ShardInfo{File: path, Samples: len(samples)}
	enc, err := NewRecordEncoder(d, auxLayers, hiddenSize)
	if err != nil {
		return info, err
	}
	defer enc.Close()
	h := sha256.New()
	err = atomicfile.Write(path, func(w io.Writer) error {
		cw := &countingWriter{w: io.MultiWriter(w, h)}
		idx := shardIndex{DType: d, AuxWidth: auxWidth, HiddenSize: hiddenSize, AuxSlots: enc.slots}
		for _, s := range samples {
			T := len(s.IDs)
			if len(s.LossMask) != T || len(s.Aux) != T*auxWidth || len(s.Hidden) != T*hiddenSize {
				return fmt.Errorf("sample of %d tokens with %d mask, %d aux and %d hidden values", T, len(s.LossMask), len(s.Aux), len(s.Hidden))
			}
			r := enc.Encode(&s)
			rec := recordIndex{Offset: cw.n, Tokens: T, AuxBytes: r.AuxBytes, HiddenBytes: r.HiddenBytes}
			if _, err := cw.Write(r.Bytes); err != nil {
				return err
			}
			idx.Records = append(idx.Records, rec)
			info.Tokens += int64(T)
		}
		js, err := json.Marshal(idx)
		if err != nil {
			return err
		}
		at := cw.n
		if _, err := cw.Write(js); err != nil {
			return err
		}
		var footer [24]byte
		binary.LittleEndian.PutUint64(footer[0:], uint64(at))
		binary.LittleEndian.PutUint64(footer[8:], uint64(len(js)))
		copy(footer[16:], shardMagic)
		_, err = cw.Write(footer[:])
		info.Bytes = cw.n
		return err
	})
	info.SHA256 = hex.EncodeToString(h.Sum(nil))
	return info, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// compactAux copies each stored block of every row once, in block order.
func compactAux(dst, aux []float32, slots []int, stored, h, T int) []float32 {
	width := len(slots) * h
	for t := 0; t < T; t++ {
		done := make([]bool, stored)
		row := aux[t*width : (t+1)*width]
		for slot, block := range slots {
			if !done[block] {
				done[block] = true
				dst = append(dst, row[slot*h:(slot+1)*h]...)
			}
		}
	}
	return dst
}

// Shard is an open shard file.
type Shard struct {
	path  string
	f     *os.File
	index shardIndex
	dec   *zstd.Decoder
	// vocabSize, when set, bounds the token ids read.
	vocabSize int
}

// OpenShard reads a shard's index.
func OpenShard(path string) (*Shard, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open shard: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	fail := func(format string, args ...any) (*Shard, error) {
		f.Close()
		return nil, fmt.Errorf("%s: "+format, append([]any{path}, args...)...)
	}
	if st.Size() < 24 {
		return fail("truncated shard (%d bytes)", st.Size())
	}
	var footer [24]byte
	if _, err := f.ReadAt(footer[:], st.Size()-24); err != nil {
		return fail("%v", err)
	}
	if string(footer[16:]) != shardMagic {
		return fail("not a hidden-state shard or truncated (no footer)")
	}
	at, n := int64(binary.LittleEndian.Uint64(footer[0:])), int64(binary.LittleEndian.Uint64(footer[8:]))
	if at < 0 || n < 0 || at+n != st.Size()-24 {
		return fail("corrupt footer")
	}
	js := make([]byte, n)
	if _, err := f.ReadAt(js, at); err != nil {
		return fail("%v", err)
	}
	s := &Shard{path: path, f: f}
	if err := json.Unmarshal(js, &s.index); err != nil {
		return fail("corrupt index: %v", err)
	}
	largest, err := s.index.check(at)
	if err != nil {
		return fail("corrupt index: %v", err)
	}
	// A sample's states decode to at most largest bytes; the bound stops a forged zstd frame from
	// expanding further. It also bounds the window a frame may declare, and the encoder declares up to 8 MiB.
	if s.dec, err = zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(max(largest, 8<<20)))); err != nil {
		return fail("%v", err)
	}
	return s, nil
}

// Limits on what a shard index may declare, checked before anything is sized from it (its hidden size is
// bounded by model.MaxHiddenSize).
const (
	// maxAuxSlots: EAGLE-3 reads three layers; drafts that read more read a handful.
	maxAuxSlots = 64
	// maxExpansion bounds how many bytes of states one stored byte may decode to, so that a forged index
	// cannot have a few bytes sized as gigabytes. zstd itself cannot go much past 32,000:1 (measured: 2^24
	// bf16 zeros, byte-plane split, store at 32,326:1), so no record zstd wrote is refused.
	maxExpansion = 1 << 16
)

// check validates the index of a shard whose records end at end, and returns the most bytes a record's
// states decode to.
func (x *shardIndex) check(end int64) (int64, error) {
	if x.HiddenSize < 1 || x.HiddenSize > model.MaxHiddenSize {
		return 0, fmt.Errorf("hidden_size %d, want 1 to %d", x.HiddenSize, model.MaxHiddenSize)
	}
	if len(x.AuxSlots) < 1 || len(x.AuxSlots) > maxAuxSlots {
		return 0, fmt.Errorf("%d aux slots, want 1 to %d", len(x.AuxSlots), maxAuxSlots)
	}
	if len(x.AuxSlots)*x.HiddenSize != x.AuxWidth {
		return 0, fmt.Errorf("%d aux slots of %d for width %d", len(x.AuxSlots), x.HiddenSize, x.AuxWidth)
	}
	// Slots name stored blocks first occurrence first, as auxSlots numbers them.
	stored := 0
	for i, b := range x.AuxSlots {
		if b < 0 || b > stored {
			return 0, fmt.Errorf("aux_slots[%d] = %d, want 0 to %d", i, b, stored)
		}
		stored = max(stored, b+1)
	}
	perToken := int64(stored+1) * int64(x.HiddenSize) * int64(x.DType.Size())
	var largest int64
	for i, r := range x.Records {
		if r.Offset < 0 || r.Tokens < 0 || r.AuxBytes < 0 || r.HiddenBytes < 0 || r.Offset > end ||
			int64(r.Tokens) > end || int64(r.AuxBytes) > end || int64(r.HiddenBytes) > end ||
			r.Offset+5*int64(r.Tokens)+int64(r.AuxBytes)+int64(r.HiddenBytes) > end {
			return 0, fmt.Errorf("records[%d]: offset %d, %d tokens, %d + %d bytes of states: outside the %d bytes of records",
				i, r.Offset, r.Tokens, r.AuxBytes, r.HiddenBytes, end)
		}
		if allowed := maxExpansion * (int64(r.AuxBytes) + int64(r.HiddenBytes) + 1); int64(r.Tokens) > allowed/perToken {
			return 0, fmt.Errorf("records[%d]: %d tokens of states (%d bytes each) stored in %d bytes: more than %dx (maxExpansion)",
				i, r.Tokens, perToken, r.AuxBytes+r.HiddenBytes, maxExpansion)
		}
		largest = max(largest, int64(r.Tokens)*perToken)
	}
	return largest, nil
}

// Len is the number of samples in the shard.
func (s *Shard) Len() int { return len(s.index.Records) }

// Read decodes sample i of the shard. Safe for concurrent use.
func (s *Shard) Read(i int) (*Sample, error) {
	rec := s.index.Records[i]
	T := rec.Tokens
	buf := make([]byte, 5*T+rec.AuxBytes+rec.HiddenBytes)
	if _, err := s.f.ReadAt(buf, rec.Offset); err != nil {
		return nil, fmt.Errorf("%s: sample %d: %w", s.path, i, err)
	}
	out, err := DecodeRecord(s.dec, Record{Tokens: T, AuxBytes: rec.AuxBytes, HiddenBytes: rec.HiddenBytes, Bytes: buf},
		s.index.DType, s.index.AuxSlots, s.index.HiddenSize, s.vocabSize)
	if err != nil {
		return nil, fmt.Errorf("%s: sample %d: %w", s.path, i, err)
	}
	return out, nil
}

// ReadTokens reads only the token ids and loss mask of sample i.
func (s *Shard) ReadTokens(i int) ([]int32, []bool, error) {
	rec := s.index.Records[i]
	T := rec.Tokens
	buf := make([]byte, 5*T)
	if _, err := s.f.ReadAt(buf, rec.Offset); err != nil {
		return nil, nil, fmt.Errorf("%s: sample %d: %w", s.path, i, err)
	}
	ids, mask := make([]int32, T), make([]bool, T)
	if err := decodeTokens(buf, ids, mask, s.vocabSize); err != nil {
		return nil, nil, fmt.Errorf("%s: sample %d: %w", s.path, i, err)
	}
	return ids, mask, nil
}

// Close releases the file.
func (s *Shard) Close() error {
	s.dec.Close()
	return s.f.Close()
}

// FileSHA256 hashes a whole file.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
