package memstat

import (
	"runtime"
	"testing"
)

func TestPeakRSSGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("VmHWM is Linux's")
	}
	before := PeakRSSMiB()
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	after := PeakRSSMiB()
	if before <= 0 || after < before+60 {
		t.Errorf("peak RSS %.1f MiB before touching 64 MiB, %.1f after", before, after)
	}
	runtime.KeepAlive(buf)
}
