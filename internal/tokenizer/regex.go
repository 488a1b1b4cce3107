package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// pattern is a compiled pre-tokenizer regex. Go's regexp has no look-ahead, and Hugging Face's patterns
// need it (\s+(?!\S)), so this is a small backtracking matcher for the subset those patterns use:
// alternation, (?:...) and (?i:...) groups, character classes with \p{L}, \p{N} and friends, \s \S \d \w,
// greedy quantifiers ? * + {n,m}, and look-ahead (?=...) / (?!...). Alternatives are tried in order and the
// first that matches wins, as in Oniguruma, which the tokenizers library uses.
type pattern struct {
	src  string
	alts [][]atom
}

type atomKind int

const (
	atomRune atomKind = iota
	atomClass
	atomGroup
	atomLookahead
)

type atom struct {
	kind     atomKind
	r        rune
	fold     bool // case-insensitive rune
	class    *charClass
	alts     [][]atom // group and look-ahead bodies
	negative bool     // negative look-ahead
	min, max int      // max < 0: unbounded
}

// charClass matches a rune against ranges and Unicode tables, possibly negated.
type charClass struct {
	negated bool
	ascii   [128]bool
	tables  []*unicode.RangeTable
	ranges  [][2]rune
	notIn   []*charClass // subtracted classes such as \S inside a negated set
	fold    bool
}

func (c *charClass) matches(r rune) bool {
	in := c.contains(r)
	if !in && c.fold {
		in = c.contains(unicode.ToLower(r)) || c.contains(unicode.ToUpper(r))
	}
	return in != c.negated
}

func (c *charClass) contains(r rune) bool {
	if r < 128 && c.ascii[r] {
		return true
	}
	for _, t := range c.tables {
		if unicode.Is(t, r) {
			return true
		}
	}
	for _, rg := range c.ranges {
		if r >= rg[0] && r <= rg[1] {
			return true
		}
	}
	for _, n := range c.notIn {
		if !n.matches(r) {
			return true
		}
	}
	return false
}

func (c *charClass) addRange(lo, hi rune) {
	for r := lo; r <= hi && r < 128; r++ {
		c.ascii[r] = true
	}
	if hi >= 128 {
		c.ranges = append(c.ranges, [2]rune{max(lo, 128), hi})
	}
}

var unicodeClasses = map[string]*unicode.RangeTable{
	"L": unicode.L, "N": unicode.N, "P": unicode.P, "S": unicode.S, "M": unicode.M, "Z": unicode.Z, "C": unicode.C,
	"Lu": unicode.Lu, "Ll": unicode.Ll, "Lt": unicode.Lt, "Lm": unicode.Lm, "Lo": unicode.Lo, "Nd": unicode.Nd,
	"Han": unicode.Han, "Hiragana": unicode.Hiragana, "Katakana": unicode.Katakana,
}

// spaceClass is \s: Unicode White_Space.
func spaceClass(negated bool) *charClass {
	c := &charClass{negated: negated, tables: []*unicode.RangeTable{unicode.White_Space}}
	return c
}

func digitClass(negated bool) *charClass {
	c := &charClass{negated: negated, tables: []*unicode.RangeTable{unicode.Nd}}
	return c
}

func wordClass(negated bool) *charClass {
	c := &charClass{negated: negated, tables: []*unicode.RangeTable{unicode.L, unicode.N, unicode.M, unicode.Pc}}
	return c
}

// maxPatternNesting bounds how deeply groups nest in a pattern. The parser and the matcher recurse once per
// level, so a pattern of a million '(' would overflow the goroutine stack, a fatal error rather than a
// panic; the shipped patterns nest at most 2 deep.
const maxPatternNesting = 256

type parser struct {
	src   []rune
	pos   int
	fold  bool
	depth int // groups open at pos
}

