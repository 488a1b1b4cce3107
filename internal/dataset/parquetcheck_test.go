package dataset

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

type checkTurn struct {
	From  string `parquet:"from,dict"`
	Value string `parquet:"value,optional"`
}

type checkRecord struct {
	ID            string      `parquet:"id,dict"`
	Conversations []checkTurn `parquet:"conversations,list"`
	Flag          bool        `parquet:"flag"`
}

// TestParquetPageCheck: files parquet-go writes (data pages v1 and v2, every codec, dictionary-encoded and
// nested columns, pages of a few rows) pass the page check and read back in full, and a page whose
// dictionary-index run claims more values than the page holds is refused with an error naming the column,
// before any buffer is sized from it.
func TestParquetPageCheck(t *testing.T) {
	var records []checkRecord
	for i := 0; i < 300; i++ {
		records = append(records, checkRecord{ID: fmt.Sprint("src", i%3), Flag: i%2 == 0, Conversations: []checkTurn{
			{From: "human", Value: strings.Repeat("q", i%17)}, {From: "gpt", Value: fmt.Sprint("answer ", i)}}})
	}
	dir := t.TempDir()
	for _, version := range []int{1, 2} {
		for _, codec := range []compress.Codec{&parquet.Uncompressed, &parquet.Snappy, &parquet.Gzip, &parquet.Zstd, &parquet.Lz4Raw} {
			var buf bytes.Buffer
			w := parquet.NewGenericWriter[checkRecord](&buf, parquet.DataPageVersion(version), parquet.Compression(codec),
				parquet.PageBufferSize(512))
			if _, err := w.Write(records); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, fmt.Sprintf("v%d_%s.parquet", version, codec))
			if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			rows := collect(t, p)
			if len(rows) != len(records) {
				t.Fatalf("%s: %d rows, want %d", p, len(rows), len(records))
			}
			if got := rows[299].Fields["id"]; got != "src2" {
				t.Fatalf("%s: row 299 id %v", p, got)
			}
		}
	}

	// An uncompressed v1 file whose only data page of the dictionary-encoded column is one run: inflate it.
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[struct {
		ID string `parquet:"id,dict"`
	}](&buf, parquet.DataPageVersion(1), parquet.Compression(&parquet.Uncompressed))
	for i := 0; i < 64; i++ {
		if _, err := w.Write([]struct {
			ID string `parquet:"id,dict"`
		}{{ID: "same"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	// The data page ends with the indices: bit width 0 (one dictionary entry), then the run header 64<<1 as
	// the uvarint 80 01. Rewrite it as 80 7f, a run of 8128 values, in the same number of bytes.
	at := bytes.LastIndex(raw, []byte{0, 0x80, 0x01})
	if at < 0 {
		t.Fatalf("no run of 64 found in %x", raw)
	}
	bad := bytes.Clone(raw)
	bad[at+2] = 0x7f
	p := filepath.Join(dir, "inflated.parquet")
	if err := os.WriteFile(p, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	err := ReadRows(p, 0, func(Row) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "id") {
		t.Fatalf("inflated run: err %v, want an error naming column id", err)
	}
	t.Log(err)
}
