package dataset

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/tokenizer"
)

func qwenPrepare(t testing.TB, files []string, cache string) PrepareOptions {
	src, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", "Qwen-Qwen2.5-7B-Instruct.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := chat.NewJinjaRenderer(string(src), "", "<|im_end|>")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, _ := chat.Lookup("qwen")
	return PrepareOptions{
		Train: files, Schema: SchemaOptions{}, Shuffle: true, Seed: 1, CacheDir: cache,
		Tokenizing: Tokenizing{Tokenizer: qwenTokenizer(t), Template: &tmpl, Renderer: r, MaxLength: 256},
		KeyParts:   [][]byte{src},
	}
}

func TestPrepareCachesAndInvalidates(t *testing.T) {
	data := goldentest.Shared(t, "assets", "datasets", "fastchat_dummy_conversation", "dummy_conversation.json")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"conversations": []}`+"\n"+`{"foo": 1}`+"\n"+
		`{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "gpt", "value": "c"}]}`+"\n"), 0o644)
	cache := filepath.Join(dir, "cache")
	opt := qwenPrepare(t, []string{data, bad}, cache)
	opt.EvalFraction = 0.1
	p, err := Prepare(opt)
	if err != nil {
		t.Fatal(err)
	}
	if p.FromCache || p.Train.Rows+p.Eval.Rows != 503 || p.Eval.Rows != 50 {
		t.Fatalf("first prepare: %+v", p)
	}
	rejected := p.Train.Rejected[reasonEmpty] + p.Eval.Rejected[reasonEmpty] + p.Train.Rejected[reasonNoFields] + p.Eval.Rejected[reasonNoFields] +
		p.Train.Rejected["no loss tokens"] + p.Eval.Rejected["no loss tokens"]
	if rejected != 2 || p.Train.Samples+p.Eval.Samples != 501 {
		t.Errorf("rejections %v %v, samples %d+%d", p.Train.Rejected, p.Eval.Rejected, p.Train.Samples, p.Eval.Samples)
	}
	if p.Train.RoleViolations+p.Eval.RoleViolations != 1 { // the assistant-after-assistant row is cut there
		t.Errorf("role violations %d", p.Train.RoleViolations+p.Eval.RoleViolations)
	}
	f, err := OpenTokenized(p.TrainPath())
	if err != nil {
		t.Fatal(err)
	}
	if f.Len() != p.Train.Samples || f.Tokens() != p.Train.Tokens {
		t.Errorf("file holds %d samples %d tokens, stats say %d %d", f.Len(), f.Tokens(), p.Train.Samples, p.Train.Tokens)
	}
	var loss int64
	for i := 0; i < f.Len(); i++ {
		ids, mask := f.Sample(i)
		if len(ids) == 0 || len(ids) > 256 || ids[0] != 151644 { // every sample starts <|im_start|>
			t.Fatalf("sample %d: %d ids starting %v", i, len(ids), ids[:1])
		}
		for _, m := range mask {
			loss += int64(m)
		}
	}
	f.Close()
	if loss != p.Train.LossTokens {
		t.Errorf("loss tokens %d, stats say %d", loss, p.Train.LossTokens)
	}

	again, err := Prepare(opt)
	if err != nil || !again.FromCache || again.Key != p.Key || again.Train.Tokens != p.Train.Tokens {
		t.Errorf("second prepare not from cache: %+v %v", again, err)
	}
	opt.MaxLength = 128
	changed, err := Prepare(opt)
	if err != nil || changed.FromCache || changed.Key == p.Key {
		t.Errorf("a new max length reused the cache: %+v %v", changed, err)
	}
	opt.MaxLength = 256
	opt.TrainOnlyLastTurn = true
	last, err := Prepare(opt)
	if err != nil || last.Train.LossTokens >= p.Train.LossTokens {
		t.Errorf("train_only_last_turn: %d loss tokens, all turns %d (%v)", last.Train.LossTokens, p.Train.LossTokens, err)
	}
}

func TestPreparePlainText(t *testing.T) {
	tok, err := tokenizer.Load(goldentest.Shared(t, "assets", "models", "stories260K"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "stories.jsonl")
	os.WriteFile(data, []byte(`{"text": "Once upon a time, there was a cat."}`+"\n"+`{"prompt": "Tom said ", "completion": "hi."}`+"\n"), 0o644)
	p, err := Prepare(PrepareOptions{Train: []string{data}, CacheDir: dir, Tokenizing: Tokenizing{Tokenizer: tok, MaxLength: 64}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenTokenized(p.TrainPath())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, mask := f.Sample(0)
	want, _ := tok.Encode("Once upon a time, there was a cat.", true)
	if len(ids) != len(want) || ids[0] != 1 {
		t.Errorf("text sample %v, want %v", ids, want)
	}
	for _, m := range mask {
		if m != 1 {
			t.Errorf("plain text mask %v", mask)
			break
		}
	}
	// A completion sample starts with BOS, like plain text and like prompts at inference; the loss starts
	// after the prompt's tokens.
	ids, mask = f.Sample(1)
	whole, _ := tok.Encode("Tom said hi.", true)
	prompt, _ := tok.Encode("Tom said ", true)
	if !slices.Equal(ids, whole) {
		t.Errorf("completion sample %v, want %v", ids, whole)
	}
	for i, m := range mask {
		if (m == 1) != (i >= len(prompt)) {
			t.Errorf("completion mask %v: the loss must cover tokens %d.. (after BOS and the prompt)", mask, len(prompt))
			break
		}
	}
}
