package pipeline

import (
	"fmt"
	"io"
	"strings"

	"github.com/specforge/specforge/internal/chat"
	"github.com/specforge/specforge/internal/draft"
	"github.com/specforge/specforge/internal/export"
	"github.com/specforge/specforge/internal/model"
	"github.com/specforge/specforge/internal/specdecode"
	"github.com/specforge/specforge/internal/tokenizer"
)

// Decoding is a target with its tokenizer and, when one was asked for, a draft fitted to it: what bench and
// generate decode with.
type Decoding struct {
	Target    *model.Model
	Draft     *draft.Draft         // nil without a draft folder
	Tokenizer *tokenizer.Tokenizer // nil when the target folder has no tokenizer.json
}

// LoadDecoding loads the target of targetDir, the draft of draftDir (any layout ReadDraft reads; none when
// draftDir is "") checked against it, and the target's tokenizer when it has one. Warnings go to log. Close
// releases the target.
func LoadDecoding(targetDir, draftDir string, log io.Writer) (*Decoding, error) {
	target, err := model.Load(targetDir)
	if err != nil {
		return nil, err
	}
	d := &Decoding{Target: target}
	if draftDir != "" {
		im, err := ReadDraft(draftDir, log)
		if err == nil {
			d.Draft, err = im.ForTarget(&target.Head)
		}
		if err != nil {
			target.Close()
			return nil, err
		}
	}
	if d.Tokenizer, err = tokenizer.LoadIfPresent(targetDir); err != nil {
		target.Close()
		return nil, err
	}
	return d, nil
}

// Decoder is the speculative decoder of the target and the draft.
func (d *Decoding) Decoder() *specdecode.Decoder {
	return &specdecode.Decoder{Target: d.Target, Draft: d.Draft}
}

// Close releases the target's memory-mapped weights.
func (d *Decoding) Close() error { return d.Target.Close() }

// EncodePrompts tokenizes texts as user prompts: through the chat template of the target's tokenizer when
// chatTemplate is set and it has one (a single user turn and the generation prompt), else as plain text
// with the tokenizer's special tokens; each is cut to maxTokens when that is positive.
func (d *Decoding) EncodePrompts(texts []string, chatTemplate bool, maxTokens int) ([][]int32, error) {
	tok := d.Tokenizer
	if tok == nil {
		return nil, fmt.Errorf("%s has no tokenizer.json to encode prompts with", d.Target.Dir)
	}
	var renderer chat.Renderer
	if chatTemplate {
		r, ok, err := chat.TokenizerRenderer(d.Target.Dir)
		if err != nil {
			return nil, err
		}
		if ok {
			renderer = r
		}
	}
	out := make([][]int32, 0, len(texts))
	for _, text := range texts {
		var ids []int32
		var err error
		if renderer != nil {
			rendered, rerr := renderer.Render(chat.Conversation{Messages: []map[string]any{{"role": "user", "content": text}}, AddGenerationPrompt: true})
			if rerr != nil {
				return nil, rerr
			}
			ids, err = tok.Encode(rendered, false)
		} else {
			ids, err = tok.Encode(text, true)
		}
		if err != nil {
			return nil, err
		}
		if maxTokens > 0 && len(ids) > maxTokens {
			ids = ids[:maxTokens]
		}
		out = append(out, ids)
	}
	return out, nil
}

// ReadDraft reads a draft folder in any layout export.Read knows, or a specforge checkpoint, warning on log
// about the tensors of its files a draft does not read.
func ReadDraft(dir string, log io.Writer) (*export.Imported, error) {
	im, err := export.Read(dir)
	if err == nil && len(im.Ignored) > 0 {
		fmt.Fprintf(log, "warning: %s: tensors a draft does not read are left out: %s\n", dir, strings.Join(im.Ignored, ", "))
	}
	return im, err
}
