// Package mpitest launches the multi-rank tests: it finds mpirun, builds a binary with -tags mpi and runs
// it on a number of ranks. Without mpirun a test skips, saying why, unless SPECFORGE_REQUIRE_MPI=1 (CI,
// whose .ci/setup installs Open MPI), where it fails.
package mpitest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Mpirun is the path of mpirun, or the test skips (fails under SPECFORGE_REQUIRE_MPI=1). The pure-Go
// pass of the suite (CGO_ENABLED=0) skips too: the MPI build is a cgo build, tested in the cgo pass.
func Mpirun(t testing.TB) string {
	t.Helper()
	if os.Getenv("CGO_ENABLED") == "0" {
		t.Skip("CGO_ENABLED=0: the MPI build (-tags mpi) needs cgo; the cgo pass of the suite runs the multi-rank tests")
	}
	p, err := exec.LookPath("mpirun")
	if err == nil {
		return p
	}
	if os.Getenv("SPECFORGE_REQUIRE_MPI") == "1" {
		t.Fatalf("SPECFORGE_REQUIRE_MPI=1 but mpirun is not on PATH (apt-get install libopenmpi-dev openmpi-bin; .ci/setup does)")
	}
	t.Skip("mpirun not on PATH: the multi-rank tests need Open MPI (apt-get install libopenmpi-dev openmpi-bin); SPECFORGE_REQUIRE_MPI=1 makes this a failure")
	return ""
}

// Build compiles args (a go build or go test -c command line after the verb, e.g. "-o", out, "./cmd/x")
// with -tags mpi from dir, failing the test if it does not compile.
func Build(t testing.TB, dir, verb string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", append([]string{verb, "-tags", "mpi"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s -tags mpi %v: %v\n%s", verb, args, err, out)
	}
}

// Start launches mpirun with args (after its own options), its output collected in the buffer.
func Start(t testing.TB, mpirun string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	full := append([]string{"--oversubscribe", "--allow-run-as-root", "--bind-to", "none"}, args...)
	cmd := exec.Command(mpirun, full...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mpirun: %v", err)
	}
	return cmd, &out
}

// Run launches mpirun with args (after its own options) and returns its combined output and error; a
// launch that runs past timeout is killed.
func Run(t testing.TB, mpirun string, timeout time.Duration, env []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd, out := Start(t, mpirun, env, args...)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("mpirun %v ran past %s:\n%s", args, timeout, out.Bytes())
		return nil, nil
	}
}

// RankPID is the process id of rank rank among the descendants of pid (an mpirun), 0 if none (yet).
func RankPID(pid, rank int) int {
	want := []byte("OMPI_COMM_WORLD_RANK=" + strconv.Itoa(rank) + "\x00")
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p, p))
		for _, f := range strings.Fields(string(raw)) {
			c, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", c)); bytes.Contains(env, want) {
				return c
			}
			queue = append(queue, c)
		}
	}
	return 0
}

// Root is the module root (the folder of go.mod) above the test's working directory.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = parent
	}
}
