package dataset

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestOversizeRowsSkipped: a record over the limit reaches the caller unparsed, with its size, in JSONL,
// JSON arrays and parquet, and the records around it are read as usual.
func TestOversizeRowsSkipped(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 300)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path string
		oversize   []int // indices of the rows that must be skipped
		rows       int
	}{
		{"jsonl", write("a.jsonl", `{"text": "a"}`+"\n"+`{"text": "`+long+`"}`+"\n"+`{"text": "c"}`+"\n"), []int{1}, 3},
		{"jsonl without a final newline", write("b.jsonl", `{"text": "a"}`+"\n"+`{"text": "`+long+`"}`), []int{1}, 2},
		{"json array", write("a.json", `[{"text": "a"}, {"text": "`+long+`"}, {"text": "c"}]`), []int{1}, 3},
		{"json array, last", write("b.json", `[{"text": "a"},`+"\n"+`{"text": "`+long+`"} ]`), []int{1}, 2},
	}
	for _, c := range cases {
		var got []Row
		if err := ReadRows(c.path, 200, func(r Row) error { got = append(got, r); return nil }); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(got) != c.rows {
			t.Fatalf("%s: %d rows, want %d", c.name, len(got), c.rows)
		}
		for i, r := range got {
			over := false
			for _, o := range c.oversize {
				over = over || o == i
			}
			if over != (r.Oversize > 0) || over != (r.Fields == nil) {
				t.Errorf("%s: row %d oversize %d fields %v", c.name, i, r.Oversize, r.Fields)
			}
			if over && r.Oversize < int64(len(long)) {
				t.Errorf("%s: row %d oversize %d bytes, want at least %d", c.name, i, r.Oversize, len(long))
			}
		}
		if got[0].Fields["text"] != "a" {
			t.Errorf("%s: row 0 %v", c.name, got[0].Fields)
		}
		if _, err := ToSample(got[1], SchemaOptions{}); err == nil || !strings.Contains(err.Error(), "data.max_line_bytes") {
			t.Errorf("%s: oversize row: %v", c.name, err)
		}
	}
	var rows, over int
	err := ReadRows("testdata/sharegpt_item_zstd.parquet", 400, func(r Row) error {
		rows++
		if r.Oversize > 0 {
			over++
		}
		return nil
	})
	if err != nil || rows != 1000 || over == 0 || over == rows {
		t.Errorf("parquet with a 400-byte limit: %d of %d rows oversize, %v", over, rows, err)
	}
}

// TestOversizeLineMemory: a 32 MiB line costs about the limit in memory, not its size.
func TestOversizeLineMemory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.jsonl")
	big := bytes.Repeat([]byte("y"), 32<<20)
	content := append(append([]byte(`{"text": "`), big...), `"}`+"\n"+`{"text": "z"}`+"\n"...)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	big, content = nil, nil
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var got []Row
	if err := ReadRows(p, 1<<20, func(r Row) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("reading a 32 MiB line with a 1 MiB limit allocated %d MiB", alloc>>20)
	}
	if len(got) != 2 || got[0].Oversize < 32<<20 || got[1].Fields["text"] != "z" {
		t.Errorf("rows %d, first oversize %d", len(got), got[0].Oversize)
	}
}

