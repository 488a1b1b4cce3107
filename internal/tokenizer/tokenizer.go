// Package tokenizer encodes and decodes text like Hugging Face's tokenizers library does from a
// tokenizer.json: byte-level BPE (GPT-2, Llama 3, Qwen2/3) and SentencePiece-style BPE with byte fallback
// (Llama 2, stories260K), with added and special tokens split out before the model runs.
package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// AddedToken is a token matched in the raw text before normalisation and the model.
type AddedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// Tokenizer is a loaded tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	model     bpe
	idToToken []string
	added     []AddedToken
	addedByID map[int32]*AddedToken
	// addedByFirst[normalized][b] lists the added tokens starting with byte b, longest first.
	addedByFirst [2][256][]int
	normalizers  []normalizer
	split        *pattern // nil: no regex pre-tokenizer
	byteLevel    bool     // pre-tokens are mapped byte -> printable rune before the model
	decoders     []decoder
	// Post-processing: tokens added around a sequence when special tokens are requested.
	prefix, suffix []int32
	// CleanUpSpaces applies transformers' clean_up_tokenization on decode.
	CleanUpSpaces bool
	// BOS and EOS as tokenizer_config.json names them (-1 when absent).
	BOS, EOS int32
	cache    sync.Map // pre-token -> []int32
	cached   int64
	cacheMu  sync.Mutex
}

// Limits on what a tokenizer file may hold, so that a hostile or corrupt file is an error rather than a
// panic or an out-of-memory kill.
const (
	// maxFileBytes bounds a tokenizer file, and what a gzip-compressed one expands to: the largest in use
	// (Gemma 3's tokenizer.json) is 33 MB, and decoding JSON takes several times the file in memory.
	maxFileBytes = 128 << 20
	// maxVocabSize bounds token ids (id < maxVocabSize): 64 times the largest vocabularies in use
	// (Gemma's 262,144), and small enough that the id -> token table (16 bytes a slot) stays under 256 MiB.
	maxVocabSize = 1 << 24
	// maxUnusedIDs is how many ids below the largest may have no token. Ids index a table sized by the
	// largest one, so a sparse vocabulary ({"a": 0, "b": 16000000}) would allocate for ids it does not
	// have; real vocabularies are dense, and 65,536 unused slots cost 1 MiB.
	maxUnusedIDs = 1 << 16
)

type tokenizerJSON struct {
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         struct {
		Type         string           `json:"type"`
		Vocab        map[string]int64 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		UnkToken     *string          `json:"unk_token"`
		FuseUnk      bool             `json:"fuse_unk"`
		ByteFallback bool             `json:"byte_fallback"`
		IgnoreMerges bool             `json:"ignore_merges"`
		Dropout      *float64         `json:"dropout"`
		Prefix       *string          `json:"continuing_subword_prefix"`
		Suffix       *string          `json:"end_of_word_suffix"`
	} `json:"model"`
}

// addedTokenJSON reads an added token with a wide id, so that an id out of int32's range is refused with
// the limit and the token named rather than a bare JSON type error.
type addedTokenJSON struct {
	AddedToken
	ID int64 `json:"id"`
}

// Load reads dir/tokenizer.json (or tokenizer.json.gz) and, when present, dir/tokenizer_config.json.
func Load(dir string) (*Tokenizer, error) {
	path := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		if _, gzErr := os.Stat(path + ".gz"); gzErr == nil {
			path += ".gz"
		}
	}
	t, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	raw, err := readFile(cfgPath)
	switch {
	case err == nil:
		if err := t.applyConfig(cfgPath, raw); err != nil {
			return nil, err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	return t, nil
}

// readFile reads a file of at most maxFileBytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(path, f)
}

func readLimited(path string, r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(raw) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB (maxFileBytes), too large for a tokenizer file", path, maxFileBytes>>20)
	}
	return raw, nil
}

