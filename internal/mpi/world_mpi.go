//go:build mpi && cgo

package mpi

/*
#cgo pkg-config: mpi
#include <stdlib.h>
#include <mpi.h>

// Open MPI's handles are macros over its globals: cgo reaches them through these helpers.
static int sf_init(int *provided) {
	int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, provided);
	if (rc == MPI_SUCCESS) {
		MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	}
	return rc;
}
static int sf_rank(int *r) { return MPI_Comm_rank(MPI_COMM_WORLD, r); }
static int sf_size(int *n) { return MPI_Comm_size(MPI_COMM_WORLD, n); }
static int sf_allreduce_f32(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int sf_allreduce_f64(double *buf, int n, int max) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, max ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD);
}
static int sf_allgather(void *send, int each, void *recv) {
	return MPI_Allgather(send, each, MPI_BYTE, recv, each, MPI_BYTE, MPI_COMM_WORLD);
}
static int sf_bcast(void *buf, int n, int root) { return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD); }
static int sf_reduce_scatter_f32(float *send, float *recv, int *counts) {
	return MPI_Reduce_scatter(send, recv, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}
static int sf_allgatherv_f32(float *buf, int *counts, int *displs) {
	return MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, MPI_COMM_WORLD);
}
static int sf_gatherv_f32(float *buf, int *counts, int *displs, int root, int rank) {
	if (rank == root) {
		return MPI_Gatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_FLOAT, root, MPI_COMM_WORLD);
	}
	return MPI_Gatherv(buf, counts[rank], MPI_FLOAT, NULL, NULL, NULL, MPI_FLOAT, root, MPI_COMM_WORLD);
}
static void sf_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
static int sf_finalize(void) { return MPI_Finalize(); }
static int sf_error_string(int code, char *s) { int n; MPI_Error_string(code, s, &n); return n; }
*/
import "C"

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Built reports whether this binary can join an MPI world (-tags mpi, cgo).
const Built = true

// DefaultTimeout bounds a collective until SetTimeout says otherwise.
const DefaultTimeout = 10 * time.Minute

// maxCount is the most elements one MPI call moves (its counts are C ints).
const maxCount = 1 << 28

type mpiWorld struct {
	rank, size int
	timeout    atomic.Int64 // nanoseconds
}

func openWorld() (Comm, error) {
	if launchedRanks() == 0 && os.Getenv("PMIX_RANK") == "" && os.Getenv("PMI_RANK") == "" {
		return Single{}, nil // not launched by mpirun or srun: a process of its own, as without MPI
	}
	// Open MPI's handlers of SIGSEGV, SIGBUS, SIGFPE and SIGILL would take over those the Go runtime
	// needs (a nil dereference must stay a Go panic).
	if os.Getenv("OMPI_MCA_opal_signal") == "" {
		os.Setenv("OMPI_MCA_opal_signal", "")
	}
	var provided C.int
	if rc := C.sf_init(&provided); rc != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Init_thread: %s", errorString(rc))
	}
	if provided < C.MPI_THREAD_MULTIPLE {
		// The watchdog aborts from its own thread while another waits in a collective.
		return nil, fmt.Errorf("this MPI library does not support MPI_THREAD_MULTIPLE (it provides level %d)", int(provided))
	}
	var r, n C.int
	if rc := C.sf_rank(&r); rc != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Comm_rank: %s", errorString(rc))
	}
	if rc := C.sf_size(&n); rc != C.MPI_SUCCESS {
		return nil, fmt.Errorf("MPI_Comm_size: %s", errorString(rc))
	}
	w := &mpiWorld{rank: int(r), size: int(n)}
	w.timeout.Store(int64(DefaultTimeout))
	return w, nil
}

func errorString(rc C.int) string {
	buf := (*C.char)(C.malloc(C.MPI_MAX_ERROR_STRING))
	defer C.free(unsafe.Pointer(buf))
	n := C.sf_error_string(rc, buf)
	return C.GoStringN(buf, n)
}

func (w *mpiWorld) Rank() int { return w.rank }
func (w *mpiWorld) Size() int { return w.size }

func (w *mpiWorld) SetTimeout(d time.Duration) time.Duration {
	return time.Duration(w.timeout.Swap(int64(d)))
}

func (w *mpiWorld) Abort(code int) { C.sf_abort(C.int(code)) }

// guard runs one collective under the watchdog: past the timeout the job is aborted, since MPI has no way
// to cancel a collective that waits on a dead or stuck rank.
func (w *mpiWorld) guard(name string, call func() C.int) error {
	if d := time.Duration(w.timeout.Load()); d > 0 {
		t := time.AfterFunc(d, func() {
			fmt.Fprintf(os.Stderr, "specforge: rank %d of %d: %s did not complete within %s (train.collective_timeout): another rank died or hangs; aborting the job\n", w.rank, w.size, name, d)
			C.sf_abort(124)
		})
		defer t.Stop()
	}
	if rc := call(); rc != C.MPI_SUCCESS {
		return fmt.Errorf("rank %d of %d: %s: %s", w.rank, w.size, name, errorString(rc))
	}
	return nil
}

