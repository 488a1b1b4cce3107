// Package dataset turns conversation files into training samples: it reads JSONL, JSON and parquet files
// (gzip accepted), recognises the ShareGPT, OpenAI-messages, preformatted-text, plain-text and
// prompt/completion schemas, renders chats with the target's template, and computes assistant-only loss
// masks exactly as SpecForge does. Prepared datasets are cached as memory-mappable safetensors files.
package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Row is one raw record of a data file.
type Row struct {
	// Where names the record for messages: "file:line" for JSONL, "file[index]" for JSON arrays and parquet.
	Where  string
	Fields map[string]any
}

// ReadRows calls fn for every record of path, in file order. JSONL and JSON arrays (optionally gzip'd) and
// parquet files are read; a syntax error stops with the file and line.
func ReadRows(path string, fn func(Row) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open dataset: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case bytes.Equal(magic, []byte("PAR1")):
		f.Close()
		return readParquet(path, fn)
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	first, err := firstNonSpace(br)
	if err == io.EOF {
		return nil // an empty file has no rows
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if first == '[' {
		return readJSONArray(path, br, fn)
	}
	return readJSONL(path, br, fn)
}

func firstNonSpace(br *bufio.Reader) (byte, error) {
	for i := 0; ; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			return 0, err
		}
		if c := b[i]; c != ' ' && c != '\t' && c != '\r' && c != '\n' && !(i == 0 && c == 0xEF) {
			return c, nil
		}
		if b[i] == 0xEF { // UTF-8 byte-order mark
			if _, err := br.Discard(3); err != nil {
				return 0, err
			}
			return firstNonSpace(br)
		}
	}
}

func readJSONL(path string, br *bufio.Reader, fn func(Row) error) error {
	line := 0
	for {
		raw, err := br.ReadBytes('\n')
		if len(raw) > 0 {
			line++
			raw = bytes.TrimSpace(raw)
			if len(raw) > 0 {
				var fields map[string]any
				if jerr := json.Unmarshal(raw, &fields); jerr != nil {
					return fmt.Errorf("%s:%d: %s", path, line, describeJSONError(jerr, raw))
				}
				if fields == nil {
					return fmt.Errorf("%s:%d: want a JSON object, got null", path, line)
				}
				if ferr := fn(Row{Where: fmt.Sprintf("%s:%d", path, line), Fields: fields}); ferr != nil {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line+1, err)
		}
	}
}

func readJSONArray(path string, r io.Reader, fn func(Row) error) error {
	dec := json.NewDecoder(r)
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	for i := 0; dec.More(); i++ {
		var fields map[string]any
		if err := dec.Decode(&fields); err != nil {
			return fmt.Errorf("%s[%d]: %s", path, i, describeJSONError(err, nil))
		}
		if fields == nil {
			return fmt.Errorf("%s[%d]: want a JSON object, got null", path, i)
		}
		if err := fn(Row{Where: fmt.Sprintf("%s[%d]", path, i), Fields: fields}); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return fmt.Errorf("%s: unterminated JSON array: %v", path, err)
	}
	return nil
}

func describeJSONError(err error, raw []byte) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) && raw != nil {
		return fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("want a JSON object per record, got %s", typ.Value)
	}
	return "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
}

// ReadParagraphs returns the blank-line separated paragraphs of a text file, trimmed, empty ones left out
// (TinyStories-style text: openings for regeneration, prompts for benchmarks).
func ReadParagraphs(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read paragraphs: %w", err)
	}
	var out []string
	for _, p := range strings.Split(string(raw), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out, nil
}
