package tensorboard

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// Event is what ReadFile decodes of an event: the fields this package writes.
type Event struct {
	WallTime     float64
	Step         int64
	FileVersion  string
	Scalars      []Scalar
	SessionStart bool
}

// ReadFile reads an event file back, checking the framing and both CRCs of every record, so that what a run
// wrote can be checked without TensorBoard. Fields it does not write are skipped.
func ReadFile(path string) ([]Event, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Event
	for off := 0; off < len(raw); {
		if len(raw)-off < 12 {
			return out, fmt.Errorf("%s: record at byte %d: truncated header", path, off)
		}
		n := binary.LittleEndian.Uint64(raw[off:])
		if binary.LittleEndian.Uint32(raw[off+8:]) != maskedCRC(raw[off:off+8]) {
			return out, fmt.Errorf("%s: record at byte %d: length CRC mismatch", path, off)
		}
		if len(raw)-off < 16 || n > uint64(len(raw)-off-16) {
			return out, fmt.Errorf("%s: record at byte %d: %d bytes, past the end of the file", path, off, n)
		}
		data := raw[off+12 : off+12+int(n)]
		if binary.LittleEndian.Uint32(raw[off+12+int(n):]) != maskedCRC(data) {
			return out, fmt.Errorf("%s: record at byte %d: data CRC mismatch", path, off)
		}
		ev, err := decodeEvent(data)
		if err != nil {
			return out, fmt.Errorf("%s: record at byte %d: %w", path, off, err)
		}
		out = append(out, ev)
		off += 16 + int(n)
	}
	return out, nil
}

// fields calls fn with each field of a message, or fails on a malformed one.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return protowire.ParseError(m)
		}
		if err := fn(num, typ, b[n:n+m]); err != nil {
			return err
		}
		b = b[n+m:]
	}
	return nil
}

func decodeEvent(b []byte) (Event, error) {
	var ev Event
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == eventWallTime && typ == protowire.Fixed64Type:
			x, _ := protowire.ConsumeFixed64(v)
			ev.WallTime = math.Float64frombits(x)
		case num == eventStep && typ == protowire.VarintType:
			x, _ := protowire.ConsumeVarint(v)
			ev.Step = int64(x)
		case num == eventFileVersion && typ == protowire.BytesType:
			s, _ := protowire.ConsumeString(v)
			ev.FileVersion = s
		case num == eventSessionLog && typ == protowire.BytesType:
			log, _ := protowire.ConsumeBytes(v)
			return fields(log, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num == sessionLogStatus && typ == protowire.VarintType {
					x, _ := protowire.ConsumeVarint(v)
					ev.SessionStart = x == sessionStart
				}
				return nil
			})
		case num == eventSummary && typ == protowire.BytesType:
			sum, _ := protowire.ConsumeBytes(v)
			return fields(sum, func(num protowire.Number, typ protowire.Type, v []byte) error {
				if num != summaryValue || typ != protowire.BytesType {
					return nil
				}
				val, _ := protowire.ConsumeBytes(v)
				var s Scalar
				if err := fields(val, func(num protowire.Number, typ protowire.Type, v []byte) error {
					switch {
					case num == valueTag && typ == protowire.BytesType:
						s.Tag, _ = protowire.ConsumeString(v)
					case num == valueSimpleValue && typ == protowire.Fixed32Type:
						x, _ := protowire.ConsumeFixed32(v)
						s.Value = float64(math.Float32frombits(x))
					}
					return nil
				}); err != nil {
					return err
				}
				ev.Scalars = append(ev.Scalars, s)
				return nil
			})
		}
		return nil
	})
	return ev, err
}
