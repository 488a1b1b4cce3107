package llama2c

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Vocab is a llama2.c tokenizer (tokenizer.bin): SentencePiece pieces with their scores, as llama2.c's
// tokenizer.py exported them (▁ written as a space, BOS and EOS as "\n<s>\n" and "\n</s>\n").
type Vocab struct {
	Pieces []string // SentencePiece spelling: ▁ for spaces, <s>, </s>
	Scores []float32
}

// ReadVocab reads a llama2.c tokenizer file holding vocabSize pieces.
func ReadVocab(path string, vocabSize int) (*Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read llama2.c tokenizer: %w", err)
	}
	v := &Vocab{}
	off := 4 // max_token_length
	for i := 0; i < vocabSize; i++ {
		if off+8 > len(data) {
			return nil, fmt.Errorf("%s: truncated after %d of %d pieces", path, i, vocabSize)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		if n < 0 || off+8+n > len(data) {
			return nil, fmt.Errorf("%s: piece %d has a bad length %d", path, i, n)
		}
		piece := string(data[off+8 : off+8+n])
		off += 8 + n
		switch piece {
		case "\n<s>\n":
			piece = "<s>"
		case "\n</s>\n":
			piece = "</s>"
		default:
			piece = strings.ReplaceAll(piece, " ", "▁")
		}
		v.Pieces = append(v.Pieces, piece)
		v.Scores = append(v.Scores, score)
	}
	if off != len(data) {
		return nil, fmt.Errorf("%s: %d bytes left after %d pieces (vocabulary size mismatch?)", path, len(data)-off, vocabSize)
	}
	return v, nil
}

// merges derives BPE merges from the piece scores the way transformers' SentencePieceExtractor does: every
// split of a piece into two pieces, ordered by the merged piece's score (highest first), ties in vocabulary
// order.
func (v *Vocab) merges() [][2]string {
	index := make(map[string]int, len(v.Pieces))
	for i, p := range v.Pieces {
		index[p] = i
	}
	type cand struct {
		l, r  string
		score float32
	}
	var all []cand
	for i, piece := range v.Pieces {
		var local []cand
		for cut := 1; cut < len(piece); cut++ {
			l, r := piece[:cut], piece[cut:]
			if _, ok := index[l]; !ok {
				continue
			}
			if _, ok := index[r]; ok {
				local = append(local, cand{l, r, v.Scores[i]})
			}
		}
		sort.SliceStable(local, func(a, b int) bool {
			if index[local[a].l] != index[local[b].l] {
				return index[local[a].l] < index[local[b].l]
			}
			return index[local[a].r] < index[local[b].r]
		})
		all = append(all, local...)
	}
	sort.SliceStable(all, func(a, b int) bool { return all[a].score > all[b].score })
	out := make([][2]string, len(all))
	for i, c := range all {
		out[i] = [2]string{c.l, c.r}
	}
	return out
}

// TokenizerJSON is the Hugging Face tokenizer.json of a Llama-2-style SentencePiece BPE vocabulary: <unk>,
// <s>, </s> special, byte fallback, ▁ for spaces with a prepended ▁ (the "legacy" Llama tokenizer).
func (v *Vocab) TokenizerJSON() map[string]any {
	vocab := make(map[string]int, len(v.Pieces))
	for i, p := range v.Pieces {
		vocab[p] = i
	}
	special := func(id int, content string) map[string]any {
		return map[string]any{"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	return map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type":   "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"pair": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 1}}, map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type": "BPE", "dropout": nil, "unk_token": "<unk>", "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
			"vocab": vocab, "merges": v.merges(),
		},
	}
}

// WriteHF writes tokenizer.json and tokenizer_config.json into dir.
func (v *Vocab) WriteHF(dir string, maxLength int) error {
	if err := writeJSON(filepath.Join(dir, "tokenizer.json"), v.TokenizerJSON()); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, "tokenizer_config.json"), map[string]any{
		"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>",
		"unk_token": "<unk>", "pad_token": nil, "model_max_length": maxLength, "legacy": true,
		"clean_up_tokenization_spaces": false, "tokenizer_class": "LlamaTokenizer",
		"spaces_between_special_tokens": false,
	})
}
