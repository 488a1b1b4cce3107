//go:build !unix

package runlock

import (
	"errors"
	"os"
	"time"
)

var errHeld = errors.New("held")

// lockFile creates path exclusively: without flock a killed run leaves the file, which the error names
// so it can be removed by hand.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, errHeld
	}
	return f, err
}

// waitFile polls until path can be created.
func waitFile(path string) (*os.File, error) {
	for {
		f, err := lockFile(path)
		if err != errHeld {
			return f, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func unlockFile(f *os.File, path string) error {
	err := f.Close()
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}
