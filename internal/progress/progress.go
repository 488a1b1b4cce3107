// Package progress reports the progress of long jobs: a bar with rate and ETA on a terminal, plain log lines
// (at most one every few seconds) otherwise.
package progress

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Reporter shows the progress of one job.
type Reporter struct {
	mu       sync.Mutex
	bar      *progressbar.ProgressBar
	w        io.Writer
	desc     string
	total    int64
	start    time.Time
	lastLog  time.Time
	interval time.Duration
}

// For reports to w: as a bar when w is a terminal, as log lines otherwise.
func For(w io.Writer, total int64, desc string) *Reporter {
	f, ok := w.(*os.File)
	return NewTo(w, total, desc, ok && term.IsTerminal(int(f.Fd())))
}

// NewTo reports to w, as a bar when terminal is true.
func NewTo(w io.Writer, total int64, desc string, terminal bool) *Reporter {
	now := time.Now()
	r := &Reporter{w: w, desc: desc, total: total, start: now, lastLog: now, interval: 5 * time.Second}
	if terminal {
		r.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return r
}

// Set reports that done units are complete; extra is shown beside the bar (loss, accuracy, ...).
func (r *Reporter) Set(done int64, extra string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		if extra != "" {
			r.bar.Describe(r.desc + " " + extra)
		}
		r.bar.Set64(done)
		return
	}
	now := time.Now()
	if now.Sub(r.lastLog) < r.interval && done < r.total {
		return
	}
	r.lastLog = now
	elapsed := now.Sub(r.start).Seconds()
	rate := float64(done) / max(elapsed, 1e-9)
	eta := "?"
	if rate > 0 {
		eta = time.Duration(float64(r.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	fmt.Fprintf(r.w, "%s %d/%d (%.1f%%) %.1f/s eta %s %s\n", r.desc, done, r.total, 100*float64(done)/float64(max(r.total, 1)), rate, eta, extra)
}

// Finish ends the report.
func (r *Reporter) Finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.bar != nil {
		r.bar.Finish()
	}
}
