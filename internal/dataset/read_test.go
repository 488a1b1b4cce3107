package dataset

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func collect(t *testing.T, path string) []Row {
	t.Helper()
	var rows []Row
	if err := ReadRows(path, 0, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestReadFormats(t *testing.T) {
	dir := t.TempDir()
	jsonl := "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n"
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(jsonl))
	zw.Close()
	cases := map[string]string{
		"jsonl":      write("a.jsonl", []byte(jsonl)),
		"json array": write("a.json", []byte(" [ {\"text\": \"a\"}, {\"text\": \"b\"} ]")),
		"gzip jsonl": write("a.jsonl.gz", gz.Bytes()),
		"bom":        write("bom.jsonl", append([]byte{0xEF, 0xBB, 0xBF}, jsonl...)),
	}
	for name, path := range cases {
		rows := collect(t, path)
		if len(rows) != 2 || rows[0].Fields["text"] != "a" || rows[1].Fields["text"] != "b" {
			t.Errorf("%s: rows %v", name, rows)
		}
	}
	if rows := collect(t, cases["jsonl"]); rows[1].Where != cases["jsonl"]+":3" {
		t.Errorf("JSONL rows are named by line: %q", rows[1].Where)
	}
	if rows := collect(t, write("empty.jsonl", nil)); len(rows) != 0 {
		t.Errorf("empty file gave %d rows", len(rows))
	}
}

func TestReadErrorsNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ content, want string }{
		"bad.jsonl":  {"{\"text\": \"a\"}\n{\"text\": \"b\"\n", "bad.jsonl:2: invalid JSON"},
		"list.jsonl": {"[1, 2]\n", "want a JSON object"},
		"arr.json":   {"[{\"a\": 1}, {\"a\": ]", "arr.json[1]"},
	}
	for name, c := range cases {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(c.content), 0o644)
		err := ReadRows(p, 0, func(Row) error { return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
	if err := ReadRows(filepath.Join(dir, "missing.jsonl"), 0, func(Row) error { return nil }); err == nil {
		t.Error("missing file read")
	}
}

func TestReadParquet(t *testing.T) {
	rows := collect(t, "testdata/sharegpt_item_zstd.parquet")
	if len(rows) != 1000 {
		t.Fatalf("%d rows", len(rows))
	}
	conv, ok := rows[0].Fields["conversations"].([]any)
	if !ok || len(conv) != 2 {
		t.Fatalf("row 0 conversations = %#v", rows[0].Fields["conversations"])
	}
	turn := conv[0].(map[string]any)
	if turn["from"] != "system" || !strings.HasPrefix(turn["value"].(string), "turn 0 of row 0: héllo wörld ✓") {
		t.Errorf("row 0 turn 0 = %v", turn)
	}
	if rows[5].Fields["conversations"] != nil {
		t.Errorf("row 5 should hold a null list, got %#v", rows[5].Fields["conversations"])
	}
	if l, ok := rows[6].Fields["conversations"].([]any); !ok || len(l) != 0 {
		t.Errorf("row 6 should hold an empty list, got %#v", rows[6].Fields["conversations"])
	}
	if rows[4].Fields["tools"] == nil || rows[1].Fields["tools"] != nil {
		t.Errorf("tools: row 4 %v, row 1 %v", rows[4].Fields["tools"], rows[1].Fields["tools"])
	}
	msgs := collect(t, "testdata/messages_sample.parquet")
	if len(msgs) != 500 || msgs[499].Fields["messages"].([]any)[2].(map[string]any)["content"] != "answer 499" {
		t.Errorf("messages: %d rows, last %v", len(msgs), msgs[len(msgs)-1].Fields)
	}
	text := collect(t, "testdata/text_sample.parquet")
	if len(text) != 500 || text[7].Fields["text"] != nil || text[8].Fields["text"] != "document 8\nsome text" {
		t.Errorf("text rows: %v %v", text[7].Fields, text[8].Fields)
	}

	raw, _ := os.ReadFile("testdata/messages_sample.parquet")
	p := filepath.Join(t.TempDir(), "cut.parquet")
	os.WriteFile(p, raw[:len(raw)/2], 0o644)
	if err := ReadRows(p, 0, func(Row) error { return nil }); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("truncated parquet: %v", err)
	}
}
