package specdecode

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/specforge/specforge/internal/dataset"
)

// Benchmarks are the named prompt sets: the file under the shared datasets folder and the field holding
// the prompt (for turns, the first turn).
var Benchmarks = map[string]struct{ File, Field string }{
	"mtbench":   {"mt_bench/question.jsonl", "turns"},
	"specbench": {"spec_bench/question.jsonl", "turns"},
	"gsm8k":     {"gsm8k/test.jsonl", "question"},
	"humaneval": {"humaneval/HumanEval.jsonl.gz", "prompt"},
	"math500":   {"math500/test.jsonl", "problem"},
}

// LoadPrompts reads up to n prompts (0: all) of a named benchmark (looked up in datasetsDir) or of a file,
// after skipping the first skip (held out, for instance, because training saw them): a .txt file holds one
// prompt per paragraph; JSONL, JSON and parquet rows give theirs in a prompt, text, question, problem or
// turns field.
func LoadPrompts(nameOrFile, datasetsDir string, skip, n int) ([]string, error) {
	path, field := nameOrFile, ""
	if b, ok := Benchmarks[nameOrFile]; ok {
		path, field = filepath.Join(datasetsDir, b.File), b.Field
	}
	var out []string
	if strings.HasSuffix(path, ".txt") {
		paras, err := dataset.ReadParagraphs(path)
		if err != nil {
			return nil, err
		}
		if skip >= len(paras) {
			return nil, fmt.Errorf("%s: no prompts after skipping %d (it has %d paragraphs)", path, skip, len(paras))
		}
		out = paras[skip:]
		if n > 0 && len(out) > n {
			out = out[:n]
		}
		return out, nil
	}
	seen := 0
	stop := fmt.Errorf("enough")
	err := dataset.ReadRows(path, 0, func(r dataset.Row) error {
		fields := []string{field}
		if field == "" {
			fields = []string{"prompt", "text", "question", "problem", "turns"}
		}
		for _, f := range fields {
			text := ""
			switch v := r.Fields[f].(type) {
			case string:
				text = v
			case []any:
				if len(v) > 0 {
					text, _ = v[0].(string)
				}
			}
			if text == "" {
				continue
			}
			if seen++; seen > skip {
				out = append(out, text)
			}
			break
		}
		if n > 0 && len(out) == n {
			return stop
		}
		return nil
	})
	if err != nil && err != stop {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts found after skipping %d (it has %d)", path, skip, seen)
	}
	return out, nil
}
