package shopdata

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestGenerateIsDeterministic(t *testing.T) {
	a, b := generate(seed), generate(seed)
	if !reflect.DeepEqual(a.articles, b.articles) || !reflect.DeepEqual(a.departments, b.departments) {
		t.Fatal("two generations from the same seed differ")
	}
	if other := generate(seed + 1); reflect.DeepEqual(a.articles, other.articles) {
		t.Fatal("another seed gives the same data set")
	}
	// Pinned: the data set must not change by accident (a new Go version, a refactoring),
	// since inventory's stock and the tests of other services rely on it. Update these
	// when the word lists or the seed change on purpose.
	s := Default()
	if s.Len() != 3082 {
		t.Errorf("Len = %d, want 3082", s.Len())
	}
	if a, _ := s.Article("1"); a.Name != "Peakline Trail Swim Fins Size S" || a.PriceCents != 1899 || a.StockHint != 340 {
		t.Errorf("article 1 = %+v", a)
	}
	if a, _ := s.Article("3082"); a.ID != "3082" || a.Name == "" {
		t.Errorf("article 3082 = %+v", a)
	}
}

func TestDataSetIsPlausible(t *testing.T) {
	s := Default()
	if n := s.Len(); n < 2500 || n > 3500 {
		t.Errorf("%d articles, want about 3,000", n)
	}
	deps := s.Departments()
	if len(deps) < 8 || len(deps) > 10 {
		t.Errorf("%d departments, want 8 to 10", len(deps))
	}
	cats := map[string]string{} // category -> department
	total := 0
	for _, d := range deps {
		if len(d.Categories) < 4 || len(d.Categories) > 8 {
			t.Errorf("department %s has %d categories", d.ID, len(d.Categories))
		}
		if got, ok := s.Department(d.ID); !ok || got.Name != d.Name {
			t.Errorf("Department(%q) = %+v, %v", d.ID, got, ok)
		}
		for _, c := range d.Categories {
			if _, dup := cats[c.ID]; dup {
				t.Errorf("category ID %s used twice", c.ID)
			}
			cats[c.ID] = d.ID
			if got, ok := s.Category(c.ID); !ok || got != c || got.Department != d.ID {
				t.Errorf("Category(%q) = %+v, %v", c.ID, got, ok)
			}
			if c.Count < 20 {
				t.Errorf("category %s has only %d articles", c.ID, c.Count)
			}
			total += c.Count
		}
	}
	if total != s.Len() {
		t.Errorf("category counts add up to %d, not %d", total, s.Len())
	}
	names := map[string]bool{}
	low := 0
	counts := map[string]int{}
	for i, a := range s.Articles() {
		if a.ID != strconv.Itoa(i+1) {
			t.Fatalf("article %d has ID %q", i, a.ID)
		}
		if cats[a.Category] != a.Department {
			t.Errorf("article %s: category %q is not in department %q", a.ID, a.Category, a.Department)
		}
		counts[a.Category]++
		if names[a.Name] {
			t.Errorf("name %q used twice", a.Name)
		}
		names[a.Name] = true
		if a.PriceCents < 99 || a.PriceCents > 500000 || a.PriceCents%50 != 49 && a.PriceCents%100 != 99 {
			t.Errorf("article %s: price %d", a.ID, a.PriceCents)
		}
		if a.StockHint < 3 || a.StockHint > 500 {
			t.Errorf("article %s: stock %d", a.ID, a.StockHint)
		}
		if a.StockHint <= 50 {
			low++
		}
		if len(a.Description) < 40 || !strings.HasSuffix(a.Description, ".") {
			t.Errorf("article %s: description %q", a.ID, a.Description)
		}
	}
	for _, d := range deps {
		for _, c := range d.Categories {
			if counts[c.ID] != c.Count {
				t.Errorf("category %s: count %d, but %d articles", c.ID, c.Count, counts[c.ID])
			}
		}
	}
	if low < s.Len()/10 || low > s.Len()/2 {
		t.Errorf("%d articles with 50 or fewer in stock", low)
	}
}

