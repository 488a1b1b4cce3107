//go:build !unix

package runlock

import (
	"errors"
	"os"
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

func unlockFile(f *os.File, path string) error {
	err := f.Close()
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}
