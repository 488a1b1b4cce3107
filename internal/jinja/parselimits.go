package jinja

import (
	"fmt"
	"regexp"
)

// gonja's parser recurses about ten frames per nesting level, so a template of 100,000 nested parentheses
// overflows Go's 1 GB stack while it is parsed, a fatal error rather than a panic. The source is checked
// before it reaches the parser.
const (
	// maxTemplateBytes bounds a template's source: the largest in use (tool-calling templates of Mistral,
	// Llama 3.1, Qwen3) are under 20 KB.
	maxTemplateBytes = 1 << 20
	// maxParseNesting bounds how deeply brackets and block tags nest in the source; real templates nest
	// under 10 deep, and gonja parses 1,000 levels in a few MB of stack.
	maxParseNesting = 256
)

// blockTag matches the keyword of a statement tag.
var blockTag = regexp.MustCompile(`\{%[-+]?\s*(\w+)`)

// opensBlock are the statements with an end tag ({% set %} with a body is counted as an expression-free
// block by its endset, which its own tag cannot be told from here, so set is left out: it cannot nest
// deeper than the blocks around it anyway).
var opensBlock = map[string]bool{"if": true, "for": true, "macro": true, "call": true, "filter": true, "block": true,
	"with": true, "autoescape": true, "raw": true, "generation": true}

// checkSource refuses a template source over maxTemplateBytes or nested deeper than maxParseNesting, in
// brackets ( [ { or in block tags.
func checkSource(src string) error {
	if len(src) > maxTemplateBytes {
		return &LimitError{Limit: "maxTemplateBytes", What: fmt.Sprintf("source of %d bytes, over %d", len(src), maxTemplateBytes)}
	}
	depth := 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '(', '[', '{':
			if depth++; depth > maxParseNesting {
				return &LimitError{Limit: "maxParseNesting", What: fmt.Sprintf("brackets nest more than %d deep at byte %d", maxParseNesting, i)}
			}
		case ')', ']', '}':
			depth = max(depth-1, 0) // prose may close what it never opened
		}
	}
	depth = 0
	for _, m := range blockTag.FindAllStringSubmatchIndex(src, -1) {
		word := src[m[2]:m[3]]
		switch {
		case opensBlock[word]:
			if depth++; depth > maxParseNesting {
				return &LimitError{Limit: "maxParseNesting", What: fmt.Sprintf("blocks nest more than %d deep at byte %d", maxParseNesting, m[0])}
			}
		case len(word) > 3 && word[:3] == "end" && word != "endset":
			depth = max(depth-1, 0)
		}
	}
	return nil
}