func compilePattern(src string) (p *pattern, err error) {
	ps := &parser{src: []rune(src)}
	alts, err := ps.alternation()
	if err != nil {
		return nil, fmt.Errorf("pre-tokenizer regex %s: %w", quoteShort(src), err)
	}
	if ps.pos != len(ps.src) {
		return nil, fmt.Errorf("pre-tokenizer regex %s: unexpected %q at %d", quoteShort(src), string(ps.src[ps.pos]), ps.pos)
	}
	return &pattern{src: src, alts: alts}, nil
}

// quoteShort quotes a pattern for an error message, cut to its first 200 bytes: a hostile one may be
// megabytes long.
func quoteShort(src string) string {
	if len(src) <= 200 {
		return strconv.Quote(src)
	}
	return strconv.Quote(src[:runeStartBefore(src, 200)]) + "..."
}

func (p *parser) more() bool { return p.pos < len(p.src) }
func (p *parser) peek() rune { return p.src[p.pos] }

func (p *parser) alternation() ([][]atom, error) {
	var alts [][]atom
	for {
		seq, err := p.sequence()
		if err != nil {
			return nil, err
		}
		alts = append(alts, seq)
		if !p.more() || p.peek() != '|' {
			return alts, nil
		}
		p.pos++
	}
}

func (p *parser) sequence() ([]atom, error) {
	var seq []atom
	for p.more() && p.peek() != '|' && p.peek() != ')' {
		a, err := p.atom()
		if err != nil {
			return nil, err
		}
		if err := p.quantifier(&a); err != nil {
			return nil, err
		}
		seq = append(seq, a)
	}
	return seq, nil
}

func (p *parser) atom() (atom, error) {
	r := p.peek()
	p.pos++
	switch r {
	case '(':
		return p.group()
	case '[':
		c, err := p.class()
		return atom{kind: atomClass, class: c, min: 1, max: 1}, err
	case '\\':
		return p.escape(false)
	case '.':
		return atom{kind: atomClass, class: &charClass{negated: true, ascii: newlineASCII()}, min: 1, max: 1}, nil
	case '^', '$':
		return atom{}, fmt.Errorf("anchors are not supported")
	}
	return atom{kind: atomRune, r: r, fold: p.fold, min: 1, max: 1}, nil
}

func newlineASCII() (a [128]bool) {
	a['\n'] = true
	return a
}

func (p *parser) group() (atom, error) {
	if p.depth++; p.depth > maxPatternNesting {
		return atom{}, fmt.Errorf("groups nest more than %d deep (maxPatternNesting)", maxPatternNesting)
	}
	defer func() { p.depth-- }()
	kind, negative, fold := atomGroup, false, p.fold
	if p.more() && p.peek() == '?' {
		p.pos++
		if !p.more() {
			return atom{}, fmt.Errorf("unterminated group")
		}
		switch p.peek() {
		case ':':
			p.pos++
		case '=', '!':
			kind, negative = atomLookahead, p.peek() == '!'
			p.pos++
		case 'i':
			p.pos++
			if !p.more() || p.peek() != ':' {
				return atom{}, fmt.Errorf("only the (?i:...) flag group is supported")
			}
			p.pos++
			fold = true
		default:
			return atom{}, fmt.Errorf("group (?%c is not supported", p.peek())
		}
	}
	saved := p.fold
	p.fold = fold
	alts, err := p.alternation()
	p.fold = saved
	if err != nil {
		return atom{}, err
	}
	if !p.more() || p.peek() != ')' {
		return atom{}, fmt.Errorf("missing )")
	}
	p.pos++
	return atom{kind: kind, alts: alts, negative: negative, min: 1, max: 1}, nil
}

