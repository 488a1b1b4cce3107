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
	} {
		if _, err := LoadRun("", c.sets); err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%v: got %v, want an error naming %s", c.sets, err, c.field)
		}
	}
}
