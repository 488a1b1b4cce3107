package runlock

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSecondRunRefused: while one Lock holds a folder a second Acquire fails naming the holder's pid; after
// Release the folder can be taken again.
func TestSecondRunRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if err == nil || !strings.Contains(err.Error(), "in use by another run") || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second acquire: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l, err = Acquire(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	l.Release()
}

// TestWaitBlocks: Wait on a held folder says so and returns once the holder releases it.
func TestWaitBlocks(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(released)
		l.Release()
	}()
	var log strings.Builder
	w, err := Wait(dir, &log)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
	default:
		t.Error("Wait returned while the folder was held")
	}
	if !strings.Contains(log.String(), "waiting: ") {
		t.Errorf("log %q", log.String())
	}
	w.Release()
}
