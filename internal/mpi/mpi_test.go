package mpi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/specforge/specforge/internal/mpi/mpitest"
)

func TestSingle(t *testing.T) {
	var c Comm = Single{}
	f := []float32{1, 2}
	g := []float64{3}
	if err := c.AllreduceF32(f); err != nil || f[0] != 1 || f[1] != 2 {
		t.Errorf("AllreduceF32 = %v, %v; want [1 2]", f, err)
	}
	if err := c.AllreduceF64(g, Max); err != nil || g[0] != 3 {
		t.Errorf("AllreduceF64 = %v, %v; want [3]", g, err)
	}
	all, err := c.Allgather([]byte("ab"))
	if err != nil || len(all) != 1 || string(all[0]) != "ab" {
		t.Errorf("Allgather = %q, %v; want [ab]", all, err)
	}
	if c.Rank() != 0 || c.Size() != 1 {
		t.Errorf("rank %d of %d, want 0 of 1", c.Rank(), c.Size())
	}
}

func TestLaunchedRanks(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want int
	}{
		{map[string]string{}, 0},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "4"}, 4},
		{map[string]string{"PMI_SIZE": "2"}, 2},
		{map[string]string{"SLURM_STEP_NUM_TASKS": "8"}, 8},
		{map[string]string{"OMPI_COMM_WORLD_SIZE": "x"}, 0},
	} {
		for _, v := range []string{"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"} {
			t.Setenv(v, c.env[v])
		}
		if got := launchedRanks(); got != c.want {
			t.Errorf("launchedRanks with %v = %d, want %d", c.env, got, c.want)
		}
	}
}

// TestRanksOnMPI runs the collectives of world_mpi_test.go on two ranks, then a collective one rank never
// joins, which the watchdog must end.
func TestRanksOnMPI(t *testing.T) {
	mpirun := mpitest.Mpirun(t)
	bin := filepath.Join(t.TempDir(), "mpi.test")
	mpitest.Build(t, mpitest.Root(t), "test", "-c", "-o", bin, "./internal/mpi")
	out, err := mpitest.Run(t, mpirun, 2*time.Minute, []string{"SPECFORGE_MPI_HELPER=1"}, "-np", "2", bin, "-test.run", "^TestHelperCollectives$", "-test.v")
	if err != nil || strings.Count(string(out), "--- PASS: TestHelperCollectives") != 2 {
		t.Fatalf("2 ranks: %v\n%s", err, out)
	}
	start := time.Now()
	out, err = mpitest.Run(t, mpirun, 2*time.Minute, []string{"SPECFORGE_MPI_HELPER=1"}, "-np", "2", bin, "-test.run", "^TestHelperStall$")
	if err == nil || !strings.Contains(string(out), "rank 0 of 2: MPI_Allreduce did not complete within 2s") {
		t.Fatalf("a rank that never joins: err %v, want the watchdog's abort\n%s", err, out)
	}
	if s := time.Since(start); s > 60*time.Second {
		t.Errorf("the stalled job took %s to end, want about the 2 s timeout", s)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal(err)
	}
}