// LoadIfPresent is Load for folders that may have no tokenizer (a target converted without one): nil, nil
// when dir has neither tokenizer.json nor tokenizer.json.gz.
func LoadIfPresent(dir string) (*Tokenizer, error) {
	for _, name := range []string{"tokenizer.json", "tokenizer.json.gz"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return Load(dir)
		}
	}
	return nil, nil
}

// LoadFile reads a tokenizer.json, gzip-compressed or not.
func LoadFile(path string) (*Tokenizer, error) {
	raw, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokenizer: %w", err)
	}
	if len(raw) > 2 && raw[0] == 0x1f && raw[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if raw, err = readLimited(path+" (decompressed)", zr); err != nil {
			return nil, err
		}
	}
	return parse(path, raw)
}

// parse builds a tokenizer from the bytes of a tokenizer.json; path names it in errors.
func parse(path string, raw []byte) (*Tokenizer, error) {
	var tj tokenizerJSON
	if err := json.Unmarshal(raw, &tj); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	t, err := build(&tj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func build(tj *tokenizerJSON) (*Tokenizer, error) {
	m := &tj.Model
	if m.Type != "BPE" {
		return nil, fmt.Errorf("model type %q is not supported (supported: BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("BPE dropout is not supported")
	}
	if m.Prefix != nil && *m.Prefix != "" || m.Suffix != nil && *m.Suffix != "" {
		return nil, fmt.Errorf("continuing_subword_prefix and end_of_word_suffix are not supported")
	}
	t := &Tokenizer{addedByID: map[int32]*AddedToken{}, BOS: -1, EOS: -1}
	vocab, size, err := checkIDs(tj)
	if err != nil {
		return nil, err
	}
	t.model = bpe{vocab: vocab, unk: -1, fuseUnk: m.FuseUnk, byteFallback: m.ByteFallback, ignoreMerges: m.IgnoreMerges}
	if m.UnkToken != nil {
		id, ok := vocab[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *m.UnkToken)
		}
		t.model.unk = id
	}
	for b := range t.model.byteIDs {
		t.model.byteIDs[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.model.byteIDs[b] = id
		}
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	if err := t.setMerges(merges); err != nil {
		return nil, err
	}
	t.added = make([]AddedToken, len(tj.AddedTokens))
	for i, a := range tj.AddedTokens {
		t.added[i] = a.AddedToken
		t.added[i].ID = int32(a.ID)
	}
	t.idToToken = make([]string, size)
	for s, id := range vocab {
		t.idToToken[id] = s
	}
	for i := range t.added {
		a := &t.added[i]
		t.idToToken[a.ID] = a.Content
		t.addedByID[a.ID] = a
		if a.Content != "" {
			nf := 0
			if a.Normalized {
				nf = 1
			}
			t.addedByFirst[nf][a.Content[0]] = append(t.addedByFirst[nf][a.Content[0]], i)
		}
	}
	for nf := range t.addedByFirst {
		for b := range t.addedByFirst[nf] {
			list := t.addedByFirst[nf][b]
			sort.SliceStable(list, func(x, y int) bool { return len(t.added[list[x]].Content) > len(t.added[list[y]].Content) })
		}
	}
	if t.normalizers, err = parseNormalizer(tj.Normalizer); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	if err := t.parsePreTokenizer(tj.PreTokenizer); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	if err := t.parsePostProcessor(tj.PostProcessor); err != nil {
		return nil, fmt.Errorf("post_processor: %w", err)
	}
	for _, ids := range [][]int32{t.prefix, t.suffix} {
		for _, id := range ids {
			if id < 0 || int(id) >= size {
				return nil, fmt.Errorf("post_processor: special token id %d is not a token id (the vocabulary has ids 0 to %d)", id, size-1)
			}
		}
	}
	if t.decoders, err = parseDecoder(tj.Decoder); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	return t, nil
}

// checkIDs checks every token id of the vocabulary and the added tokens against the limits and returns the
// vocabulary with int32 ids and the id table's size (one more than the largest id).
func checkIDs(tj *tokenizerJSON) (map[string]int32, int, error) {
	size := 0
	check := func(field, token string, id int64) error {
		if id < 0 || id >= maxVocabSize {
			return fmt.Errorf("%s: token %q has id %d, want 0 <= id < %d (maxVocabSize)", field, token, id, maxVocabSize)
		}
		size = max(size, int(id)+1)
		return nil
	}
	vocab := make(map[string]int32, len(tj.Model.Vocab))
	for s, id := range tj.Model.Vocab {
		if err := check("model.vocab", s, id); err != nil {
			return nil, 0, err
		}
		vocab[s] = int32(id)
	}
	for i, a := range tj.AddedTokens {
		if err := check(fmt.Sprintf("added_tokens[%d]", i), a.Content, a.ID); err != nil {
			return nil, 0, err
		}
	}
	if limit := len(tj.Model.Vocab) + len(tj.AddedTokens) + maxUnusedIDs; size > limit {
		return nil, 0, fmt.Errorf("model.vocab and added_tokens: largest id %d leaves more than %d ids (maxUnusedIDs) without a token (%d vocabulary and %d added tokens)", size-1, maxUnusedIDs, len(tj.Model.Vocab), len(tj.AddedTokens))
	}
	return vocab, size, nil
}

// parseMerges accepts both merge encodings: "a b" strings and ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("merges: want a list of \"a b\" strings or [a, b] pairs")
	}
	pairs = make([][2]string, len(lines))
	for i, l := range lines {
		a, b, ok := strings.Cut(l, " ")
		if !ok {
			return nil, fmt.Errorf("merge %d %q is not two tokens separated by a space", i, l)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

func (t *Tokenizer) setMerges(pairs [][2]string) error {
	t.model.merges = make(map[[2]int32]merge, len(pairs))
	for rank, p := range pairs {
		a, okA := t.model.vocab[p[0]]
		b, okB := t.model.vocab[p[1]]
		id, okC := t.model.vocab[p[0]+p[1]]
		if !okA || !okB || !okC {
			return fmt.Errorf("merge %d (%q, %q) uses tokens missing from the vocabulary", rank, p[0], p[1])
		}
		if _, dup := t.model.merges[[2]int32{a, b}]; !dup {
			t.model.merges[[2]int32{a, b}] = merge{rank: int32(rank), id: id}
		}
	}
	return nil
}

// applyConfig reads the fields of tokenizer_config.json that change encoding: add_bos_token and
// add_eos_token (they rewrite the post-processor, as transformers' Llama tokenizers do), the BOS/EOS names
// and clean_up_tokenization_spaces.
func (t *Tokenizer) applyConfig(path string, raw []byte) error {
	var cfg struct {
		AddBOS    *bool                 `json:"add_bos_token"`
		AddEOS    *bool                 `json:"add_eos_token"`
		BOS       json.RawMessage       `json:"bos_token"`
		EOS       json.RawMessage       `json:"eos_token"`
		CleanUp   *bool                 `json:"clean_up_tokenization_spaces"`
		AddedDecs map[string]AddedToken `json:"added_tokens_decoder"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: invalid JSON: %v", path, err)
	}
	var err error
	if t.BOS, err = t.specialID(cfg.BOS); err != nil {
		return fmt.Errorf("%s: bos_token: %w", path, err)
	}
	if t.EOS, err = t.specialID(cfg.EOS); err != nil {
		return fmt.Errorf("%s: eos_token: %w", path, err)
	}
	if cfg.CleanUp != nil {
		t.CleanUpSpaces = *cfg.CleanUp
	}
	for _, a := range []struct {
		name string
		add  *bool
		id   int32
		dst  *[]int32
	}{{"bos", cfg.AddBOS, t.BOS, &t.prefix}, {"eos", cfg.AddEOS, t.EOS, &t.suffix}} {
		switch {
		case a.add == nil: // the post-processor of tokenizer.json decides
		case !*a.add:
			*a.dst = nil
		case a.id < 0:
			return fmt.Errorf("%s: add_%s_token is true but there is no %s_token", path, a.name, a.name)
		default:
			*a.dst = []int32{a.id}
		}
	}
	return nil
}

// specialID resolves a token given as a string or as {"content": ...}; null gives -1.
func (t *Tokenizer) specialID(raw json.RawMessage) (int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return -1, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(raw, &obj); err != nil {
			return -1, fmt.Errorf("want a string or an object with content")
		}
		s = obj.Content
	}
	id, ok := t.TokenID(s)
	if !ok {
		return -1, fmt.Errorf("token %q is not in the vocabulary", s)
	}
	return id, nil
}

// TokenID returns the id of a token string (vocabulary or added token).
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	for _, a := range t.added {
		if a.Content == s {
			return a.ID, true
		}
	}
	id, ok := t.model.vocab[s]
	return id, ok
}

// Token returns the string of a token id ("" when out of range).
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.idToToken) {
		return ""
	}
	return t.idToToken[id]
}

// VocabSize is one more than the largest token id.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// IsSpecial reports whether id is an added token marked special.
func (t *Tokenizer) IsSpecial(id int32) bool {
	a, ok := t.addedByID[id]
	return ok && a.Special
}

// SpecialIDs lists the ids of the special added tokens.
func (t *Tokenizer) SpecialIDs() []int32 {
	var ids []int32
	for _, a := range t.added {
		if a.Special {
			ids = append(ids, a.ID)
		}
	}
	return ids
}

// ByteTokenIDs lists the tokens that stand for single bytes: <0xXX> for byte-fallback models, the 256
// byte-level characters for byte-level ones.
func (t *Tokenizer) ByteTokenIDs() []int32 {
	var ids []int32
	for b := 0; b < 256; b++ {
		if t.byteLevel {
			if id, ok := t.model.vocab[string(byteToRune[b])]; ok {
				ids = append(ids, id)
			}
		} else if t.model.byteIDs[b] >= 0 {
			ids = append(ids, t.model.byteIDs[b])
		}
	}
	return ids
}

// LoadVocabMerges builds a GPT-2 style byte-level BPE tokenizer from vocab.json and merges.txt (the files
// of the original GPT-2 release), with <|endoftext|> as a special token when the vocabulary has it.
func LoadVocabMerges(vocabPath, mergesPath string) (*Tokenizer, error) {
	rawVocab, err := readFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("read vocabulary: %w", err)
	}
	rawMerges, err := readFile(mergesPath)
	if err != nil {
		return nil, fmt.Errorf("read merges: %w", err)
	}
	var tj tokenizerJSON
	tj.Model.Type = "BPE"
	if err := json.Unmarshal(rawVocab, &tj.Model.Vocab); err != nil {
		return nil, fmt.Errorf("%s: want a JSON object of token -> id: %v", vocabPath, err)
	}
	var lines []string
	for i, l := range strings.Split(string(rawMerges), "\n") {
		l = strings.TrimRight(l, "\r")
		if l == "" || i == 0 && strings.HasPrefix(l, "#version") {
			continue
		}
		lines = append(lines, l)
	}
	if tj.Model.Merges, err = json.Marshal(lines); err != nil {
		return nil, err
	}
	if id, ok := tj.Model.Vocab["<|endoftext|>"]; ok {
		tj.AddedTokens = []addedTokenJSON{{AddedToken: AddedToken{Content: "<|endoftext|>", Special: true}, ID: id}}
	}
	tj.PreTokenizer = json.RawMessage(`{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}`)
	tj.Decoder = json.RawMessage(`{"type": "ByteLevel"}`)
	t, err := build(&tj)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", mergesPath, err)
	}
	return t, nil
}