func (w *mpiWorld) AllreduceF32(buf []float32) error {
	for lo := 0; lo < len(buf); lo += maxCount {
		part := buf[lo:min(lo+maxCount, len(buf))]
		if err := w.guard("MPI_Allreduce", func() C.int { return C.sf_allreduce_f32((*C.float)(&part[0]), C.int(len(part))) }); err != nil {
			return err
		}
	}
	return nil
}

func (w *mpiWorld) AllreduceF64(buf []float64, op Op) error {
	for lo := 0; lo < len(buf); lo += maxCount {
		part := buf[lo:min(lo+maxCount, len(buf))]
		isMax := C.int(0)
		if op == Max {
			isMax = 1
		}
		if err := w.guard("MPI_Allreduce", func() C.int { return C.sf_allreduce_f64((*C.double)(&part[0]), C.int(len(part)), isMax) }); err != nil {
			return err
		}
	}
	return nil
}

func (w *mpiWorld) allgatherFixed(send []byte, each int) ([]byte, error) {
	if each > maxCount {
		return nil, fmt.Errorf("rank %d: allgather of %d bytes per rank is over the limit of %d", w.rank, each, maxCount)
	}
	recv := make([]byte, each*w.size+1) // +1: a pointer even when each is 0
	sendp := unsafe.Pointer(&recv[len(recv)-1])
	if each > 0 {
		sendp = unsafe.Pointer(&send[0])
	}
	err := w.guard("MPI_Allgather", func() C.int { return C.sf_allgather(sendp, C.int(each), unsafe.Pointer(&recv[0])) })
	return recv[:each*w.size], err
}

func (w *mpiWorld) Allgather(b []byte) ([][]byte, error) { return gatherFixed(w, b) }

func (w *mpiWorld) Bcast(buf []byte, root int) error {
	for lo := 0; lo < len(buf); lo += maxCount {
		part := buf[lo:min(lo+maxCount, len(buf))]
		if err := w.guard("MPI_Bcast", func() C.int { return C.sf_bcast(unsafe.Pointer(&part[0]), C.int(len(part)), C.int(root)) }); err != nil {
			return err
		}
	}
	return nil
}

// cInts copies ints into C memory (the collectives' count and offset arrays); the caller frees it.
func cInts(v []int) *C.int {
	p := (*C.int)(C.malloc(C.size_t(len(v)) * C.sizeof_int))
	dst := unsafe.Slice(p, len(v))
	for i, x := range v {
		dst[i] = C.int(x)
	}
	return p
}

func (w *mpiWorld) ReduceScatterF32(buf, recv []float32) error {
	counts, _, err := parts(len(buf), w.size)
	if err != nil {
		return err
	}
	if len(recv) != counts[w.rank] {
		return fmt.Errorf("rank %d: reduce-scatter into %d values, its part is %d", w.rank, len(recv), counts[w.rank])
	}
	if len(buf) == 0 {
		return nil
	}
	cc := cInts(counts)
	defer C.free(unsafe.Pointer(cc))
	out := (*C.float)(unsafe.Pointer(&buf[0])) // a valid pointer for an empty part
	if len(recv) > 0 {
		out = (*C.float)(&recv[0])
	}
	return w.guard("MPI_Reduce_scatter", func() C.int { return C.sf_reduce_scatter_f32((*C.float)(&buf[0]), out, cc) })
}

func (w *mpiWorld) AllgatherF32(buf []float32) error {
	counts, displs, err := parts(len(buf), w.size)
	if err != nil || len(buf) == 0 {
		return err
	}
	cc, cd := cInts(counts), cInts(displs)
	defer C.free(unsafe.Pointer(cc))
	defer C.free(unsafe.Pointer(cd))
	return w.guard("MPI_Allgatherv", func() C.int { return C.sf_allgatherv_f32((*C.float)(&buf[0]), cc, cd) })
}

func (w *mpiWorld) GatherF32(buf []float32, n, root int) error {
	counts, displs, err := parts(n, w.size)
	if err != nil {
		return err
	}
	if want := counts[w.rank]; w.rank == root && len(buf) != n || w.rank != root && len(buf) != want {
		return fmt.Errorf("rank %d: gather of %d values from a buffer of %d", w.rank, n, len(buf))
	}
	if n == 0 {
		return nil
	}
	cc, cd := cInts(counts), cInts(displs)
	defer C.free(unsafe.Pointer(cc))
	defer C.free(unsafe.Pointer(cd))
	var one [1]float32 // a valid pointer for an empty part
	p := &one[0]
	if len(buf) > 0 {
		p = &buf[0]
	}
	return w.guard("MPI_Gatherv", func() C.int {
		return C.sf_gatherv_f32((*C.float)(p), cc, cd, C.int(root), C.int(w.rank))
	})
}

func (w *mpiWorld) finish(status int, failed bool) {
	if failed && w.size > 1 {
		C.sf_abort(C.int(status))
	}
	C.sf_finalize()
}
