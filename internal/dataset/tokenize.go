package dataset

import (
	"fmt"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/tokenizer"
)

// Tokenizing holds what turns samples into token ids and loss masks.
type Tokenizing struct {
	Tokenizer *tokenizer.Tokenizer
	// Template finds the assistant spans of chat and preformatted samples (nil: such samples are refused).
	Template *chat.Template
	// Renderer renders chats: the tokenizer's Jinja chat_template, or the template's headers.
	Renderer          chat.Renderer
	MaxLength         int
	TrainOnlyLastTurn bool
}

// Tokenized is one prepared sample.
type Tokenized struct {
	IDs       []int32
	LossMask  []uint8
	Truncated bool
}

// Tokenize renders (for chats), tokenizes and masks one sample.
func (tz *Tokenizing) Tokenize(s *Sample) (*Tokenized, error) {
	switch s.Kind {
	case Chat, Preformatted:
		if tz.Template == nil {
			return nil, fmt.Errorf("%s: chat data needs a chat template (data.chat_template)", s.Where)
		}
		text := s.Text
		if s.Kind == Chat {
			s.ValidateRoles(tz.Template.SystemPrompt)
			var err error
			text, err = tz.Renderer.Render(chat.Conversation{
				Messages: s.Messages, Tools: s.Tools, Vars: s.Vars, EnableThinking: tz.Template.Thinking,
			})
			if err != nil {
				return nil, fmt.Errorf("%s: render chat template: %w", s.Where, err)
			}
		}
		// The template writes the special tokens itself.
		return tz.maskSpans(text, false, tz.spans(text), tz.Template.IgnoredSpans(text))
	case PlainText:
		ids, err := tz.Tokenizer.Encode(s.Text, true)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Where, err)
		}
		out := &Tokenized{IDs: ids, LossMask: make([]uint8, len(ids))}
		for i := range out.LossMask {
			out.LossMask[i] = 1
		}
		out.truncate(tz.MaxLength)
		return out, nil
	case Completion:
		// Like plain text, with the tokenizer's special tokens (BOS), as prompts are encoded at inference.
		text := s.Prompt + s.Completion
		return tz.maskSpans(text, true, [][2]int{{len(s.Prompt), len(text)}}, nil)
	}
	return nil, fmt.Errorf("%s: unknown sample kind %d", s.Where, s.Kind)
}

func (tz *Tokenizing) spans(text string) [][2]int {
	spans := tz.Template.AssistantSpans(text)
	if tz.TrainOnlyLastTurn && len(spans) > 1 {
		spans = spans[len(spans)-1:]
	}
	return spans
}

// maskSpans tokenizes text and sets the loss on the tokens of the spans, then clears it on the ignored
// spans. Span boundaries become token positions by counting the tokens of the text before them, as
// SpecForge does, so masks agree with it token for token.
func (tz *Tokenizing) maskSpans(text string, addSpecial bool, spans, ignored [][2]int) (*Tokenized, error) {
	e, err := tz.Tokenizer.EncodeOffsets(text, addSpecial)
	if err != nil {
		return nil, err
	}
	out := &Tokenized{IDs: e.IDs, LossMask: make([]uint8, len(e.IDs))}
	set := func(span [2]int, v uint8) error {
		from, err := tz.Tokenizer.PrefixTokenCount(text, e, span[0])
		if err != nil {
			return err
		}
		to, err := tz.Tokenizer.PrefixTokenCount(text, e, span[1])
		if err != nil {
			return err
		}
		for i := from; i < to; i++ {
			out.LossMask[i] = v
		}
		return nil
	}
	for _, sp := range spans {
		if err := set(sp, 1); err != nil {
			return nil, err
		}
	}
	for _, sp := range ignored {
		if err := set(sp, 0); err != nil {
			return nil, err
		}
	}
	out.truncate(tz.MaxLength)
	return out, nil
}

func (t *Tokenized) truncate(maxLength int) {
	if maxLength > 0 && len(t.IDs) > maxLength {
		t.IDs, t.LossMask, t.Truncated = t.IDs[:maxLength], t.LossMask[:maxLength], true
	}
}

// LossTokens counts the tokens that carry loss.
func (t *Tokenized) LossTokens() int {
	n := 0
	for _, m := range t.LossMask {
		n += int(m)
	}
	return n
}
