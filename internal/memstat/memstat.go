// Package memstat reads the process's memory use from the operating system.
package memstat

import (
	"os"
	"strconv"
	"strings"
)

// PeakRSSMiB is the high-water mark of the process's resident memory in MiB (VmHWM on Linux; 0 where
// unknown).
func PeakRSSMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err == nil {
				return float64(kb) / 1024
			}
		}
	}
	return 0
}