func TestLookups(t *testing.T) {
	s := Default()
	for _, id := range []string{"", "0", "01", "-1", "3083", "x", "1.0", "99999999999999"} {
		if a, ok := s.Article(id); ok {
			t.Errorf("Article(%q) = %+v", id, a)
		}
	}
	if _, ok := s.Department("nope"); ok {
		t.Error("unknown department found")
	}
	if _, ok := s.Category("electronics"); ok {
		t.Error("a department found as a category")
	}
	// Results are copies.
	d := s.Departments()
	d[0].Categories[0].Name = "changed"
	if s.Departments()[0].Categories[0].Name == "changed" {
		t.Error("Departments returned the set's own slice")
	}
}

// match is the reference for Search: the obvious loop.
func match(a Article, q Query) bool {
	if q.Department != "" && a.Department != q.Department || q.Category != "" && a.Category != q.Category {
		return false
	}
	name := tokens(a.Name)
	for i, w := range tokens(q.Text) {
		if i == MaxQueryWords {
			break
		}
		found := false
		for _, n := range name {
			if strings.HasPrefix(n, w) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestSearch(t *testing.T) {
	s := Default()
	tests := []struct {
		name    string
		q       Query
		atLeast int // matches at least
		none    bool
	}{
		{"everything", Query{}, 3000, false},
		{"department", Query{Department: "books"}, 200, false},
		{"category", Query{Category: "headphones"}, 40, false},
		{"department and category", Query{Department: "electronics", Category: "headphones"}, 40, false},
		{"category of another department", Query{Department: "books", Category: "headphones"}, 0, true},
		{"unknown department", Query{Department: "cars"}, 0, true},
		{"unknown category", Query{Category: "cars"}, 0, true},
		{"word", Query{Text: "Headphones"}, 5, false},
		{"case and prefix", Query{Text: "wIRELESS head"}, 1, false},
		{"punctuation splits words", Query{Text: "non-stick"}, 5, false},
		{"words in any order", Query{Text: "pan frying"}, 1, false},
		{"two words in a category", Query{Category: "cookware", Text: "cast iron"}, 1, false},
		{"no such word", Query{Text: "zeppelin"}, 0, true},
		{"a word must start a word", Query{Text: "phones"}, 0, true},
		{"blank text", Query{Text: "  ,. "}, 3000, false},
		{"unicode", Query{Text: "lumière"}, 5, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := s.Search(tt.q)
			var want []Article
			for _, a := range s.Articles() {
				if match(a, tt.q) {
					want = append(want, a)
				}
			}
			if res.Total != len(want) || !reflect.DeepEqual(res.Articles, want) && len(want) > 0 {
				t.Fatalf("Total %d, %d articles; the reference finds %d", res.Total, len(res.Articles), len(want))
			}
			if tt.none && res.Total != 0 || !tt.none && res.Total < tt.atLeast {
				t.Fatalf("Total %d", res.Total)
			}
		})
	}
}

func TestSearchPages(t *testing.T) {
	s := Default()
	all := s.Search(Query{Department: "garden"})
	var paged []Article
	for off := 0; ; off += 24 {
		res := s.Search(Query{Department: "garden", Offset: off, Limit: 24})
		if res.Total != all.Total {
			t.Fatalf("offset %d: Total %d, want %d", off, res.Total, all.Total)
		}
		if len(res.Articles) == 0 {
			break
		}
		if len(res.Articles) > 24 {
			t.Fatalf("offset %d: %d articles", off, len(res.Articles))
		}
		paged = append(paged, res.Articles...)
	}
	if !reflect.DeepEqual(paged, all.Articles) {
		t.Fatal("the pages together are not the whole result")
	}
	if res := s.Search(Query{Offset: -5, Limit: 2}); len(res.Articles) != 2 || res.Articles[0].ID != "1" {
		t.Fatalf("negative offset: %+v", res.Articles)
	}
}

func BenchmarkSearch(b *testing.B) {
	s := Default()
	for _, q := range []Query{
		{Department: "electronics", Offset: 48, Limit: 24},
		{Text: "wireless head", Limit: 24},
		{Department: "home-kitchen", Text: "s", Limit: 24},
	} {
		b.Run(q.Department+"/"+q.Text, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Search(q)
			}
		})
	}
}
