package main

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The catalog pages: home, department, article, search. Signed out they are the
// same for everyone and the gateway may cache them (page_max_age).

// homePage is the data of the home page.
type homePage struct {
	Featured []Article
}

func (s *server) home(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	ctx := r.Context()
	cart := s.startCart(ctx, q)
	st := s.newSite(w, r, q.sess, "")
	var list ArticleList
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		list, err = s.gw.articles(ctx, q.who, articleQuery{Page: 1, PerPage: featuredN})
		return err
	})
	s.finish(w, r, st, cart)
	cache := cachePolicy(s.pageMaxAge.Get())
	if err != nil {
		// The home page without featured articles is still a page.
		s.log.WarnContext(ctx, "featured articles unavailable", "error", err)
		cache = min(cache, cachePolicy(degradedMaxAge))
	}
	if st.Departments == nil {
		cache = min(cache, cachePolicy(degradedMaxAge))
	}
	s.pages.render(w, http.StatusOK, "home", st, homePage{Featured: list.Articles}, cache)
}

// departmentPage is the data of a department page.
type departmentPage struct {
	Department *Department
	Category   *Category // nil: all categories
	Articles   []Article
	Pager      pager
}

func (s *server) department(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	ctx := r.Context()
	cart := s.startCart(ctx, q)
	st := s.newSite(w, r, q.sess, "")
	if st.Departments == nil {
		s.finish(w, r, st, cart)
		s.upstreamFail(w, r, st, "department", errors.New("departments unavailable"))
		return
	}
	d := findDept(st.Departments, r.PathValue("id"))
	if d == nil {
		s.finish(w, r, st, cart)
		s.fail(w, r, st, http.StatusNotFound, "Not found", "There is no such department.")
		return
	}
	p := departmentPage{Department: d}
	aq := articleQuery{Department: d.ID, Page: pageParam(r), PerPage: perPage}
	links := url.Values{}
	if c := r.URL.Query().Get("category"); c != "" {
		if p.Category = findCategory(d, c); p.Category == nil {
			s.finish(w, r, st, cart)
			s.fail(w, r, st, http.StatusNotFound, "Not found", "There is no such category in "+d.Name+".")
			return
		}
		aq.Category = p.Category.ID
		links.Set("category", p.Category.ID)
	}
	var list ArticleList
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		list, err = s.gw.articles(ctx, q.who, aq)
		return err
	})
	s.finish(w, r, st, cart)
	if err != nil {
		s.upstreamFail(w, r, st, "article list", err)
		return
	}
	p.Articles = list.Articles
	p.Pager = newPager(list, "/departments/"+url.PathEscape(d.ID), links)
	st.Title = d.Name
	if p.Category != nil {
		st.Title = p.Category.Name + " · " + d.Name
	}
	s.pages.render(w, http.StatusOK, "department", st, p, cachePolicy(s.pageMaxAge.Get()))
}

// articlePage is the data of an article page.
type articlePage struct {
	Article         Article
	Department      *Department // nil when the article's department is not known
	Category        *Category
	Recommendations []Article // empty: the block is left out
}

func (s *server) article(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	ctx := r.Context()
	id := r.PathValue("id")
	cart := s.startCart(ctx, q)
	recs := s.startRecs(ctx, q.who, id)
	st := s.newSite(w, r, q.sess, "")
	var a Article
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		a, err = s.gw.article(ctx, q.who, id)
		return err
	})
	s.finish(w, r, st, cart)
	if err != nil {
		recs.cancel()
		s.upstreamFail(w, r, st, "article", err)
		return
	}
	p := articlePage{Article: a}
	p.Department = findDept(st.Departments, a.Department)
	p.Category = findCategory(p.Department, a.Category)
	cache := cachePolicy(s.pageMaxAge.Get())
	var ok bool
	if p.Recommendations, ok = recs.wait(a.ID); !ok {
		w.Header().Set("X-Shop-Degraded", "recommendations")
		cache = min(cache, cachePolicy(degradedMaxAge))
	}
	st.Title = a.Name
	s.pages.render(w, http.StatusOK, "article", st, p, cache)
}

// recsCall is a recommendations request in flight, bounded by the
// recommendations_timeout budget.
type recsCall struct {
	s      *server
	off    bool
	start  time.Time
	ch     chan recsResult
	cancel context.CancelFunc
}

type recsResult struct {
	list []Article
	err  error
}

// startRecs begins fetching the recommendations for the article, unless they are
// switched off.
func (s *server) startRecs(ctx context.Context, who caller, id string) *recsCall {
	c := &recsCall{s: s, cancel: func() {}}
	if !s.showRecs.Get() {
		c.off = true
		return c
	}
	ctx, c.cancel = context.WithTimeout(ctx, s.recsTimeout.Get())
	c.ch = make(chan recsResult, 1)
	go func() {
		list, err := s.gw.recommendations(ctx, who, id)
		c.ch <- recsResult{list, err}
	}()
	return c
}

// wait returns the recommendations (without the article itself, at most maxRecs),
// waiting no longer than the budget. ok is false when they failed or timed out:
// the page is then shown without them. Switched off is not a failure.
func (c *recsCall) wait(self string) (list []Article, ok bool) {
	defer c.cancel()
	if c.off {
		c.s.recsOff.Inc()
		return nil, true
	}
	res := <-c.ch // the call ends by the budget's deadline at the latest
	if res.err != nil {
		if errors.Is(res.err, context.DeadlineExceeded) {
			c.s.recsTimedOut.Inc()
		} else {
			c.s.recsFailed.Inc()
		}
		c.s.log.Debug("article page without recommendations", "error", res.err)
		return nil, false
	}
	c.s.recsShown.Inc()
	out := make([]Article, 0, min(len(res.list), maxRecs))
	for _, a := range res.list {
		if a.ID != self && len(out) < maxRecs {
			out = append(out, a)
		}
	}
	return out, true
}

// searchPage is the data of the search page.
type searchPage struct {
	Query    string
	Articles []Article
	Pager    pager
}

func (s *server) search(w http.ResponseWriter, r *http.Request) {
	q := s.begin(w, r)
	ctx := r.Context()
	text := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(text) > maxQueryLen {
		text = text[:maxQueryLen]
	}
	cart := s.startCart(ctx, q)
	st := s.newSite(w, r, q.sess, "Search")
	st.Query = text
	p := searchPage{Query: text}
	if text == "" {
		s.finish(w, r, st, cart)
		s.pages.render(w, http.StatusOK, "search", st, p, cachePolicy(s.pageMaxAge.Get()))
		return
	}
	var list ArticleList
	err := withTimeout(ctx, s.cfg.APITimeout, func(ctx context.Context) (err error) {
		list, err = s.gw.articles(ctx, q.who, articleQuery{Q: text, Page: pageParam(r), PerPage: perPage})
		return err
	})
	s.finish(w, r, st, cart)
	if err != nil {
		s.upstreamFail(w, r, st, "search", err)
		return
	}
	p.Articles = list.Articles
	p.Pager = newPager(list, "/search", url.Values{"q": {text}})
	st.Title = "Search: " + text
	s.pages.render(w, http.StatusOK, "search", st, p, cachePolicy(s.pageMaxAge.Get()))
}
