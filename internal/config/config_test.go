package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type testConfig struct {
	Name string `yaml:"name"`
	Data struct {
		Files     []string `yaml:"files"`
		MaxLength int      `yaml:"max_length"`
		Shuffle   bool     `yaml:"shuffle"`
	} `yaml:"data"`
	LR float64 `yaml:"lr"`
}

func TestLoadWithOverrides(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	os.WriteFile(path, []byte("name: base\ndata:\n  files: [a.jsonl]\n  max_length: 512\nlr: 1e-4\n"), 0o644)
	var c testConfig
	err := Load(path, []string{"data.max_length=1024", "data.shuffle=true", "name=run 2", "data.files=[x, y]", "lr=0.001"}, &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "run 2" || c.Data.MaxLength != 1024 || !c.Data.Shuffle || len(c.Data.Files) != 2 || c.LR != 0.001 {
		t.Errorf("config %+v", c)
	}
	var d testConfig
	if err := Load("", []string{"data.max_length=7"}, &d); err != nil || d.Data.MaxLength != 7 {
		t.Errorf("no file: %+v %v", d, err)
	}
}

func TestLoadErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	os.WriteFile(path, []byte("name: x\ndata:\n  max_lenght: 5\n"), 0o644)
	var c testConfig
	err := Load(path, nil, &c)
	if err == nil || !strings.Contains(err.Error(), "max_lenght") || !strings.Contains(err.Error(), path) {
		t.Errorf("misspelt key: %v", err)
	}
	for _, o := range []string{"nokey", "name.sub=1", "data.max_length=abc"} {
		if err := Load("", []string{o}, &c); err == nil {
			t.Errorf("--set %s accepted", o)
		}
	}
}

func TestOutputAuxLayers(t *testing.T) {
	for _, tc := range []struct {
		convention string
		ids, want  []int
		err        string
	}{
		{"", []int{1, 15, 28}, []int{1, 15, 28}, ""},
		{"sglang", []int{0, 2, 3}, []int{0, 2, 3}, ""},
		{"vllm", []int{2, 16, 29}, []int{1, 15, 28}, ""},
		{"vllm", []int{0, 16, 29}, nil, "at least 1"},
		{"hf", []int{1, 2, 3}, nil, "want sglang"},
	} {
		d := DraftConfig{AuxLayers: tc.ids, AuxLayerConvention: tc.convention}
		got, err := d.OutputAuxLayers()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s %v: error %v, want %q", tc.convention, tc.ids, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s %v: %v, %v; want %v", tc.convention, tc.ids, got, err, tc.want)
		}
	}
}

func TestTrainPrecision(t *testing.T) {
	for _, c := range []struct {
		set string
		ok  bool
	}{{"train.precision=bf16", true}, {"train.precision=f32", true}, {"train.precision=fp16", false}} {
		_, err := LoadRun("", []string{c.set})
		if (err == nil) != c.ok {
			t.Errorf("--set %s: %v", c.set, err)
		}
		if err != nil && !strings.Contains(err.Error(), "train.precision") {
			t.Errorf("--set %s: the error %q does not name the key", c.set, err)
		}
	}
}

// TestValidateRefusesMeaninglessValues sets values that would train silently wrong (NaN, negative counts)
// and expects an error naming the field; the defaults themselves are valid.
func TestValidateRefusesMeaninglessValues(t *testing.T) {
	if _, err := LoadRun("", nil); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	regen := "data.regenerate.from=x.txt"
	srv := "data.regenerate.server=http://localhost:30000/v1 data.regenerate.model=m"
	if _, err := LoadRun("", append([]string{regen}, strings.Fields(srv)...)); err != nil {
		t.Fatalf("a server regeneration with the defaults: %v", err)
	}
	for _, c := range []struct {
		sets  []string
		field string
	}{
		{[]string{"train.max_grad_norm=.nan"}, "train.max_grad_norm"},
		{[]string{"train.max_grad_norm=.inf"}, "train.max_grad_norm"},
		{[]string{"data.eval_fraction=.nan"}, "data.eval_fraction"},
		{[]string{"train.lr=.nan"}, "train.lr"},
		{[]string{"train.warmup_ratio=.nan"}, "train.warmup_ratio"},
		{[]string{"train.weight_decay=-0.1"}, "train.weight_decay"},
		{[]string{"train.keep_checkpoints=-1"}, "train.keep_checkpoints"},
		{[]string{regen, "data.regenerate.opening_tokens=-5"}, "data.regenerate.opening_tokens"},
		{[]string{regen, "data.regenerate.max_new_tokens=-1"}, "data.regenerate.max_new_tokens"},
		{[]string{regen, "data.regenerate.temperature=-1"}, "data.regenerate.temperature"},
		{[]string{regen, "data.regenerate.batch=0"}, "data.regenerate.batch"},
		{[]string{regen, "data.regenerate.limit=-3"}, "data.regenerate.limit"},
		{[]string{regen, srv, "data.regenerate.server=localhost:30000"}, "data.regenerate.server"},
		{[]string{regen, srv, "data.regenerate.server=ftp://host/v1"}, "data.regenerate.server"},
		{[]string{regen, srv, "data.regenerate.server=http:///v1"}, "data.regenerate.server"},
		{[]string{srv}, "data.regenerate.from"},
		{[]string{regen, "data.regenerate.server=http://localhost:30000/v1"}, "data.regenerate.model"},
		{[]string{regen, srv, "data.regenerate.api_key_env=sk-proj-abc123"}, "data.regenerate.api_key_env"},
		{[]string{regen, srv, "data.regenerate.concurrency=0"}, "data.regenerate.concurrency"},
		{[]string{regen, srv, "data.regenerate.max_tokens=0"}, "data.regenerate.max_tokens"},
		{[]string{regen, srv, "data.regenerate.top_p=1.5"}, "data.regenerate.top_p"},
		{[]string{regen, srv, "data.regenerate.timeout=0"}, "data.regenerate.timeout"},
		{[]string{regen, srv, "data.regenerate.timeout=.nan"}, "data.regenerate.timeout"},
	} {
		var sets []string
		for _, s := range c.sets {
			sets = append(sets, strings.Fields(s)...)
		}
		if _, err := LoadRun("", sets); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%v: got %v, want an error naming %s", c.sets, err, c.field)
		} else if strings.Contains(err.Error(), "sk-proj") {
			t.Errorf("%v: the error %q shows what may be a key", c.sets, err)
		}
	}
}

