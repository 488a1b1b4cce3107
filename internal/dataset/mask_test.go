package dataset

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/goldentest"
	"github.com/specforge/specforge/internal/tokenizer"
)

type maskRef struct {
	InputIDs []int32 `json:"input_ids"`
	LossMask []uint8 `json:"loss_mask"`
}

func readMaskRef(t testing.TB, name string) maskRef {
	raw, err := os.ReadFile(goldentest.Shared(t, "assets", "datasets", "specforge_qwen_loss_mask_refs", name+"_standard_ref.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref maskRef
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

func qwenTokenizer(t testing.TB) *tokenizer.Tokenizer {
	tok, err := tokenizer.Load(goldentest.Shared(t, "assets", "tokenizers", "qwen3"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func compareMask(t *testing.T, name string, got *Tokenized, ref maskRef) {
	t.Helper()
	if len(got.IDs) != len(ref.InputIDs) {
		t.Fatalf("%s: %d tokens, want %d", name, len(got.IDs), len(ref.InputIDs))
	}
	for i := range ref.InputIDs {
		if got.IDs[i] != ref.InputIDs[i] || got.LossMask[i] != ref.LossMask[i] {
			t.Fatalf("%s: token %d: id %d mask %d, want id %d mask %d\nmask %v\nwant %v", name, i, got.IDs[i], got.LossMask[i], ref.InputIDs[i], ref.LossMask[i], got.LossMask, ref.LossMask)
		}
	}
}

// TestMaskPreformatted masks the rendered text of SpecForge's reference conversation (the text its Qwen
// templates produce) and compares ids and mask with SpecForge's own output.
func TestMaskPreformatted(t *testing.T) {
	tok := qwenTokenizer(t)
	plain := "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nMy name is Qwen2.<|im_end|>\n<|im_start|>user\nHow old are you?<|im_end|>\n<|im_start|>assistant\n"
	cases := []struct{ ref, template, text string }{
		{"qwen", "qwen", plain + "11 years old.<|im_end|>\n"},
		{"qwen3-instruct", "qwen3-instruct", plain + "<think>\n\n</think>\n\n11 years old.<|im_end|>\n"},
		{"qwen3-thinking", "qwen3-thinking", plain + "<think>\n\n</think>\n\n11 years old.<|im_end|>\n"},
	}
	for _, c := range cases {
		tmpl, err := chat.Lookup(c.template)
		if err != nil {
			t.Fatal(err)
		}
		tz := &Tokenizing{Tokenizer: tok, Template: &tmpl, MaxLength: 2048}
		got, err := tz.Tokenize(&Sample{Kind: Preformatted, Text: c.text})
		if err != nil {
			t.Fatal(err)
		}
		compareMask(t, c.ref, got, readMaskRef(t, c.ref))
	}
}

// TestMaskFromMessages renders SpecForge's reference conversation with the Qwen chat templates and checks
// ids and loss mask against SpecForge's own output, token for token.
func TestMaskFromMessages(t *testing.T) {
	raw, err := os.ReadFile(goldentest.Shared(t, "assets", "datasets", "specforge_qwen_loss_mask_refs", "messages.json"))
	if err != nil {
		t.Fatal(err)
	}
	var in struct {
		Messages []any `json:"standard_messages"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	tok := qwenTokenizer(t)
	cases := []struct{ ref, template, jinja string }{
		// The "qwen" reference used Qwen3-Next's template, which renders this input as Qwen2.5's does.
		{"qwen", "qwen", "Qwen-Qwen2.5-7B-Instruct"},
		{"qwen3-instruct", "qwen3-instruct", "Qwen-Qwen3-0.6B"},
		{"qwen3-thinking", "qwen3-thinking", "Qwen-Qwen3-0.6B"},
	}
	for _, c := range cases {
		src, err := os.ReadFile(goldentest.Shared(t, "assets", "chat_templates", c.jinja+".jinja"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := chat.NewJinjaRenderer(string(src), "", "<|im_end|>")
		if err != nil {
			t.Fatal(err)
		}
		tmpl, _ := chat.Lookup(c.template)
		tz := &Tokenizing{Tokenizer: tok, Template: &tmpl, Renderer: r, MaxLength: 2048}
		s, err := ToSample(Row{Where: "messages.json", Fields: map[string]any{"messages": in.Messages}}, SchemaOptions{KeepReasoning: tmpl.Thinking})
		if err != nil {
			t.Fatal(err)
		}
		got, err := tz.Tokenize(s)
		if err != nil {
			t.Fatal(err)
		}
		compareMask(t, c.ref, got, readMaskRef(t, c.ref))
	}
}
