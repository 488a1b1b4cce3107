package tensorboard

import (
	"encoding/json"
	"hash/crc32"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The CRC is CRC-32C (its standard check value) masked as TFRecord masks it.
func TestMaskedCRC(t *testing.T) {
	c := crc32.Checksum([]byte("123456789"), castagnoli)
	if c != 0xe3069283 {
		t.Fatalf("crc32c check value %#x, want 0xe3069283", c)
	}
	if got, want := maskedCRC([]byte("123456789")), (c>>15|c<<17)+0xa282ead8; got != want {
		t.Fatalf("masked %#x, want %#x", got, want)
	}
}

func write(t *testing.T, dir string, resumedAt int, steps []int, scale float64) string {
	t.Helper()
	w, err := Create(dir, resumedAt)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if err := w.Scalars(s, []Scalar{{"train/loss", scale * float64(s)}, {"train/acc_0", 0.1}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Path
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, 0, []int{1, 2, 3}, 1.5)
	if !regexp.MustCompile(`^events\.out\.tfevents\.\d{10}\..+\.\d+$`).MatchString(filepath.Base(path)) {
		t.Errorf("file name %s", filepath.Base(path))
	}
	evs, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 || evs[0].FileVersion != FileVersion || evs[0].WallTime < 1e9 {
		t.Fatalf("events %+v", evs)
	}
	for i, ev := range evs[1:] {
		want := []Scalar{{"train/loss", 1.5 * float64(i+1)}, {"train/acc_0", float64(float32(0.1))}}
		if ev.Step != int64(i+1) || !slices.Equal(ev.Scalars, want) || ev.SessionStart {
			t.Errorf("event %d: %+v, want step %d %v", i+1, ev, i+1, want)
		}
	}
	raw, _ := os.ReadFile(path)
	for _, at := range []int{3, len(raw) - 30} { // a length byte, a data byte
		bad := slices.Clone(raw)
		bad[at] ^= 0x10
		os.WriteFile(path, bad, 0o644)
		if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "CRC mismatch") || !strings.Contains(err.Error(), path) {
			t.Errorf("flipped byte %d: %v", at, err)
		}
	}
	os.WriteFile(path, raw[:len(raw)-3], 0o644)
	if _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), "past the end") {
		t.Errorf("torn last record: %v", err)
	}
}

// A resumed run writes a second file that starts with a SessionLog START one step after the checkpoint.
func TestResumedFile(t *testing.T) {
	dir := t.TempDir()
	first := write(t, dir, 0, []int{1, 2, 3, 4}, 1)
	second := write(t, dir, 2, []int{3, 4, 5}, 10)
	if first == second {
		t.Fatal("the resumed run reused the file")
	}
	names, _ := filepath.Glob(filepath.Join(dir, "events.out.tfevents.*"))
	slices.Sort(names)
	if !slices.Equal(names, []string{first, second}) {
		t.Fatalf("files %v: the resumed run's must sort last", names)
	}
	evs, err := ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].FileVersion != FileVersion || !evs[1].SessionStart || evs[1].Step != 3 || evs[2].Step != 3 {
		t.Fatalf("resumed file: %+v", evs)
	}
}

// TestTensorBoardReads reads the files with TensorBoard's own EventAccumulator, when tensorboard is installed
// (skipped otherwise): the scalars, and the resumed run's values replacing the ones logged after its checkpoint.
func TestTensorBoardReads(t *testing.T) {
	if err := exec.Command("python3", "-c", "import tensorboard").Run(); err != nil {
		t.Skip("SKIPPED: python3 with the tensorboard package is not installed")
	}
	dir := t.TempDir()
	write(t, dir, 0, []int{1, 2, 3, 4}, 1)
	write(t, dir, 2, []int{3, 4, 5}, 10)
	script := `
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1])
acc.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}))
`
	cmd := exec.Command("python3", "-c", script, dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	var got map[string][][2]float64
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := [][2]float64{{1, 1}, {2, 2}, {3, 30}, {4, 40}, {5, 50}}
	if !slices.Equal(got["train/loss"], want) {
		t.Errorf("train/loss %v, want %v", got["train/loss"], want)
	}
	if a := got["train/acc_0"]; len(a) != 5 || math.Abs(a[0][1]-0.1) > 1e-7 {
		t.Errorf("train/acc_0 %v", a)
	}
}
