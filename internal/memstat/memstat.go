// Package memstat reads the process's memory use from the operating system.
package memstat

import (
	"os"
	"strconv"
	"strings"
)

// TotalMiB is the machine's physical memory in MiB (MemTotal on Linux; 0 where unknown).
func TotalMiB() float64 { return procKiB("/proc/meminfo", "MemTotal:") / 1024 }

// PeakRSSMiB is the high-water mark of the process's resident memory in MiB (VmHWM on Linux; 0 where
// unknown).
func PeakRSSMiB() float64 { return procKiB("/proc/self/status", "VmHWM:") / 1024 }

// procKiB reads the "key: N kB" line of a /proc file (0 where absent).
func procKiB(path, key string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err == nil {
				return float64(kb)
			}
		}
	}
	return 0
}