// escape parses what follows a backslash; inClass reports whether it is inside [...].
func (p *parser) escape(inClass bool) (atom, error) {
	if !p.more() {
		return atom{}, fmt.Errorf("trailing backslash")
	}
	r := p.peek()
	p.pos++
	one := func(c *charClass) (atom, error) { return atom{kind: atomClass, class: c, min: 1, max: 1}, nil }
	switch r {
	case 's', 'S':
		return one(spaceClass(r == 'S'))
	case 'd', 'D':
		return one(digitClass(r == 'D'))
	case 'w', 'W':
		return one(wordClass(r == 'W'))
	case 'p', 'P':
		if !p.more() || p.peek() != '{' {
			return atom{}, fmt.Errorf(`\p needs {Class}`)
		}
		end := p.pos
		for end < len(p.src) && p.src[end] != '}' {
			end++
		}
		if end == len(p.src) {
			return atom{}, fmt.Errorf(`unterminated \p{`)
		}
		name := string(p.src[p.pos+1 : end])
		p.pos = end + 1
		t, ok := unicodeClasses[name]
		if !ok {
			return atom{}, fmt.Errorf(`unicode class \p{%s} is not supported`, name)
		}
		return one(&charClass{negated: r == 'P', tables: []*unicode.RangeTable{t}})
	case 'r':
		r = '\r'
	case 'n':
		r = '\n'
	case 't':
		r = '\t'
	case 'f':
		r = '\f'
	case 'v':
		r = '\v'
	case 'x', 'u':
		n := 2
		if r == 'u' {
			n = 4
		}
		if p.pos+n > len(p.src) {
			return atom{}, fmt.Errorf(`short \%c escape`, r)
		}
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+n]), 16, 32)
		if err != nil {
			return atom{}, fmt.Errorf(`bad \%c escape`, r)
		}
		p.pos += n
		r = rune(v)
	default:
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return atom{}, fmt.Errorf(`escape \%c is not supported`, r)
		}
	}
	return atom{kind: atomRune, r: r, fold: p.fold && !inClass, min: 1, max: 1}, nil
}

func (p *parser) class() (*charClass, error) {
	c := &charClass{fold: p.fold}
	if p.more() && p.peek() == '^' {
		c.negated = true
		p.pos++
	}
	first := true
	for {
		if !p.more() {
			return nil, fmt.Errorf("unterminated [")
		}
		r := p.peek()
		if r == ']' && !first {
			p.pos++
			return c, nil
		}
		first = false
		p.pos++
		lo := r
		if r == '\\' {
			a, err := p.escape(true)
			if err != nil {
				return nil, err
			}
			if a.kind == atomClass {
				if a.class.negated {
					c.notIn = append(c.notIn, &charClass{tables: a.class.tables, ascii: a.class.ascii, ranges: a.class.ranges})
				} else {
					c.tables = append(c.tables, a.class.tables...)
					c.ranges = append(c.ranges, a.class.ranges...)
					for i, v := range a.class.ascii {
						c.ascii[i] = c.ascii[i] || v
					}
				}
				continue
			}
			lo = a.r
		}
		hi := lo
		if p.pos+1 < len(p.src) && p.peek() == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			hi = p.peek()
			p.pos++
			if hi == '\\' {
				a, err := p.escape(true)
				if err != nil || a.kind != atomRune {
					return nil, fmt.Errorf("bad range end in class")
				}
				hi = a.r
			}
		}
		c.addRange(lo, hi)
	}
}

func (p *parser) quantifier(a *atom) error {
	if !p.more() {
		return nil
	}
	switch p.peek() {
	case '?':
		a.min, a.max = 0, 1
	case '*':
		a.min, a.max = 0, -1
	case '+':
		a.min, a.max = 1, -1
	case '{':
		// p.src holds runes: look for the brace there, not in a string, whose indices are bytes.
		end := -1
		for i := p.pos; i < len(p.src); i++ {
			if p.src[i] == '}' {
				end = i
				break
			}
		}
		if end < 0 {
			return fmt.Errorf("unterminated {")
		}
		body := string(p.src[p.pos+1 : end])
		lo, hi, comma := strings.Cut(body, ",")
		n, err := strconv.Atoi(lo)
		if err != nil || n < 0 {
			return fmt.Errorf("bad repetition {%s}", body)
		}
		a.min, a.max = n, n
		if comma {
			a.max = -1
			if hi != "" {
				if a.max, err = strconv.Atoi(hi); err != nil || a.max < n {
					return fmt.Errorf("bad repetition {%s}", body)
				}
			}
		}
		p.pos = end
	default:
		return nil
	}
	p.pos++
	if p.more() && (p.peek() == '?' || p.peek() == '+') {
		return fmt.Errorf("lazy and possessive quantifiers are not supported")
	}
	if a.kind == atomLookahead {
		return fmt.Errorf("quantified look-ahead")
	}
	return nil
}

