package mpi

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// Agree checks that every rank has the same fields (name to value: settings, digests of the data) and,
// where one differs from rank 0's, returns an error naming the rank, the field and both values. Every rank
// returns the same error.
func Agree(c Comm, fields map[string]string) error {
	if c.Size() == 1 {
		return nil
	}
	msg, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	all, err := c.Allgather(msg)
	if err != nil {
		return fmt.Errorf("compare the ranks' configurations: %w", err)
	}
	var ref map[string]string
	if err := json.Unmarshal(all[0], &ref); err != nil {
		return fmt.Errorf("rank 0's configuration: %w", err)
	}
	for r := 1; r < len(all); r++ {
		var got map[string]string
		if err := json.Unmarshal(all[r], &got); err != nil {
			return fmt.Errorf("rank %d's configuration: %w", r, err)
		}
		keys := slices.Sorted(maps.Keys(ref))
		for k := range got {
			if _, ok := ref[k]; !ok {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			a, okA := ref[k]
			b, okB := got[k]
			if a != b || okA != okB {
				return fmt.Errorf("the ranks disagree: rank %d has %s = %s, rank 0 has %s (every rank must run the same configuration on the same data)", r, k, quote(b, okB), quote(a, okA))
			}
		}
	}
	return nil
}

func quote(v string, ok bool) string {
	if !ok {
		return "(not set)"
	}
	return fmt.Sprintf("%q", v)
}
