package dataset

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"slices"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// Limits on one parquet data page. parquet-go sizes its buffers from the counts a page declares (the page
// header's value count, each run of an RLE/bit-packed run) without checking them against each other, so a
// few hundred bytes can ask for gigabytes. checkParquetPages walks every page first and refuses a file
// whose counts disagree. pyarrow writes data pages of about 1 MiB (its default page size); these limits
// sit far above that.
const (
	maxPageValues = 1 << 24
	maxPageBytes  = 1 << 28
)

// checkParquetPages reads the header of every page of every column chunk and, for data pages, checks that
// the run-length encoded repetition levels, definition levels and dictionary indices hold no more values
// than the page says it has.
func checkParquetPages(r io.ReaderAt, size int64, pf *parquet.File) error {
	schema := pf.Schema()
	for gi, rg := range pf.Metadata().RowGroups {
		for ci, cc := range rg.Columns {
			md := cc.MetaData
			leaf, ok := schema.Lookup(md.PathInSchema...)
			if !ok {
				return fmt.Errorf("row group %d column %d: path %v is not in the schema", gi, ci, md.PathInSchema)
			}
			start := md.DataPageOffset
			if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
				start = md.DictionaryPageOffset
			}
			if start < 4 || md.TotalCompressedSize < 0 || md.TotalCompressedSize > size-start {
				return fmt.Errorf("row group %d column %d: chunk at %d of %d bytes lies outside the file (%d bytes)",
					gi, ci, start, md.TotalCompressedSize, size)
			}
			chunk := chunkPages{
				r: io.NewSectionReader(r, start, md.TotalCompressedSize), codec: parquet.LookupCompressionCodec(md.Codec),
				repBits: levelBits(leaf.MaxRepetitionLevel), defBits: levelBits(leaf.MaxDefinitionLevel),
			}
			if err := chunk.check(); err != nil {
				return fmt.Errorf("row group %d column %s: %w", gi, leaf.Path, err)
			}
		}
	}
	return nil
}

type chunkPages struct {
	r                *io.SectionReader
	codec            compress.Codec
	repBits, defBits int
}

func (c *chunkPages) check() error {
	br := bufio.NewReader(c.r)
	protocol := &thrift.CompactProtocol{}
	var page, plain []byte
	for n := 0; ; n++ {
		if _, err := br.Peek(1); err == io.EOF {
			return nil
		}
		var h format.PageHeader
		if err := thrift.NewDecoder(protocol.NewReader(br)).Decode(&h); err != nil {
			return fmt.Errorf("page %d: header: %w", n, err)
		}
		if h.CompressedPageSize < 0 || h.UncompressedPageSize < 0 || h.UncompressedPageSize > maxPageBytes ||
			h.CompressedPageSize > maxPageBytes {
			return fmt.Errorf("page %d: sizes %d compressed, %d uncompressed (at most %d)", n,
				h.CompressedPageSize, h.UncompressedPageSize, maxPageBytes)
		}
		page = slices.Grow(page[:0], int(h.CompressedPageSize))[:h.CompressedPageSize]
		if _, err := io.ReadFull(br, page); err != nil {
			return fmt.Errorf("page %d: %d bytes: %w", n, h.CompressedPageSize, err)
		}
		var err error
		switch h.Type {
		case format.DataPage:
			if !h.DataPageHeader.Valid {
				return fmt.Errorf("page %d: data page without its header", n)
			}
			if plain, err = c.decompress(plain[:0], page, h.UncompressedPageSize); err == nil {
				err = c.checkV1(&h.DataPageHeader.V, plain)
			}
		case format.DataPageV2:
			if !h.DataPageHeaderV2.Valid {
				return fmt.Errorf("page %d: data page without its header", n)
			}
			err = c.checkV2(&h.DataPageHeaderV2.V, page, h.UncompressedPageSize)
		}
		if err != nil {
			return fmt.Errorf("page %d: %w", n, err)
		}
	}
}

func (c *chunkPages) decompress(dst, src []byte, want int32) ([]byte, error) {
	if c.codec.CompressionCodec() == format.Uncompressed {
		return append(dst, src...), nil
	}
	out, err := c.codec.Decode(dst, src)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) > int(want) {
		return nil, fmt.Errorf("decompressed to %d bytes, the header says %d", len(out), want)
	}
	return out, nil
}

