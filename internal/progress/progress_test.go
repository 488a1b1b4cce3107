package progress

import (
	"bytes"
	"strings"
	"testing"
)

func TestPlainLines(t *testing.T) {
	var buf bytes.Buffer
	r := NewTo(&buf, 100, "train", false)
	r.Set(10, "loss 1.0") // too soon after the start: no line
	if buf.Len() != 0 {
		t.Errorf("early line %q", buf.String())
	}
	r.Set(100, "loss 0.5") // completion always reports
	if out := buf.String(); !strings.Contains(out, "train 100/100 (100.0%)") || !strings.Contains(out, "loss 0.5") {
		t.Errorf("line %q", out)
	}
	r.Finish()
}
