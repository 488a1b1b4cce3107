package vocab

import (
	"strings"
	"testing"

	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/safetensors"
)

func TestGoldenVocab(t *testing.T) {
	goldentest.ForEach(t, goldentest.Vocab, func(t *testing.T, c *goldentest.Case) {
		var v, vd int
		c.Hyper(t, "vocab_size", &v)
		c.Hyper(t, "draft_vocab_size", &vd)
		ids := c.Ints(t, "inputs.safetensors", "input_ids")
		mask := c.Ints(t, "inputs.safetensors", "loss_mask")
		counter := NewCounter(v)
		ids32, m := make([]int32, len(ids)), make([]bool, len(ids))
		for i := range ids {
			ids32[i], m[i] = int32(ids[i]), mask[i] == 1
		}
		if err := counter.Add(ids32, m); err != nil {
			t.Fatal(err)
		}
		countIDs := c.Ints(t, "expected.safetensors", "count_ids")
		countValues := c.Ints(t, "expected.safetensors", "count_values")
		for i, id := range countIDs {
			if counter.Counts[id] != countValues[i] {
				t.Errorf("count of %d = %d, want %d", id, counter.Counts[id], countValues[i])
			}
		}
		mp, err := Build(counter.Counts, vd, nil)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "used", mp.Used, c.Ints(t, "expected.safetensors", "used"))
		equal(t, "d2t", mp.D2T, c.Ints(t, "expected.safetensors", "d2t"))
		t2d := c.Ints(t, "expected.safetensors", "t2d")
		for j, want := range t2d {
			if mp.T2D[j] != (want == 1) {
				t.Fatalf("t2d[%d] = %v, want %v", j, mp.T2D[j], want == 1)
			}
		}
		back, err := FromD2T(mp.D2T, v)
		if err != nil {
			t.Fatal(err)
		}
		equal(t, "used from d2t", back.Used, mp.Used)
	})
}

func equal(t *testing.T, name string, got, want []int64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %v, want %v", name, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestBuildAlwaysKeeps(t *testing.T) {
	counts := []int64{0, 0, 9, 8, 7, 6, 0, 0}
	m, err := Build(counts, 4, []int{0, 7})
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "used", m.Used, []int64{0, 2, 3, 7})
	if _, err := Build(counts, 1, []int{0, 7}); err == nil || !strings.Contains(err.Error(), "2 tokens must always be kept") {
		t.Errorf("got %v", err)
	}
	if _, err := Build(counts, 9, nil); err == nil {
		t.Error("draft larger than the target vocabulary accepted")
	}
	if _, err := FromD2T([]int64{0, -1}, 8); err == nil {
		t.Error("non-increasing d2t accepted")
	}
}

func TestWriteRead(t *testing.T) {
	m, err := Build([]int64{5, 0, 3, 3, 0, 9}, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/vocab.safetensors"
	if err := m.Write(path); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dt, _ := f.Tensor("d2t")
	tt, _ := f.Tensor("t2d")
	d2t, _ := dt.Int64()
	t2d, _ := tt.Bool()
	back, err := FromTensors(d2t, t2d, len(t2d))
	if err != nil {
		t.Fatal(err)
	}
	equal(t, "d2t", back.D2T, m.D2T)
	equal(t, "used", back.Used, []int64{0, 2, 5})
	t2d[1] = !t2d[1]
	if _, err := FromTensors(d2t, t2d, len(t2d)); err == nil {
		t.Error("a t2d that disagrees with d2t was accepted")
	}
}
