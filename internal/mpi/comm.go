// Package mpi holds the communicator of data-parallel training and gen-hidden: the ranks of a job
// launched by mpirun or srun, and the collectives training needs (sum all-reduce of the gradients, metrics,
// agreement checks at start). The default build has only the single process (Single: world size 1, every
// collective the identity); a build with -tags mpi (and cgo) links libmpi and joins the MPI world when
// launched by mpirun or srun. Every collective of the MPI world runs under a watchdog that aborts the job
// when it does not complete in time, so that a rank that dies or hangs never leaves the others waiting
// forever.
package mpi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// Op is the reduction of AllreduceF64.
type Op int

const (
	// Sum adds the ranks' values.
	Sum Op = iota
	// Max keeps the largest.
	Max
)

// Comm is a group of ranks that run the same program on their own part of the data. Every rank must call
// the same collectives in the same order with buffers of the same length.
type Comm interface {
	Rank() int
	Size() int
	// AllreduceF32 replaces buf on every rank by the sum over the ranks.
	AllreduceF32(buf []float32) error
	// AllreduceF64 replaces buf on every rank by the reduction op over the ranks.
	AllreduceF64(buf []float64, op Op) error
	// Allgather returns every rank's b, indexed by rank (each rank may give a different length).
	Allgather(b []byte) ([][]byte, error)
	// Bcast copies root's buf into buf on every rank (buf has the same length everywhere).
	Bcast(buf []byte, root int) error
	// ReduceScatterF32 sums buf (the same length on every rank) over the ranks and leaves on rank r the
	// sum of its part, buf[Part(len(buf), r, Size())], in recv.
	ReduceScatterF32(buf, recv []float32) error
	// AllgatherF32 fills buf on every rank with each rank r's part buf[Part(len(buf), r, Size())].
	AllgatherF32(buf []float32) error
	// GatherF32 collects n values on root: each rank r gives its part, Part(n, r, Size()), which is buf on
	// a rank but root and buf[Part(n, root, Size())] on root, whose buf holds all n.
	GatherF32(buf []float32, n, root int) error
	// SetTimeout bounds each later collective (0: no bound) and returns the bound before.
	SetTimeout(d time.Duration) time.Duration
	// Abort ends every rank of the job with the exit status code.
	Abort(code int)
}

// Single is the communicator of a process that is its own world: rank 0 of 1, every collective the
// identity.
type Single struct{}

func (Single) Rank() int                                  { return 0 }
func (Single) Size() int                                  { return 1 }
func (Single) AllreduceF32([]float32) error               { return nil }
func (Single) AllreduceF64([]float64, Op) error           { return nil }
func (Single) Allgather(b []byte) ([][]byte, error)       { return [][]byte{bytes.Clone(b)}, nil }
func (Single) Bcast([]byte, int) error                    { return nil }
func (Single) ReduceScatterF32(buf, recv []float32) error { copy(recv, buf); return nil }
func (Single) AllgatherF32([]float32) error               { return nil }
func (Single) GatherF32([]float32, int, int) error        { return nil }
func (Single) SetTimeout(time.Duration) time.Duration     { return 0 }
func (Single) Abort(code int)                             { os.Exit(code) }

var (
	worldOnce sync.Once
	world     Comm
	worldErr  error
)

// World is this process's communicator: the MPI world when the binary is built with -tags mpi and launched
// by mpirun or srun, else Single. A binary built without MPI that finds itself one of several ranks of a
// launch says so instead of training alone.
func World() (Comm, error) {
	worldOnce.Do(func() { world, worldErr = openWorld() })
	return world, worldErr
}

// launchedRanks is the world size a launcher announces in the environment (0 when not launched by one):
// Open MPI's mpirun, and srun's PMI.
func launchedRanks() int {
	for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"} {
		if n, err := strconv.Atoi(os.Getenv(v)); err == nil && n > 0 {
			return n
		}
	}
	return 0
}

// errNoMPI is the error of a build without MPI launched as one rank of several.
func errNoMPI(n int) error {
	return fmt.Errorf("this specforge was built without MPI but was launched as one of %d ranks (mpirun or srun): each rank would train alone; build it with `go build -tags mpi ./cmd/specforge` (README, \"Data parallel on MPI\")", n)
}

// Finish ends this process's part of the MPI world before it exits with status: a failed rank aborts the
// whole job (the others may be waiting on it in a collective), one that finished or stopped with the others
// (an interruption they agreed on) leaves the world cleanly. It does nothing when World was never called or
// is Single.
func Finish(status int, failed bool) {
	if world == nil {
		return
	}
	if f, ok := world.(interface{ finish(int, bool) }); ok {
		f.finish(status, failed)
	}
}

// Allgather's wire format: each rank's bytes are sent padded to the longest, after their length.
func gatherFixed(c interface {
	allgatherFixed(send []byte, each int) ([]byte, error)
	Size() int
}, b []byte) ([][]byte, error) {
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
	lens, err := c.allgatherFixed(n[:], 8)
	if err != nil {
		return nil, err
	}
	longest := 0
	for r := 0; r < c.Size(); r++ {
		longest = max(longest, int(binary.LittleEndian.Uint64(lens[r*8:])))
	}
	padded := make([]byte, longest)
	copy(padded, b)
	all, err := c.allgatherFixed(padded, longest)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, c.Size())
	for r := range out {
		out[r] = all[r*longest : r*longest+int(binary.LittleEndian.Uint64(lens[r*8:]))]
	}
	return out, nil
}

// RankPrefix is "rank R of N: " in a process of a world of several ranks (for its messages), else "".
func RankPrefix() string {
	if world == nil || world.Size() == 1 {
		return ""
	}
	return fmt.Sprintf("rank %d of %d: ", world.Rank(), world.Size())
}

// Part is the range [lo, hi) of rank r's part of n elements split over size ranks, as even as can be.
func Part(n, r, size int) (lo, hi int) { return r * n / size, (r + 1) * n / size }

// parts are the counts and offsets of every rank's part of n elements, as C ints; an error when n is more
// than one collective moves.
func parts(n, size int) (counts, displs []int, err error) {
	if n > maxCollective {
		return nil, nil, fmt.Errorf("a tensor of %d elements is more than one MPI collective moves (%d)", n, maxCollective)
	}
	for r := range size {
		lo, hi := Part(n, r, size)
		counts, displs = append(counts, hi-lo), append(displs, lo)
	}
	return counts, displs, nil
}

// maxCollective bounds the elements of a vector collective (counts and offsets are C ints).
const maxCollective = 1<<31 - 1
