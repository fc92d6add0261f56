package shopdata

import (
	"math"
	"strconv"
	"strings"
)

// generate builds the data set from the word lists and the seed.
func generate(seed uint64) *Set {
	r := &rng{state: seed}
	s := &Set{
		categories: map[string]Category{},
		deptIndex:  map[string]int{},
		byDept:     map[string]bitset{},
		byCat:      map[string]bitset{},
	}
	names := map[string]bool{}
	var all []Article
	for _, d := range departments {
		dept := Department{ID: d.id, Name: d.name}
		for _, c := range d.categories {
			n := 42 + r.intn(30)
			made := 0
			for i := 0; i < n; i++ {
				a, ok := makeArticle(r, d, c, names)
				if !ok {
					break // the category's word lists are exhausted
				}
				all = append(all, a)
				made++
			}
			dept.Categories = append(dept.Categories, Category{ID: c.id, Name: c.name, Count: made, Department: d.id})
		}
		s.deptIndex[d.id] = len(s.departments)
		s.departments = append(s.departments, dept)
		for _, c := range dept.Categories {
			s.categories[c.ID] = c
		}
	}
	// Shuffle, so that a department's listing in ID order mixes its categories.
	for i := len(all) - 1; i > 0; i-- {
		j := r.intn(i + 1)
		all[i], all[j] = all[j], all[i]
	}
	for i := range all {
		all[i].ID = strconv.Itoa(i + 1)
		dept, cat := s.byDept[all[i].Department], s.byCat[all[i].Category]
		if dept == nil {
			dept = newBitset(len(all))
			s.byDept[all[i].Department] = dept
		}
		if cat == nil {
			cat = newBitset(len(all))
			s.byCat[all[i].Category] = cat
		}
		dept.set(i)
		cat.set(i)
	}
	s.articles = all
	s.words = buildWordIndex(all)
	return s
}

// makeArticle makes an article of category c with a name not in names (which it
// adds), or returns false after many collisions.
func makeArticle(r *rng, d deptSpec, c catSpec, names map[string]bool) (Article, bool) {
	for try := 0; try < 200; try++ {
		brand, adj, noun := pick(r, d.brands), pick(r, d.adjectives), pick(r, c.nouns)
		var name, desc string
		if d.books {
			title := adj + " " + noun
			if r.intn(2) == 0 {
				title = "The " + title
			}
			name = title + " " + pick(r, c.variants)
			desc = "A " + strings.ToLower(c.name) + " title by " + brand + ". "
		} else {
			name = brand + " " + adj + " " + noun
			variant := ""
			if len(c.variants) > 0 && r.intn(10) < 7 {
				variant = pick(r, c.variants)
				name += " " + variant
			}
			desc = "The " + adj + " " + noun + " from " + brand
			if variant != "" {
				desc += ", " + variant
			}
			desc += ". "
		}
		if names[name] {
			continue
		}
		names[name] = true
		f1 := r.intn(len(c.features))
		f2 := (f1 + 1 + r.intn(len(c.features)-1)) % len(c.features)
		desc += c.features[f1] + " " + c.features[f2] + " " + pick(r, d.closing)
		return Article{
			Name:        name,
			Department:  d.id,
			Category:    c.id,
			PriceCents:  price(r, c.minCents, c.maxCents),
			Description: desc,
			StockHint:   stock(r),
		}, true
	}
	return Article{}, false
}

// price draws a price between lo and hi cents, log-uniformly (cheap things are more
// common), rounded to a shop price: 4.99, 24.99, 399.99.
func price(r *rng, lo, hi int) int {
	p := math.Exp(math.Log(float64(lo)) + r.float()*(math.Log(float64(hi))-math.Log(float64(lo))))
	step := 50.0
	switch {
	case p >= 20000:
		step = 1000
	case p >= 2000:
		step = 100
	}
	c := int(math.Round(p/step)*step) - 1
	return max(c, 99)
}

// stock draws an initial stock: some articles are scarce (3 to 12), some low (13 to
// 50), most plentiful (51 to 500).
func stock(r *rng) int {
	switch n := r.intn(100); {
	case n < 12:
		return 3 + r.intn(10)
	case n < 30:
		return 13 + r.intn(38)
	default:
		return 51 + r.intn(450)
	}
}

func pick(r *rng, words []string) string { return words[r.intn(len(words))] }

// rng is SplitMix64: tiny, fast and, unlike math/rand's derived methods, fixed
// forever, so the data set never changes with the Go version.
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a number in [0, n); the modulo bias is irrelevant for n this small.
func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// float returns a number in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }
