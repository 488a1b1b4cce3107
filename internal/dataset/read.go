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
	// Oversize, when not 0, is the size in bytes of a record longer than the reader's limit: it was skipped
	// unparsed (Fields is nil), so that one huge line costs neither its size in memory nor the whole run.
	Oversize int64
}

// DefaultMaxRowBytes is data.max_line_bytes' default: 16 MiB holds the longest conversations of real chat
// datasets (ShareGPT's longest rows are about 1 MB; a row of max_length 1<<20 tokens is about 4 MB of
// text) while keeping a garbage line from costing more than that (decoded, a record takes about 10x its
// bytes).
const DefaultMaxRowBytes = 16 << 20

// ReadRows calls fn for every record of path, in file order. JSONL and JSON arrays (optionally gzip'd) and
// parquet files are read; a syntax error stops with the file and line. A record of more than maxRowBytes
// bytes (0: DefaultMaxRowBytes; for parquet, the bytes of its values) reaches fn unparsed, with Oversize
// set.
func ReadRows(path string, maxRowBytes int, fn func(Row) error) error {
	if maxRowBytes <= 0 {
		maxRowBytes = DefaultMaxRowBytes
	}
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
		return readParquet(path, maxRowBytes, fn)
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
		return readJSONArray(path, br, maxRowBytes, fn)
	}
	return readJSONL(path, br, maxRowBytes, fn)
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

func readJSONL(path string, br *bufio.Reader, maxRowBytes int, fn func(Row) error) error {
	for line := 1; ; line++ {
		raw, size, err := readLine(br, maxRowBytes)
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		where := fmt.Sprintf("%s:%d", path, line)
		if raw = bytes.TrimSpace(raw); size > int64(maxRowBytes) || len(raw) > 0 {
			if rerr := record(where, raw, size, maxRowBytes, fn); rerr != nil {
				return rerr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// readLine returns the next line and its length in bytes; of a line longer than max it keeps nothing,
// reading past the rest of it.
func readLine(br *bufio.Reader, max int) ([]byte, int64, error) {
	var line []byte
	var size int64
	for {
		chunk, err := br.ReadSlice('\n')
		size += int64(len(chunk))
		if size <= int64(max) {
			line = append(line, chunk...)
		} else {
			line = nil
		}
		if err != bufio.ErrBufferFull {
			return line, size, err
		}
	}
}

// readJSONArray reads the records of a JSON array one at a time: nextElement cuts each out of the stream
// without decoding it, so an oversized record is skipped at the cost of reading it.
func readJSONArray(path string, br *bufio.Reader, maxRowBytes int, fn func(Row) error) error {
	for { // up to the '[' ReadRows saw
		if c, err := br.ReadByte(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		} else if c == '[' {
			break
		}
	}
	for i := 0; ; i++ {
		raw, size, last, err := nextElement(br, maxRowBytes)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", path, i, err)
		}
		if size == 0 && last && i == 0 {
			return nil // []
		}
		where := fmt.Sprintf("%s[%d]", path, i)
		if size == 0 {
			return fmt.Errorf("%s: invalid JSON: a missing value", where)
		}
		if err := record(where, raw, size, maxRowBytes, fn); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// record hands fn the row of one record of size bytes: unparsed (Oversize) past maxRowBytes, else decoded
// from raw. fn's errors come back as they are.
func record(where string, raw []byte, size int64, maxRowBytes int, fn func(Row) error) error {
	if size > int64(maxRowBytes) {
		return fn(Row{Where: where, Oversize: size})
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("%s: %s", where, describeJSONError(err, raw))
	}
	if fields == nil {
		return fmt.Errorf("%s: want a JSON object, got null", where)
	}
	return fn(Row{Where: where, Fields: fields})
}

// nextElement reads the next value of a JSON array, after its '[' or a ',', up to and including the ',' or
// ']' that ends it. It returns the value's bytes (nil past max) and size without the surrounding space;
// last reports that a ']' ended it. The scan tracks strings and nesting only: the value itself is checked
// when it is decoded.
func nextElement(br *bufio.Reader, max int) (raw []byte, size int64, last bool, err error) {
	depth, inString, escaped := 0, false, false
	for {
		c, err := br.ReadByte()
		if err == io.EOF {
			return nil, 0, false, errors.New("unterminated JSON array")
		}
		if err != nil {
			return nil, 0, false, err
		}
		if !inString && depth == 0 && (c == ',' || c == ']') {
			trimmed := bytes.TrimRight(raw, " \t\r\n")
			return trimmed, size - int64(len(raw)-len(trimmed)), c == ']', nil
		}
		if size == 0 && (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			continue
		}
		size++
		if size <= int64(max) {
			raw = append(raw, c)
		} else {
			raw = nil
		}
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == '{' || c == '['):
			depth++
		case !inString && (c == '}' || c == ']'):
			depth--
		}
	}
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