// TestErrorsNameTheLine checks that unknown keys, values of the wrong type and values out of range are
// reported at the user's own line, comments and blank lines included, and --set values as --set.
func TestErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		yaml string
		sets []string
		want string
	}{
		{"# a run\n\ntrain:\n  # steps\n  lr: 1e-4\n  max_stepz: 5\n", nil, `run.yaml:6: unknown setting "train.max_stepz"`},
		{"data:\n  max_length: many\n", nil, "run.yaml:2: data.max_length: cannot unmarshal"},
		{"train:\n  lr: 1e-4\n\n\n  ttt_length: 1000\n", nil, "run.yaml:5: train.ttt_length must be between 1 and 64, got 1000"},
		{"train:\n  lr: 1e-4\n  lr: 2e-4\n", nil, "run.yaml:3: train.lr is set twice"},
		{"train: 5\n", nil, "run.yaml:1: train must be a mapping"},
		{"train:\n  lr: 1e-4\n", []string{"train.batch_size=100000000"}, "--set: train.batch_size must be between 1 and 65536"},
		{"", []string{"draft.hidden_sise=8"}, `--set: unknown setting "draft.hidden_sise"`},
		{"draft:\n  hidden_size: 1000000000\n", nil, "run.yaml:2: draft.hidden_size must be between 0 and 65536"},
		{"draft:\n  aux_layers: [1, -2, 3]\n", nil, "run.yaml:2: draft.aux_layers entry 1"},
	} {
		path := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadRun(path, c.sets)
		if err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(c.want, "run.yaml", path)) {
			t.Errorf("%q %v: got %v, want %q", c.yaml, c.sets, err, c.want)
		}
	}
}

func TestLoadRefusesHugeFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.yaml")
	if err := os.WriteFile(path, []byte("# "+strings.Repeat("x", maxConfigBytes)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRun(path, nil); err == nil || !strings.Contains(err.Error(), "limited to") {
		t.Errorf("got %v", err)
	}
}

// FuzzLoadRun feeds arbitrary YAML to the loader: it must return a configuration that validates or an
// error, never panic; a configuration it accepts must validate again.
func FuzzLoadRun(f *testing.F) {
	for _, p := range []string{"../../configs/stories260k.yaml"} {
		if raw, err := os.ReadFile(p); err == nil {
			f.Add(raw)
		}
	}
	f.Add([]byte("train:\n  lr: .nan\n"))
	f.Add([]byte("a: &x [*x]\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte) {
		path := filepath.Join(dir, "run.yaml")
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := LoadRun(path, nil)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("accepted a configuration that does not validate: %v", err)
		}
	})
}

func TestTrainLoss(t *testing.T) {
	for _, c := range []struct {
		sets []string
		ok   bool
	}{
		{nil, true},
		{[]string{"train.loss=lk_lambda", "train.lk_kl_scale=0.5", "train.lk_kl_decay=2"}, true},
		{[]string{"train.loss=lk_alpha"}, true},
		{[]string{"train.loss=ce"}, false},
		{[]string{"train.loss=lk_lambda", "train.lk_kl_decay=.nan"}, false},
		{[]string{"train.loss=lk_lambda", "train.lk_kl_scale=-1"}, false},
	} {
		r, err := LoadRun("", c.sets)
		if (err == nil) != c.ok {
			t.Errorf("%v: %v", c.sets, err)
		}
		if c.sets == nil && (r.Train.Loss != "kl" || r.Train.LKKLScale != 1 || r.Train.LKKLDecay != 1) {
			t.Errorf("defaults %q %g %g", r.Train.Loss, r.Train.LKKLScale, r.Train.LKKLDecay)
		}
	}
}

// TestPackingSetting: data.packing is off unless set, and a value that is no boolean is refused.
func TestPackingSetting(t *testing.T) {
	for _, c := range []struct {
		sets []string
		want bool
		ok   bool
	}{
		{nil, false, true},
		{[]string{"data.packing=true"}, true, true},
		{[]string{"data.packing=false"}, false, true},
		{[]string{"data.packing=sometimes"}, false, false},
	} {
		r, err := LoadRun("", c.sets)
		if (err == nil) != c.ok {
			t.Fatalf("%v: %v", c.sets, err)
		}
		if err == nil && r.Data.Packing != c.want {
			t.Errorf("%v: packing %v", c.sets, r.Data.Packing)
		}
	}
}
