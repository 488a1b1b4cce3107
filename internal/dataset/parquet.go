package dataset

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// readParquet streams the rows of a parquet file (as Hugging Face datasets store them: pyarrow's nested
// LIST and struct columns) one row group and one page at a time.
func readParquet(path string, maxRowBytes int, fn func(Row) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open dataset: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	size := st.Size()
	// Check the footer before parquet-go sizes a buffer from a possibly garbage length.
	var tail [8]byte
	if size < 12 {
		return fmt.Errorf("%s: not a parquet file (%d bytes)", path, size)
	}
	if _, err := f.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if string(tail[4:]) != "PAR1" {
		return fmt.Errorf("%s: parquet footer missing (truncated file?)", path)
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-12 {
		return fmt.Errorf("%s: parquet footer length %d exceeds the file size %d (truncated file?)", path, n, size)
	}
	callerErr := false
	defer func() {
		// parquet-go panics on some damaged pages; the library starts no goroutines in this mode, so the
		// panic is ours to turn into an error.
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: corrupt parquet file: %v", path, r)
		} else if err != nil && !callerErr {
			err = fmt.Errorf("%s: %w", path, err)
		}
	}()
	pf, err := parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return err
	}
	if err := checkParquetPages(f, size, pf); err != nil {
		return err
	}
	schema := pf.Schema()
	rows := make([]parquet.Row, 256)
	index := 0
	for gi, rg := range pf.RowGroups() {
		rr := rg.Rows()
		for {
			n, rerr := rr.ReadRows(rows)
			for i := 0; i < n; i++ {
				where := fmt.Sprintf("%s[%d]", path, index)
				if size := rowBytes(rows[i]); size > int64(maxRowBytes) {
					index++
					if err := fn(Row{Where: where, Oversize: size}); err != nil {
						callerErr = true
						rr.Close()
						return err
					}
					continue
				}
				m := map[string]any{}
				if err := schema.Reconstruct(&m, rows[i]); err != nil {
					rr.Close()
					return fmt.Errorf("row group %d: %w", gi, err)
				}
				if err := fn(Row{Where: where, Fields: m}); err != nil {
					rr.Close()
					callerErr = true
					return err
				}
				index++
			}
			if rerr != nil {
				rr.Close()
				if errors.Is(rerr, io.EOF) {
					break
				}
				return fmt.Errorf("row group %d: %w", gi, rerr)
			}
		}
	}
	return nil
}

// rowBytes is the size of a row's values: the bytes of its strings, 8 for anything else.
func rowBytes(row parquet.Row) int64 {
	var n int64
	for _, v := range row {
		n += 8
		if k := v.Kind(); (k == parquet.ByteArray || k == parquet.FixedLenByteArray) && !v.IsNull() {
			n += int64(len(v.ByteArray()))
		}
	}
	return n
}
