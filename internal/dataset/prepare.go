package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/specforge/specforge/internal/atomicfile"
)

// PrepareOptions configure a dataset preparation.
type PrepareOptions struct {
	Train []string // data files
	Eval  []string // data files for the eval split (optional)
	// EvalFraction of the shuffled training rows goes to the eval split when Eval is empty.
	EvalFraction float64
	Schema       SchemaOptions
	Tokenizing
	Shuffle bool
	Seed    uint64
	// MaxRowBytes bounds a record (data.max_line_bytes; 0: DefaultMaxRowBytes): longer ones are rejected,
	// counted under "row over data.max_line_bytes".
	MaxRowBytes int
	Workers     int // 0: all cores
	// CacheDir holds prepared datasets, one folder per cache key.
	CacheDir string
	// KeyParts are extra inputs of the cache key: tokenizer files, template text, ...
	KeyParts [][]byte
	// Progress, if set, is called as samples are processed.
	Progress func(done, total int)
}

// Stats describe a prepared split.
type Stats struct {
	Rows           int            `json:"rows"`
	Samples        int            `json:"samples"`
	Tokens         int64          `json:"tokens"`
	LossTokens     int64          `json:"loss_tokens"`
	Truncated      int            `json:"truncated"`
	RoleViolations int            `json:"role_violations"`
	Rejected       map[string]int `json:"rejected"`
	// Examples holds the first rejected row of each reason, with what was wrong.
	Examples map[string]string `json:"rejected_examples,omitempty"`
}

// Prepared is a prepared dataset in the cache.
type Prepared struct {
	Dir       string
	Key       string
	Train     Stats
	Eval      Stats
	Seconds   float64 `json:"seconds"`
	FromCache bool    `json:"-"`
}

// TrainPath and EvalPath are the tokenized files of the splits.
func (p *Prepared) TrainPath() string { return filepath.Join(p.Dir, "train.safetensors") }
func (p *Prepared) EvalPath() string  { return filepath.Join(p.Dir, "eval.safetensors") }

// formatVersion changes whenever the same inputs would tokenize differently (v2: completion samples get the
// tokenizer's special tokens), so that no stale cache is reused.
const formatVersion = "specforge-dataset-v2"

