package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/specforge/specforge/internal/atomicfile"
	"github.com/specforge/specforge/internal/tensorboard"
)

// The metrics log (metrics.jsonl in the run folder) holds one Record per line.

// Record is one line of the metrics log.
type Record struct {
	Step  int       `json:"step"`
	Split string    `json:"split"`
	Epoch int       `json:"epoch"`
	LR    float64   `json:"lr,omitempty"`
	Loss  float64   `json:"loss"`
	PLoss []float64 `json:"-"` // logged as ploss_0 .. ploss_{K-1}
	Acc   []float64 `json:"-"` // logged as acc_0 .. acc_{K-1}
	// Alpha is the expected acceptance per step, sum_v min(p_v, q_v), logged as alpha_0 .. alpha_{K-1}.
	Alpha     []float64 `json:"-"`
	SimAccLen float64   `json:"simulated_acceptance_length"`
	// AcceptanceLength is the measured tokens per target verification (eval records, online training).
	AcceptanceLength float64 `json:"acceptance_length,omitempty"`
	GradNorm         float64 `json:"grad_norm,omitempty"`
	Tokens           int     `json:"tokens"`
	TokensPerS       float64 `json:"tokens_per_s,omitempty"`
	ElapsedS         float64 `json:"elapsed_s"`
}

type recordFields Record

// MarshalJSON writes the per-step metrics as ploss_k, acc_k and alpha_k keys, as SpecForge names them.
func (r Record) MarshalJSON() ([]byte, error) {
	base, err := json.Marshal(recordFields(r))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	for k := range r.PLoss {
		m[fmt.Sprintf("ploss_%d", k)] = r.PLoss[k]
		m[fmt.Sprintf("acc_%d", k)] = r.Acc[k]
	}
	for k := range r.Alpha {
		m[fmt.Sprintf("alpha_%d", k)] = r.Alpha[k]
	}
	return json.Marshal(m)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Record) UnmarshalJSON(data []byte) error {
	if err := json.Unmarshal(data, (*recordFields)(r)); err != nil {
		return err
	}
	var m map[string]float64
	json.Unmarshal(data, &m) // non-numeric fields are skipped
	r.PLoss, r.Acc, r.Alpha = nil, nil, nil
	for k := 0; ; k++ {
		p, ok := m[fmt.Sprintf("ploss_%d", k)]
		a, ok2 := m[fmt.Sprintf("acc_%d", k)]
		if !ok || !ok2 {
			break
		}
		r.PLoss, r.Acc = append(r.PLoss, p), append(r.Acc, a)
	}
	for k := range r.PLoss {
		a, ok := m[fmt.Sprintf("alpha_%d", k)]
		if !ok {
			r.Alpha = nil // a log written before alpha_k was recorded
			break
		}
		r.Alpha = append(r.Alpha, a)
	}
	return nil
}

// scalars are the record's metrics as TensorBoard scalars, one per numeric field of its JSONL line but the
// step (the events' own), tagged split/name ("train/loss", "eval/acc_0"), in name order.
func (r *Record) scalars() ([]tensorboard.Scalar, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, err
	}
	var out []tensorboard.Scalar
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v, ok := m[k].(float64); ok && k != "step" {
			out = append(out, tensorboard.Scalar{Tag: r.Split + "/" + k, Value: v})
		}
	}
	return out, nil
}

// appendRecord writes one record as a line of the log.
func appendRecord(w io.Writer, rec *Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write metrics: %w", err)
	}
	return nil
}

// writeHistory replaces the log at path with records, atomically.
func writeHistory(path string, records []Record) error {
	return atomicfile.Write(path, func(w io.Writer) error {
		for i := range records {
			if err := appendRecord(w, &records[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// readHistory reloads the metrics logged up to step (for the plot of a resumed run).
func readHistory(path string, upTo int) []Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Record
	// Lines of any length: a Scanner would stop at its buffer's limit and the rewrite on resume would drop
	// every record after it. A line that does not parse (the torn last line of a killed run) is skipped.
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		var r Record
		if len(line) > 0 && json.Unmarshal(line, &r) == nil && r.Step <= upTo {
			out = append(out, r)
		}
		if err != nil {
			return out
		}
	}
}
