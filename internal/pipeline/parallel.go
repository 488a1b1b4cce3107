package pipeline

import (
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/specforge/specforge/internal/config"
	"github.com/specforge/specforge/internal/mpi"
	"github.com/specforge/specforge/internal/train"
)

// joinWorld is the process's data-parallel world (mpi.World: one process unless launched by mpirun or
// srun with an MPI build), its collectives bounded by train.collective_timeout.
func joinWorld(cfg *config.Run) (mpi.Comm, error) {
	comm, err := mpi.World()
	if err != nil {
		return nil, err
	}
	comm.SetTimeout(time.Duration(cfg.Train.CollectiveTimeout * float64(time.Second)))
	return comm, nil
}

// agree stops a run whose ranks differ in a setting or in what they start from (data, vocabulary,
// weights, checkpoint), naming the first field that differs.
func agree(comm mpi.Comm, cfg *config.Run, tr *train.Trainer) error {
	if comm.Size() == 1 {
		return nil
	}
	fields, err := settings(cfg)
	if err != nil {
		return err
	}
	for k, v := range tr.Fingerprint() {
		fields[k] = v
	}
	// The ranks reach this point after loading the target and the data, each at its own pace: the watchdog
	// is for the collectives of training.
	prev := comm.SetTimeout(0)
	defer comm.SetTimeout(prev)
	return mpi.Agree(comm, fields)
}

// settings flattens a configuration into its dotted keys (train.lr) and values.
func settings(cfg *config.Run) (map[string]string, error) {
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode the configuration: %w", err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		return nil, fmt.Errorf("decode the configuration: %w", err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok {
			for k, sub := range m {
				walk(prefix+k+".", sub)
			}
			return
		}
		out[prefix[:len(prefix)-1]] = fmt.Sprint(v)
	}
	walk("", tree)
	return out, nil
}