// CacheKey hashes everything that determines the prepared tokens: the data files' contents, the options
// and the key parts (tokenizer and template).
func (o *PrepareOptions) CacheKey() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", formatVersion)
	for _, group := range [][]string{o.Train, o.Eval} {
		fmt.Fprintf(h, "files %d\n", len(group))
		for _, path := range group {
			f, err := os.Open(path)
			if err != nil {
				return "", fmt.Errorf("open dataset: %w", err)
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("read %s: %w", path, err)
			}
			fmt.Fprintln(h)
		}
	}
	tmpl, _ := json.Marshal(o.Template)
	opts, _ := json.Marshal(struct {
		Schema            SchemaOptions
		MaxLength         int
		LastTurn, Shuffle bool
		Seed              uint64
		EvalFraction      float64
		MaxRowBytes       int
	}{o.Schema, o.MaxLength, o.TrainOnlyLastTurn, o.Shuffle, o.Seed, o.EvalFraction, max(o.MaxRowBytes, 0)})
	h.Write(tmpl)
	h.Write(opts)
	for _, p := range o.KeyParts {
		fmt.Fprintf(h, "\n%d\n", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// Prepare tokenizes the data into the cache, or returns the cached result when the key matches.
func Prepare(o PrepareOptions) (*Prepared, error) {
	key, err := o.CacheKey()
	if err != nil {
		return nil, err
	}
	p := &Prepared{Dir: filepath.Join(o.CacheDir, key), Key: key}
	if raw, err := os.ReadFile(filepath.Join(p.Dir, "stats.json")); err == nil {
		if json.Unmarshal(raw, p) == nil {
			p.Dir, p.Key, p.FromCache = filepath.Join(o.CacheDir, key), key, true
			return p, nil
		}
	}
	start := time.Now()
	trainRows, err := readAll(o.Train, o.MaxRowBytes)
	if err != nil {
		return nil, err
	}
	if len(trainRows) == 0 {
		return nil, fmt.Errorf("no rows in %v", o.Train)
	}
	if o.Shuffle {
		r := rand.New(rand.NewPCG(o.Seed, 0x5eed))
		r.Shuffle(len(trainRows), func(i, j int) { trainRows[i], trainRows[j] = trainRows[j], trainRows[i] })
	}
	var evalRows []Row
	switch {
	case len(o.Eval) > 0:
		if evalRows, err = readAll(o.Eval, o.MaxRowBytes); err != nil {
			return nil, err
		}
	case o.EvalFraction > 0:
		n := int(float64(len(trainRows)) * o.EvalFraction)
		if n == 0 || n >= len(trainRows) {
			return nil, fmt.Errorf("eval fraction %g of %d rows leaves no eval or no training rows", o.EvalFraction, len(trainRows))
		}
		evalRows, trainRows = trainRows[len(trainRows)-n:], trainRows[:len(trainRows)-n]
	}
	total := len(trainRows) + len(evalRows)
	var done int
	var mu sync.Mutex
	progress := func(n int) {
		if o.Progress == nil {
			return
		}
		mu.Lock()
		done += n
		o.Progress(done, total)
		mu.Unlock()
	}
	train, trainStats, err := o.process(trainRows, progress)
	if err != nil {
		return nil, err
	}
	if len(train) == 0 {
		return nil, fmt.Errorf("every training row was rejected: %v", trainStats.Rejected)
	}
	evalSamples, evalStats, err := o.process(evalRows, progress)
	if err != nil {
		return nil, err
	}
	p.Train, p.Eval = trainStats, evalStats
	if err := os.MkdirAll(p.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	meta := map[string]string{"format": formatVersion, "key": key}
	if err := WriteTokenized(p.TrainPath(), train, meta); err != nil {
		return nil, err
	}
	if len(evalSamples) > 0 {
		if err := WriteTokenized(p.EvalPath(), evalSamples, meta); err != nil {
			return nil, err
		}
	}
	p.Seconds = time.Since(start).Seconds()
	stats, _ := json.MarshalIndent(p, "", "  ")
	// stats.json is written last: its presence marks a complete cache entry.
	if err := atomicfile.WriteBytes(filepath.Join(p.Dir, "stats.json"), append(stats, '\n')); err != nil {
		return nil, err
	}
	return p, nil
}

func readAll(files []string, maxRowBytes int) ([]Row, error) {
	var rows []Row
	for _, path := range files {
		if err := ReadRows(path, maxRowBytes, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// process turns rows into tokenized samples in parallel, keeping their order.
func (o *PrepareOptions) process(rows []Row, progress func(int)) ([]*Tokenized, Stats, error) {
	st := Stats{Rows: len(rows), Rejected: map[string]int{}, Examples: map[string]string{}}
	results := make([]result, len(rows))
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	const chunk = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				lo := int(next)
				next += chunk
				mu.Unlock()
				if lo >= len(rows) {
					return
				}
				hi := min(lo+chunk, len(rows))
				for i := lo; i < hi; i++ {
					results[i] = o.one(rows[i])
				}
				progress(hi - lo)
			}
		}()
	}
	wg.Wait()
	var out []*Tokenized
	for _, r := range results {
		if r.err != nil {
			return nil, st, r.err
		}
		if r.violation {
			st.RoleViolations++
		}
		if r.rejected != nil {
			if st.Rejected[r.rejected.Reason] == 0 {
				st.Examples[r.rejected.Reason] = r.rejected.Where + ": " + r.rejected.Detail
			}
			st.Rejected[r.rejected.Reason]++
			continue
		}
		st.Samples++
		st.Tokens += int64(len(r.tok.IDs))
		st.LossTokens += int64(r.tok.LossTokens())
		if r.tok.Truncated {
			st.Truncated++
		}
		out = append(out, r.tok)
	}
	return out, st, nil
}

type result struct {
	tok       *Tokenized
	violation bool
	rejected  *Rejection
	err       error
}

func (o *PrepareOptions) one(row Row) (r result) {
	s, err := ToSample(row, o.Schema)
	var rej *Rejection
	if errors.As(err, &rej) {
		r.rejected = rej
		return r
	}
	if err != nil {
		r.err = err
		return r
	}
	tok, err := o.Tokenize(s)
	if err != nil {
		r.err = err
		return r
	}
	r.violation = s.RoleViolation != ""
	switch {
	case len(tok.IDs) == 0:
		r.rejected = reject(row.Where, "no tokens", "the sample tokenizes to nothing")
	case tok.LossTokens() == 0:
		r.rejected = reject(row.Where, "no loss tokens", "no assistant turn, or every loss token truncated away")
	default:
		r.tok = tok
	}
	return r
}

// RejectedReasons lists rejection reasons by count, largest first.
func (s Stats) RejectedReasons() []string {
	var reasons []string
	for r := range s.Rejected {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if s.Rejected[reasons[i]] != s.Rejected[reasons[j]] {
			return s.Rejected[reasons[i]] > s.Rejected[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	return reasons
}
