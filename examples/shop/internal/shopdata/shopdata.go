// Package shopdata is the demo shop's merchandise: a deterministic data set of about
// 3,000 articles in nine departments of six categories each, generated from word
// lists (words.go) and a fixed seed the first time it is used, with the indexes that
// make a listing or a search cost microseconds.
//
// The data set is the same in every process and on every run, so that two catalog
// instances agree on every article, and inventory can seed its stock from
// Article.StockHint. Everything returned is a copy or immutable; a Set is safe for
// concurrent use.
//
// The types' JSON form is the catalog API's (examples/shop/README.md), so other
// services can decode the catalog's answers into them.
package shopdata

import (
	"strconv"
	"sync"
)

// Department is a department of the shop with its categories.
type Department struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Categories []Category `json:"categories"`
}

// Category is a category of one department.
type Category struct {
	ID         string `json:"id"` // unique across departments
	Name       string `json:"name"`
	Count      int    `json:"count"` // its articles
	Department string `json:"-"`     // the department's ID
}

// Article is one article.
type Article struct {
	ID          string `json:"id"` // "1" to strconv.Itoa(Len())
	Name        string `json:"name"`
	Department  string `json:"department"` // department ID
	Category    string `json:"category"`   // category ID
	PriceCents  int    `json:"price_cents"`
	Description string `json:"description"`
	// StockHint is the article's initial stock (3 to 500; about a third of the
	// articles have 50 or fewer). Inventory seeds its counts from it; the live count is
	// inventory's.
	StockHint int `json:"stock_hint"`
}

// Set is the data set with its indexes. It is immutable.
type Set struct {
	departments []Department // with categories and counts
	categories  map[string]Category
	deptIndex   map[string]int // department ID -> index in departments
	articles    []Article      // articles[i].ID == strconv.Itoa(i+1)
	byDept      map[string]bitset
	byCat       map[string]bitset
	words       wordIndex
}

// seed is the data set's seed. Changing it changes every article.
const seed = 20251128 // Black Friday

var defaultSet = sync.OnceValue(func() *Set { return generate(seed) })

// Default returns the shop's data set, generated on the first call (a few
// milliseconds) and shared afterwards.
func Default() *Set { return defaultSet() }

// Len returns the number of articles.
func (s *Set) Len() int { return len(s.articles) }

// Departments returns every department with its categories, in display order.
func (s *Set) Departments() []Department {
	out := make([]Department, len(s.departments))
	for i, d := range s.departments {
		out[i] = d
		out[i].Categories = append([]Category(nil), d.Categories...)
	}
	return out
}

// Department returns the department with the ID.
func (s *Set) Department(id string) (Department, bool) {
	i, ok := s.deptIndex[id]
	if !ok {
		return Department{}, false
	}
	d := s.departments[i]
	d.Categories = append([]Category(nil), d.Categories...)
	return d, true
}

// Category returns the category with the ID (category IDs are unique across
// departments).
func (s *Set) Category(id string) (Category, bool) {
	c, ok := s.categories[id]
	return c, ok
}

// Article returns the article with the ID.
func (s *Set) Article(id string) (Article, bool) {
	i, ok := s.index(id)
	if !ok {
		return Article{}, false
	}
	return s.articles[i], true
}

// Articles returns every article, in ID order.
func (s *Set) Articles() []Article {
	return append([]Article(nil), s.articles...)
}

// index maps an article ID to its position, without allocating.
func (s *Set) index(id string) (int, bool) {
	if id == "" || id[0] == '0' || len(id) > 9 {
		return 0, false
	}
	n, err := strconv.Atoi(id)
	if err != nil || n < 1 || n > len(s.articles) {
		return 0, false
	}
	return n - 1, true
}
