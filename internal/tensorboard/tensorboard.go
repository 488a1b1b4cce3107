// Package tensorboard writes training scalars as TensorBoard event files: TFRecord framing (length, masked
// CRC-32C of the length, the record, masked CRC-32C of the record) around tensorflow.Event protos.
//
// The three messages needed (Event, Summary with its Value, SessionLog) are encoded with protowire, the wire
// layer of google.golang.org/protobuf, from the field numbers of tensorflow/core/util/event.proto and
// tensorflow/core/framework/summary.proto: generated code would need protoc and protoc-gen-go in the build
// and a copy of TensorFlow's .proto files, for a dozen fields that have not changed since 2016.
package tensorboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the messages written (tensorflow.Event, Summary, Summary.Value, SessionLog).
const (
	eventWallTime    = 1 // double
	eventStep        = 2 // int64
	eventFileVersion = 3 // string
	eventSummary     = 5 // Summary
	eventSessionLog  = 7 // SessionLog

	summaryValue = 1 // repeated Value

	valueTag         = 1 // string
	valueSimpleValue = 2 // float

	sessionLogStatus = 1 // enum SessionStatus
	sessionStart     = 1 // SessionLog.START
)

// maxSameNameFiles bounds the suffixes tried for event files of one second and process: runs restart far
// less often than that.
const maxSameNameFiles = 100

// FileVersion is the first event of every file, as TensorFlow and PyTorch write it.
const FileVersion = "brain.Event:2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maskedCRC is TFRecord's CRC-32C, rotated and offset so that CRCs of data holding CRCs stay strong.
func maskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return (c>>15 | c<<17) + 0xa282ead8
}

// Scalar is one tagged value of a summary.
type Scalar struct {
	Tag   string
	Value float64
}

// Writer appends events to one new event file.
type Writer struct {
	f    *os.File
	Path string
}

// Create starts a new event file in dir, named events.out.tfevents.<unix time>.<host>.<pid> (the pid, as
// PyTorch's SummaryWriter adds it, keeps a restart within the same second from reusing the name). A run
// resumed after step resumedAt (> 0) first writes a SessionLog START at resumedAt+1: TensorBoard then drops
// the events at later steps that an earlier file holds (logged after the checkpoint the run resumed from,
// and logged again now), as PyTorch's purge_step does.
func Create(dir string, resumedAt int) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	host, err := os.Hostname()
	if err != nil {
		host = "localhost"
	}
	now := time.Now()
	base := filepath.Join(dir, fmt.Sprintf("events.out.tfevents.%010d.%s.%d", now.Unix(), host, os.Getpid()))
	// A second file of the same second and process (a run restarted in-process) takes a suffix, which sorts
	// after the first: TensorBoard reads a folder's files in name order.
	var f *os.File
	path := base
	for i := 1; ; i++ {
		if f, err = os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i == maxSameNameFiles {
			return nil, fmt.Errorf("create event file: %w", err)
		}
		path = fmt.Sprintf("%s.%d", base, i)
	}
	w := &Writer{f: f, Path: path}
	wall := seconds(now)
	ev := protowire.AppendTag(nil, eventWallTime, protowire.Fixed64Type)
	ev = protowire.AppendFixed64(ev, math.Float64bits(wall))
	ev = protowire.AppendTag(ev, eventFileVersion, protowire.BytesType)
	ev = protowire.AppendString(ev, FileVersion)
	err = w.write(ev)
	if err == nil && resumedAt > 0 {
		ev = eventHeader(nil, wall, int64(resumedAt)+1)
		var log []byte
		log = protowire.AppendTag(log, sessionLogStatus, protowire.VarintType)
		log = protowire.AppendVarint(log, sessionStart)
		ev = protowire.AppendTag(ev, eventSessionLog, protowire.BytesType)
		ev = protowire.AppendBytes(ev, log)
		err = w.write(ev)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func seconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func eventHeader(b []byte, wall float64, step int64) []byte {
	b = protowire.AppendTag(b, eventWallTime, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, math.Float64bits(wall))
	b = protowire.AppendTag(b, eventStep, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(step))
}

// Scalars writes one event at step holding the values, at the current wall time.
func (w *Writer) Scalars(step int, values []Scalar) error {
	var sum []byte
	for _, s := range values {
		var v []byte
		v = protowire.AppendTag(v, valueTag, protowire.BytesType)
		v = protowire.AppendString(v, s.Tag)
		v = protowire.AppendTag(v, valueSimpleValue, protowire.Fixed32Type)
		v = protowire.AppendFixed32(v, math.Float32bits(float32(s.Value)))
		sum = protowire.AppendTag(sum, summaryValue, protowire.BytesType)
		sum = protowire.AppendBytes(sum, v)
	}
	ev := eventHeader(nil, seconds(time.Now()), int64(step))
	ev = protowire.AppendTag(ev, eventSummary, protowire.BytesType)
	ev = protowire.AppendBytes(ev, sum)
	return w.write(ev)
}

// write frames one record. The whole frame goes in one write, so that a killed run leaves at most a torn
// last record, which TensorBoard skips.
func (w *Writer) write(data []byte) error {
	frame := make([]byte, 12, 16+len(data))
	binary.LittleEndian.PutUint64(frame, uint64(len(data)))
	binary.LittleEndian.PutUint32(frame[8:], maskedCRC(frame[:8]))
	frame = append(frame, data...)
	frame = binary.LittleEndian.AppendUint32(frame, maskedCRC(data))
	if _, err := w.f.Write(frame); err != nil {
		return fmt.Errorf("write %s: %w", w.Path, err)
	}
	return nil
}

// Close closes the file.
func (w *Writer) Close() error { return w.f.Close() }
