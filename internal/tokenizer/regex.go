package tokenizer

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// pattern is a compiled pre-tokenizer regex. Go's regexp has no look-ahead, and Hugging Face's patterns
// need it (\s+(?!\S)), so this is a small backtracking matcher for the subset those patterns use:
// alternation, (?:...) and (?i:...) groups, character classes with \p{L}, \p{N} and friends, \s \S \d \w,
// greedy quantifiers ? * + {n,m}, and look-ahead (?=...) / (?!...). Alternatives are tried in order and the
// first that matches wins, as in Oniguruma, which the tokenizers library uses.
type pattern struct {
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

type parser struct {
	src  []rune
	pos  int
	fold bool
}

func compilePattern(src string) (p *pattern, err error) {
	ps := &parser{src: []rune(src)}
	alts, err := ps.alternation()
	if err != nil {
		return nil, fmt.Errorf("pre-tokenizer regex %q: %w", src, err)
	}
	if ps.pos != len(ps.src) {
		return nil, fmt.Errorf("pre-tokenizer regex %q: unexpected %q at %d", src, string(ps.src[ps.pos]), ps.pos)
	}
	return &pattern{alts: alts}, nil
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
		end := strings.IndexRune(string(p.src[p.pos:]), '}')
		if end < 0 {
			return fmt.Errorf("unterminated {")
		}
		body := string(p.src[p.pos+1 : p.pos+end])
		lo, hi, comma := strings.Cut(body, ",")
		n, err := strconv.Atoi(lo)
		if err != nil {
			return fmt.Errorf("bad repetition {%s}", body)
		}
		a.min, a.max = n, n
		if comma {
			a.max = -1
			if hi != "" {
				if a.max, err = strconv.Atoi(hi); err != nil {
					return fmt.Errorf("bad repetition {%s}", body)
				}
			}
		}
		p.pos += end
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

// match returns the end of the first match starting at pos, or -1.
func (p *pattern) match(s []rune, pos int) int {
	end := -1
	matchAlts(p.alts, s, pos, func(e int) bool { end = e; return true })
	return end
}

func matchAlts(alts [][]atom, s []rune, pos int, k func(int) bool) bool {
	for _, seq := range alts {
		if matchSeq(seq, s, pos, k) {
			return true
		}
	}
	return false
}

// matchSeq matches seq at pos and calls k with each candidate end, greedy first, until k accepts one.
func matchSeq(seq []atom, s []rune, pos int, k func(int) bool) bool {
	if len(seq) == 0 {
		return k(pos)
	}
	a := &seq[0]
	rest := seq[1:]
	switch a.kind {
	case atomLookahead:
		found := matchAlts(a.alts, s, pos, func(int) bool { return true })
		if found == a.negative {
			return false
		}
		return matchSeq(rest, s, pos, k)
	case atomGroup:
		return matchGroup(a, rest, s, pos, 0, k)
	}
	// A single-character atom: take as many as allowed, then give back one at a time.
	n := 0
	for pos+n < len(s) && (a.max < 0 || n < a.max) && a.matchRune(s[pos+n]) {
		n++
	}
	for ; n >= a.min; n-- {
		if matchSeq(rest, s, pos+n, k) {
			return true
		}
	}
	return false
}

func matchGroup(a *atom, rest []atom, s []rune, pos, count int, k func(int) bool) bool {
	if a.max < 0 || count < a.max {
		if matchAlts(a.alts, s, pos, func(e int) bool {
			return e > pos && matchGroup(a, rest, s, e, count+1, k)
		}) {
			return true
		}
	}
	return count >= a.min && matchSeq(rest, s, pos, k)
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
// piece, and so is every stretch of text between matches.
func (p *pattern) split(s string) []string {
	// byteAt[i] is where rune i starts in s; an invalid byte is a rune (U+FFFD) of one byte.
	rs := make([]rune, 0, len(s))
	byteAt := make([]int, 0, len(s)+1)
	for b, r := range s {
		rs, byteAt = append(rs, r), append(byteAt, b)
	}
	byteAt = append(byteAt, len(s))
	var out []string
	gap := 0
	for pos := 0; pos < len(rs); {
		end := p.match(rs, pos)
		if end <= pos {
			pos++
			continue
		}
		if gap < pos {
			out = append(out, s[byteAt[gap]:byteAt[pos]])
		}
		out = append(out, s[byteAt[pos]:byteAt[end]])
		pos, gap = end, end
	}
	if gap < len(rs) {
		out = append(out, s[byteAt[gap]:])
	}
	return out
}