// The matcher backtracks, so a hostile pattern (nested quantifiers such as (a+)+b) can take exponential time
// and an ordinary one quadratic time on long text (a+b against a run of a's fails at every start after
// scanning the run). These limits keep one split linear in its input and bounded in memory; passing one is
// an error naming the pattern, not a silently different split:
const (
	// maxMatchSteps bounds one match attempt (one start position); a step is one atom tried or one rune
	// tested. The tokenizers' own patterns (GPT-2, Llama 3, Qwen, GPT-4o) take at most 4 steps per byte of
	// the longest match, so under 1<<18 for a whole maxChunkBytes window; 1<<22 is 16 times that and a few
	// tens of milliseconds of work.
	maxMatchSteps = 1 << 22
	// matchStepsPerByte bounds a whole split to this many steps per input byte (plus maxMatchSteps), so
	// a pattern that fails expensively at every start cannot take quadratic time: the same patterns
	// average at most 16 steps per byte on random text of spaces, newlines, letters, digits and quotes,
	// and 1 to 12 on long runs of one class.
	matchStepsPerByte = 64
	// maxMatchDepth bounds the matcher's recursion, which grows with every repetition of a quantified
	// group ((?:\p{L}\p{M}*)+ recurses about 4 levels per letter); without it a 64 KiB window could need
	// hundreds of MB of goroutine stack. 1<<16 levels is about 10 MB of stack; the shipped patterns
	// quantify no group beyond ? and stay under 50 levels.
	maxMatchDepth = 1 << 16
	// maxChunkBytes is the longest piece the pre-tokenizer yields: a match attempt sees at most this many
	// bytes from its start (so a look-ahead sees the window's end as the text's end), and text between
	// matches is cut at this length too. A 50 MB run of letters is then many pieces instead of one, so the
	// BPE model (about 30 bytes of memory per input byte and O(n log n) merges per piece) and the matcher
	// work on bounded inputs. Over-long pieces are split rather than refused because long runs are
	// legitimate text (indentation, ASCII rulers, DNA, base64); the cost is that a run longer than 64 KiB
	// may tokenize differently from Hugging Face's at the cuts.
	maxChunkBytes = 1 << 16
)

// matcher runs one split's match attempts against s with a step budget; s may be cut short of the text to
// keep a match inside maxChunkBytes.
type matcher struct {
	p     *pattern
	s     string
	steps int // left for the current attempt
	total int // left for the whole split
	depth int
	// overrun is set when a limit is passed (tooDeep: maxMatchDepth); every function then returns false
	// at once.
	overrun, tooDeep bool
}

// step spends one step and reports whether the limits allow going on.
func (m *matcher) step() bool {
	if m.steps <= 0 || m.depth > maxMatchDepth {
		m.overrun, m.tooDeep = true, m.depth > maxMatchDepth
		return false
	}
	m.steps--
	return true
}

// match returns the end of the first match starting at byte pos of s, or -1.
func (m *matcher) match(s string, pos int) (int, error) {
	m.s = s
	m.steps = min(maxMatchSteps, m.total)
	start := m.steps
	end := -1
	m.alts(m.p.alts, pos, func(e int) bool { end = e; return true })
	m.total -= start - m.steps
	switch {
	case !m.overrun:
		return end, nil
	case m.tooDeep:
		return -1, fmt.Errorf("pre-tokenizer regex %s: the match at byte %d nests more than %d levels deep (maxMatchDepth): a quantified group repeats too often", quoteShort(m.p.src), pos, maxMatchDepth)
	case m.total <= 0:
		return -1, fmt.Errorf("pre-tokenizer regex %s: splitting took more than %d steps per input byte (matchStepsPerByte): the pattern backtracks too much on this text", quoteShort(m.p.src), matchStepsPerByte)
	}
	return -1, fmt.Errorf("pre-tokenizer regex %s: the match at byte %d took more than %d steps (maxMatchSteps): the pattern backtracks catastrophically on this text", quoteShort(m.p.src), pos, maxMatchSteps)
}