func (c *chunkPages) checkV1(h *format.DataPageHeader, data []byte) error {
	values := int64(h.NumValues)
	if values < 0 || values > maxPageValues {
		return fmt.Errorf("%d values (at most %d)", values, maxPageValues)
	}
	for _, lv := range []struct {
		bits int
		enc  format.Encoding
	}{{c.repBits, h.RepetitionLevelEncoding}, {c.defBits, h.DefinitionLevelEncoding}} {
		if lv.bits == 0 {
			continue
		}
		if lv.enc != format.RLE {
			return nil // legacy BIT_PACKED levels: sized by the value count, nothing to check
		}
		if len(data) < 4 {
			return fmt.Errorf("levels: %w", io.ErrUnexpectedEOF)
		}
		n := int64(binary.LittleEndian.Uint32(data))
		if n > int64(len(data)-4) {
			return fmt.Errorf("levels of %d bytes in %d", n, len(data)-4)
		}
		if err := checkRuns(data[4:4+n], lv.bits, values); err != nil {
			return fmt.Errorf("levels: %w", err)
		}
		data = data[4+n:]
	}
	return checkValues(h.Encoding, data, values)
}

func (c *chunkPages) checkV2(h *format.DataPageHeaderV2, page []byte, uncompressed int32) error {
	values := int64(h.NumValues)
	if values < 0 || values > maxPageValues || h.NumNulls < 0 || h.NumRows < 0 {
		return fmt.Errorf("%d values, %d nulls, %d rows (at most %d values)", values, h.NumNulls, h.NumRows, maxPageValues)
	}
	rep, def := int64(h.RepetitionLevelsByteLength), int64(h.DefinitionLevelsByteLength)
	if rep < 0 || def < 0 || rep+def > int64(len(page)) {
		return fmt.Errorf("levels of %d and %d bytes in a page of %d", rep, def, len(page))
	}
	if err := checkRuns(page[:rep], c.repBits, values); c.repBits > 0 && err != nil {
		return fmt.Errorf("repetition levels: %w", err)
	}
	if err := checkRuns(page[rep:rep+def], c.defBits, values); c.defBits > 0 && err != nil {
		return fmt.Errorf("definition levels: %w", err)
	}
	data := page[rep+def:]
	if !h.IsCompressed.Valid || h.IsCompressed.V {
		var err error
		if data, err = c.decompress(nil, data, uncompressed-int32(rep+def)); err != nil {
			return err
		}
	}
	return checkValues(h.Encoding, data, values)
}

// checkValues checks the encodings whose decoding parquet-go sizes from counts inside the data.
func checkValues(enc format.Encoding, data []byte, values int64) error {
	switch enc {
	case format.RLEDictionary, format.PlainDictionary:
		if len(data) == 0 {
			return nil
		}
		if err := checkRuns(data[1:], int(data[0]), values); err != nil {
			return fmt.Errorf("dictionary indices: %w", err)
		}
	case format.RLE: // booleans, behind a 4-byte length
		if len(data) < 4 {
			return nil
		}
		n := int64(binary.LittleEndian.Uint32(data))
		if n > int64(len(data)-4) {
			return fmt.Errorf("booleans of %d bytes in %d", n, len(data)-4)
		}
		if err := checkRuns(data[4:4+n], 1, values); err != nil {
			return fmt.Errorf("booleans: %w", err)
		}
	}
	return nil
}

// checkRuns walks an RLE/bit-packed hybrid stream of width-bit values and fails when its runs hold more than
// values values (bit-packed groups of eight may pad the last few).
func checkRuns(data []byte, width int, values int64) error {
	if width > 32 {
		return fmt.Errorf("bit width %d", width)
	}
	var total int64
	for len(data) > 0 {
		header, n := binary.Uvarint(data)
		if n <= 0 {
			return fmt.Errorf("bad run header")
		}
		data = data[n:]
		count := int64(header >> 1)
		if header>>1 > 1<<40 {
			count = 1 << 40
		}
		var skip int64
		if header&1 == 1 {
			skip = count * int64(width)
			count *= 8
		} else {
			skip = int64((width + 7) / 8)
		}
		if total += count; total > values+8 {
			return fmt.Errorf("runs hold %d or more values, the page has %d", total, values)
		}
		if skip > int64(len(data)) {
			return nil // truncated: parquet-go reports it
		}
		data = data[skip:]
	}
	return nil
}

// levelBits is the bit width of levels up to max.
func levelBits(max int) int { return bits.Len(uint(max)) }
