package shopdata

import (
	"math/bits"
	"sort"
	"strings"
	"unicode"
)

// Query selects articles. Its zero value selects every article.
type Query struct {
	Department string // department ID; "" for any
	Category   string // category ID; "" for any
	// Text is a few words; an article matches when each word starts a word of its
	// name, ignoring case ("wireless head" finds "Lumio Wireless Headphones").
	Text   string
	Offset int // matches to skip
	Limit  int // at most this many articles in the result; 0 for all
}

// Result is the answer to a Query.
type Result struct {
	Total    int       // every match, regardless of Offset and Limit
	Articles []Article // the matches from Offset on, at most Limit, in ID order
}

// MaxQueryWords bounds the words of Query.Text that are used; later ones are ignored.
const MaxQueryWords = 8

// Search returns the articles matching q. An unknown department or category matches
// nothing. It costs a few microseconds: every condition is a precomputed bitset of
// the articles, and the conditions are intersected word by word.
func (s *Set) Search(q Query) Result {
	sel := newBitset(len(s.articles))
	sel.fill(len(s.articles))
	if q.Department != "" {
		sel.and(s.byDept[q.Department]) // nil for an unknown one: and with nothing
	}
	if q.Category != "" {
		sel.and(s.byCat[q.Category])
	}
	for i, w := range tokens(q.Text) {
		if i == MaxQueryWords {
			break
		}
		sel.and(s.words.prefix(w, len(s.articles)))
	}
	res := Result{Total: sel.count()}
	if q.Offset < 0 {
		q.Offset = 0
	}
	if q.Offset >= res.Total {
		return res
	}
	n := res.Total - q.Offset
	if q.Limit > 0 && q.Limit < n {
		n = q.Limit
	}
	res.Articles = make([]Article, 0, n)
	skip := q.Offset
	for wi, word := range sel {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &= word - 1
			if skip > 0 {
				skip--
				continue
			}
			res.Articles = append(res.Articles, s.articles[wi*64+b])
			if len(res.Articles) == n {
				return res
			}
		}
	}
	return res
}

// tokens splits text into lowercase words of letters and digits.
func tokens(text string) []string {
	return strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// wordIndex maps every word of the article names to the articles whose name has it.
type wordIndex struct {
	words []string // sorted
	sets  []bitset // sets[i]: the articles with words[i]
}

func buildWordIndex(articles []Article) wordIndex {
	m := map[string]bitset{}
	for i, a := range articles {
		for _, w := range tokens(a.Name) {
			b, ok := m[w]
			if !ok {
				b = newBitset(len(articles))
				m[w] = b
			}
			b.set(i)
		}
	}
	var ix wordIndex
	for w := range m {
		ix.words = append(ix.words, w)
	}
	sort.Strings(ix.words)
	for _, w := range ix.words {
		ix.sets = append(ix.sets, m[w])
	}
	return ix
}

// prefix returns the articles with a word that starts with p.
func (ix *wordIndex) prefix(p string, n int) bitset {
	i := sort.SearchStrings(ix.words, p)
	if i < len(ix.words) && ix.words[i] == p && (i+1 == len(ix.words) || !strings.HasPrefix(ix.words[i+1], p)) {
		return ix.sets[i] // the common case: an exact, unique word; no copy needed
	}
	out := newBitset(n)
	for ; i < len(ix.words) && strings.HasPrefix(ix.words[i], p); i++ {
		out.or(ix.sets[i])
	}
	return out
}

// bitset is a set of article positions.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (i % 64) }

// fill sets positions 0 to n-1.
func (b bitset) fill(n int) {
	for i := range b {
		b[i] = ^uint64(0)
	}
	if r := n % 64; r != 0 {
		b[len(b)-1] = 1<<r - 1
	}
}

// and keeps the positions also in o (a nil o empties b).
func (b bitset) and(o bitset) {
	for i := range b {
		if i < len(o) {
			b[i] &= o[i]
		} else {
			b[i] = 0
		}
	}
}

func (b bitset) or(o bitset) {
	for i := range o {
		b[i] |= o[i]
	}
}

func (b bitset) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}