func (m *matcher) alts(alts [][]atom, pos int, k func(int) bool) bool {
	for _, seq := range alts {
		if m.seq(seq, pos, k) {
			return true
		}
		if m.overrun {
			return false
		}
	}
	return false
}

// seq matches seq at pos and calls k with each candidate end, greedy first, until k accepts one.
func (m *matcher) seq(seq []atom, pos int, k func(int) bool) bool {
	m.depth++
	defer func() { m.depth-- }()
	if !m.step() {
		return false
	}
	if len(seq) == 0 {
		return k(pos)
	}
	a := &seq[0]
	rest := seq[1:]
	switch a.kind {
	case atomLookahead:
		found := m.alts(a.alts, pos, func(int) bool { return true })
		if m.overrun || found == a.negative {
			return false
		}
		return m.seq(rest, pos, k)
	case atomGroup:
		return m.group(a, rest, pos, 0, k)
	}
	// A single-character atom: take as many as allowed, then give back one at a time. Stepping back with
	// DecodeLastRune finds the same boundaries as decoding forward, invalid bytes included (one byte each).
	end, n := pos, 0
	for end < len(m.s) && (a.max < 0 || n < a.max) {
		if !m.step() {
			return false
		}
		r, w := utf8.DecodeRuneInString(m.s[end:])
		if !a.matchRune(r) {
			break
		}
		end, n = end+w, n+1
	}
	for ; n >= a.min; n-- {
		if m.seq(rest, end, k) {
			return true
		}
		if m.overrun {
			return false
		}
		if n > 0 {
			_, w := utf8.DecodeLastRuneInString(m.s[:end])
			end -= w
		}
	}
	return false
}

func (m *matcher) group(a *atom, rest []atom, pos, count int, k func(int) bool) bool {
	m.depth++
	defer func() { m.depth-- }()
	if !m.step() {
		return false
	}
	if a.max < 0 || count < a.max {
		if m.alts(a.alts, pos, func(e int) bool {
			return e > pos && m.group(a, rest, e, count+1, k)
		}) {
			return true
		}
		if m.overrun {
			return false
		}
	}
	return count >= a.min && m.seq(rest, pos, k)
}

func (a *atom) matchRune(r rune) bool {
	if a.kind == atomClass {
		return a.class.matches(r)
	}
	if r == a.r {
		return true
	}
	return a.fold && unicode.SimpleFold(r) != r && equalFold(r, a.r)
}

func equalFold(a, b rune) bool {
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

// split cuts s into the pieces of the Split pre-tokenizer with behaviour "Isolated": every match is a
// piece, and so is every stretch of text between matches. No piece is longer than maxChunkBytes (a gap may
// exceed it by the rest of one character).
func (p *pattern) split(s string) ([]string, error) {
	m := &matcher{p: p, total: maxMatchSteps + matchStepsPerByte*len(s)}
	var out []string
	gap := 0
	for pos := 0; pos < len(s); {
		if pos-gap >= maxChunkBytes {
			out = append(out, s[gap:pos])
			gap = pos
		}
		end, err := m.match(s[:runeStartBefore(s, pos+maxChunkBytes)], pos)
		if err != nil {
			return nil, err
		}
		if end <= pos {
			_, w := utf8.DecodeRuneInString(s[pos:])
			pos += w
			continue
		}
		if gap < pos {
			out = append(out, s[gap:pos])
		}
		out = append(out, s[pos:end])
		pos, gap = end, end
	}
	if gap < len(s) {
		out = append(out, s[gap:])
	}
	return out, nil
}

// runeStartBefore returns the largest i <= limit, i <= len(s), at which s does not cut a character in two.
func runeStartBefore(s string, limit int) int {
	if limit >= len(s) {
		return len(s)
	}
	for i := limit; i > limit-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return limit // not UTF-8 here: any byte boundary is a character boundary
}
