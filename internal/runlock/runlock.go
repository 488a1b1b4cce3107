// Package runlock gives one process at a time a run folder or a shared data cache: two trainings writing
// one folder would interleave their metrics and overwrite each other's checkpoints and draft.
package runlock

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileName is the lock file inside a run folder; it names the holder.
const FileName = ".specforge.lock"

// Lock is a held run folder.
type Lock struct {
	f    *os.File
	path string
}

// Acquire takes dir (created if missing) for this process, or says who holds it.
func Acquire(dir string) (*Lock, error) {
	return take(dir, nil, false)
}

// Wait is Acquire for a folder several runs share (a data cache): when another process holds it, Wait
// says so on log and blocks until it is free, instead of failing.
func Wait(dir string, log io.Writer) (*Lock, error) {
	return take(dir, log, true)
}

func take(dir string, log io.Writer, wait bool) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create run folder: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := lockFile(path)
	if err == errHeld {
		holder, _ := os.ReadFile(path)
		held := fmt.Errorf("%s is in use by another run (%s, lock %s)", dir, strings.TrimSpace(string(holder)), path)
		if !wait {
			return nil, fmt.Errorf("%w: wait for it to end or choose another folder", held)
		}
		if log != nil {
			fmt.Fprintf(log, "waiting: %v\n", held)
		}
		f, err = waitFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	host, _ := os.Hostname()
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "specforge pid %d on %s since %s\n", os.Getpid(), host, time.Now().Format(time.RFC3339))
	}
	return &Lock{f: f, path: path}, nil
}

// Release gives the folder back.
func (l *Lock) Release() error { return unlockFile(l.f, l.path) }
