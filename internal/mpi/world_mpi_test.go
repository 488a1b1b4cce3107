//go:build mpi && cgo

package mpi

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// The helpers run as ranks under mpirun (TestRanksOnMPI launches them).
func helperWorld(t *testing.T) Comm {
	if os.Getenv("SPECFORGE_MPI_HELPER") != "1" {
		t.Skip("a rank of TestRanksOnMPI")
	}
	c, err := World()
	if err != nil {
		t.Fatal(err)
	}
	if c.Size() != 2 {
		t.Fatalf("world of %d ranks, want 2", c.Size())
	}
	return c
}

func TestHelperCollectives(t *testing.T) {
	c := helperWorld(t)
	defer Finish(0, false)
	r := c.Rank()
	f := []float32{float32(r + 1), float32(10 * r)}
	if err := c.AllreduceF32(f); err != nil || !slices.Equal(f, []float32{3, 10}) {
		t.Errorf("rank %d: AllreduceF32 = %v, %v; want [3 10]", r, f, err)
	}
	g := []float64{float64(r), -float64(r)}
	if err := c.AllreduceF64(g, Max); err != nil || !slices.Equal(g, []float64{1, 0}) {
		t.Errorf("rank %d: AllreduceF64 max = %v, %v; want [1 0]", r, g, err)
	}
	all, err := c.Allgather([]byte(strings.Repeat("x", r*3)))
	if err != nil || len(all) != 2 || string(all[0]) != "" || string(all[1]) != "xxx" {
		t.Errorf("rank %d: Allgather = %q, %v; want [\"\" xxx]", r, all, err)
	}
	// Vector collectives over 5 values: rank 0's part is [0, 2), rank 1's [2, 5).
	lo, hi := Part(5, r, 2)
	v := []float32{float32(r + 1), float32(r + 1), float32(r + 1), float32(r + 1), float32(r + 1)}
	recv := make([]float32, hi-lo)
	if err := c.ReduceScatterF32(v, recv); err != nil || !slices.Equal(recv, slices.Repeat([]float32{3}, hi-lo)) {
		t.Errorf("rank %d: ReduceScatterF32 = %v, %v; want %d threes", r, recv, err, hi-lo)
	}
	want := []float32{0, 1, 12, 13, 14}
	v = []float32{-1, -1, -1, -1, -1}
	copy(v[lo:hi], want[lo:hi])
	if err := c.AllgatherF32(v); err != nil || !slices.Equal(v, want) {
		t.Errorf("rank %d: AllgatherF32 = %v, %v; want %v", r, v, err, want)
	}
	part := slices.Clone(want[lo:hi])
	if r == 0 {
		part = []float32{0, 1, -1, -1, -1}
	}
	if err := c.GatherF32(part, 5, 0); err != nil || r == 0 && !slices.Equal(part, want) {
		t.Errorf("rank %d: GatherF32 = %v, %v; want %v on rank 0", r, part, err, want)
	}
	b := []byte{byte(r), byte(r)}
	if err := c.Bcast(b, 1); err != nil || !slices.Equal(b, []byte{1, 1}) {
		t.Errorf("rank %d: Bcast from 1 = %v, %v; want [1 1]", r, b, err)
	}
}

func TestHelperStall(t *testing.T) {
	c := helperWorld(t)
	c.SetTimeout(2 * time.Second)
	if c.Rank() == 1 {
		time.Sleep(90 * time.Second) // never joins; the watchdog of rank 0 aborts the job first
	}
	c.AllreduceF32([]float32{1})
	t.Errorf("rank %d: the collective returned", c.Rank())
}
