package scalebench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/specforge/specforge/internal/backend/auto"
	"github.com/specforge/specforge/internal/memstat"
)

// Job kinds: the phases of Scale, and TrainMemory's one step.
const (
	JobLoad      = "load"
	JobGenHidden = "gen-hidden"
	JobTrain     = "train"
	JobTrainStep = "train-step"
)

// Job is one measured phase, self-contained so that a child process can run it from its JSON.
type Job struct {
	Kind  string        `json:"kind"`
	Scale *ScaleOptions `json:"scale,omitempty"` // load, gen-hidden and train
	Draft *DraftShape   `json:"draft,omitempty"` // train-step
	T     int           `json:"t,omitempty"`     // train-step: the sequence length
	Seed  uint64        `json:"seed,omitempty"`
}

// Result is what a job measured. Seconds time the phase's work itself: gen-hidden's generation, one
// training step; a target load is timed apart in LoadSeconds.
type Result struct {
	Kind        string  `json:"kind"`
	Backend     string  `json:"backend"`
	LoadSeconds float64 `json:"load_seconds,omitempty"`
	Seconds     float64 `json:"seconds"`
	Tokens      int     `json:"tokens,omitempty"`
	TokensPerS  float64 `json:"tokens_per_s,omitempty"`
	Loss        float64 `json:"loss,omitempty"`
	OutBytes    int64   `json:"out_bytes,omitempty"` // gen-hidden: bytes of the shards
	// DraftParams counts the trained draft's float32 weights (train, train-step): weights, gradients and
	// AdamW's two moments take 16 bytes each.
	DraftParams int64 `json:"draft_params,omitempty"`
	// PeakRSSMiB is the process's peak resident memory (VmHWM) when the job ended.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// RunJob runs a job in this process.
func RunJob(j Job) (*Result, error) {
	var r *Result
	var err error
	switch j.Kind {
	case JobLoad, JobGenHidden, JobTrain:
		if j.Scale == nil {
			return nil, fmt.Errorf("job %s: no scale options", j.Kind)
		}
		r, err = runScalePhase(j.Kind, j.Scale)
	case JobTrainStep:
		if j.Draft == nil || j.T <= 0 {
			return nil, fmt.Errorf("job %s: needs a draft shape and a positive T", j.Kind)
		}
		r, err = runTrainStep(*j.Draft, j.T, j.Seed)
	default:
		return nil, fmt.Errorf("unknown job kind %q", j.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", j.Kind, err)
	}
	r.Kind, r.Backend, r.PeakRSSMiB = j.Kind, auto.Default().Name(), memstat.PeakRSSMiB()
	if r.Seconds > 0 && r.Tokens > 0 {
		r.TokensPerS = float64(r.Tokens) / r.Seconds
	}
	return r, nil
}

// Runner runs a job somewhere and returns what it measured.
type Runner struct {
	// Isolated says whether every job runs in a fresh process (its peak RSS is its own) or all in this one
	// (each peak RSS is the high-water mark of the process so far).
	Isolated bool
	Run      func(Job) (*Result, error)
}

// InProcess runs the jobs one after the other in this process.
func InProcess() Runner { return Runner{Run: RunJob} }

// Child runs every job in a fresh process started as argv, which must read one Job as JSON on its standard
// input, run it with RunJob and write the Result as JSON on its standard output (ServeJob does). Its
// standard error goes to log.
func Child(argv []string, log io.Writer) Runner {
	return Runner{Isolated: true, Run: func(j Job) (*Result, error) {
		in, err := json.Marshal(j)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		var out bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, log
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s job in a child process (after %.0f s): %w", j.Kind, time.Since(start).Seconds(), err)
		}
		var r Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s job: the child's result %q: %v", j.Kind, out.String(), err)
		}
		return &r, nil
	}}
}

// ServeJob is a child process's side of Child: it reads one Job from in, runs it and writes its Result to out.
func ServeJob(in io.Reader, out io.Writer) error {
	var j Job
	if err := json.NewDecoder(in).Decode(&j); err != nil {
		return fmt.Errorf("read job: %w", err)
	}
	r, err := RunJob(j)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(r)
}
