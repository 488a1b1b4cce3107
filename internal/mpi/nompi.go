//go:build !mpi || !cgo

package mpi

// Built reports whether this binary can join an MPI world (-tags mpi, cgo).
const Built = false

func openWorld() (Comm, error) {
	if n := launchedRanks(); n > 1 {
		return nil, errNoMPI(n)
	}
	return Single{}, nil
}