// TestJSONArraySplitting: strings holding brackets, commas, quotes and escapes, nested values, whitespace
// and malformed arrays.
func TestJSONArraySplitting(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		content string
		texts   []string
		err     string
	}{
		{`[]`, nil, ""},
		{" [ ] ", nil, ""},
		{`[{"text": "a,]}[{\"b\\"}, {"text": "c", "n": [1, {"d": [2]}]}]`, []string{`a,]}[{"b\`, "c"}, ""},
		{"[\n  {\"text\": \"a\"}\n,\n{\"text\": \"b\"}\n]\n", []string{"a", "b"}, ""},
		{`[{"text": "a"},]`, nil, "[1]: invalid JSON: a missing value"},
		{`[{"text": "a"}, 3]`, nil, "[1]: want a JSON object"},
		{`[{"text": "a"}, null]`, nil, "[1]: want a JSON object, got null"},
		{`[{"text": "a"}`, nil, "[0]: unterminated JSON array"},
		{`[{"text": "a}]`, nil, "[0]: unterminated"},
		{`[{"text": }]`, nil, "[0]: invalid JSON"},
	}
	for i, c := range cases {
		p := filepath.Join(dir, "case.json")
		os.WriteFile(p, []byte(c.content), 0o644)
		var texts []string
		err := ReadRows(p, 0, func(r Row) error { texts = append(texts, r.Fields["text"].(string)); return nil })
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("case %d %q: got %v, want %q", i, c.content, err, c.err)
			}
			continue
		}
		if err != nil || strings.Join(texts, "|") != strings.Join(c.texts, "|") {
			t.Errorf("case %d %q: texts %q, %v", i, c.content, texts, err)
		}
	}
}

// FuzzReadRows reads arbitrary bytes as a data file (JSONL, JSON array, gzip or parquet by their first
// bytes): no panic, every record a JSON object or an oversize one, and a JSONL file's records those of
// encoding/json line by line.
func FuzzReadRows(f *testing.F) {
	f.Add([]byte(`{"text": "a"}` + "\n" + `{"conversations": [{"from": "human", "value": "hi"}]}`))
	f.Add([]byte(`[{"text": "a,]\"["}, {"n": [1, [2, {"x": "}"}]]}]`))
	f.Add([]byte("\xef\xbb\xbf[\n]"))
	if raw, err := os.ReadFile("testdata/text_sample.parquet"); err == nil && len(raw) < 64<<10 {
		f.Add(raw)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "rows")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		var got []Row
		err := ReadRows(p, 64, func(r Row) error { got = append(got, r); return nil })
		for _, r := range got {
			if (r.Oversize > 0) == (r.Fields != nil) {
				t.Fatalf("row %s: oversize %d with fields %v", r.Where, r.Oversize, r.Fields)
			}
		}
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		if err != nil || len(trimmed) == 0 || trimmed[0] != '{' {
			return
		}
		n := 0
		for _, raw := range bytes.SplitAfter(data, []byte("\n")) {
			line := bytes.TrimSpace(raw)
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			if len(raw) <= 64 && json.Unmarshal(line, &m) != nil { // the limit counts the line's newline too
				t.Fatalf("line %q was accepted but encoding/json refuses it", line)
			}
			n++
		}
		if n != len(got) {
			t.Fatalf("%d non-empty lines, %d rows", n, len(got))
		}
	})
}

// TestPrepareCountsOversizeRows: prepare rejects rows over MaxRowBytes under their own reason, with an
// example naming the line, and keeps the others.
func TestPrepareCountsOversizeRows(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "d.jsonl")
	row := func(answer string) string {
		return `{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "` + answer + `"}]}` + "\n"
	}
	os.WriteFile(data, []byte(row("short")+row(strings.Repeat("long ", 100))+row("also short")), 0o644)
	opt := qwenPrepare(t, []string{data}, filepath.Join(dir, "cache"))
	opt.MaxRowBytes = 200
	p, err := Prepare(opt)
	if err != nil {
		t.Fatal(err)
	}
	if p.Train.Samples != 2 || p.Train.Rejected[reasonTooLong] != 1 || !strings.Contains(p.Train.Examples[reasonTooLong], "d.jsonl:2") {
		t.Errorf("samples %d, rejected %v, examples %v", p.Train.Samples, p.Train.Rejected, p.Train.Examples)
	}
	opt.MaxRowBytes = 0
	if p2, err := Prepare(opt); err != nil || p2.Key == p.Key || p2.Train.Samples != 3 {
		t.Errorf("another limit must be another cache entry: %v %+v", err, p2)
	}
}
