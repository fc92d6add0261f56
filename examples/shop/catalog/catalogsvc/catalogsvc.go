// Package catalogsvc is the shop's catalog service (examples/shop/README.md): the
// departments, categories and articles of shopdata's data set, read-only, served
// from JSON encoded once at start, so that a request costs a few microseconds.
//
// Every GET answers Cache-Control: public, max-age=60 (the data never changes while
// the service runs), so the gateway and browsers may cache it.
//
//	GET /departments                  [{"id","name","categories":[{"id","name","count"}]}]
//	GET /articles?department=&category=&q=&page=1&per_page=24
//	                                  {"total","page","per_page","articles":[Article]}
//	GET /articles/{id}                Article, or 404
//
// department and category are IDs (an unknown one is a 404), q is words that must
// each start a word of the article's name (case-insensitive), per_page is 1 to
// MaxPerPage. Articles are listed in ID order.
package catalogsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Name is the service's name in the catalog.
const Name = "catalog"

// Paging limits of GET /articles.
const (
	DefaultPerPage = 24
	MaxPerPage     = 100
	MaxPage        = 10000
	MaxQueryLen    = 200 // bytes of q
)

// CacheControl is the Cache-Control of every GET answer.
const CacheControl = "public, max-age=60"

// Service returns the catalog service, for chassis.Main (or chassis.Run in a test).
// It needs no configuration beyond the chassis's own.
func Service() chassis.Service {
	return chassis.Service{
		Name:    Name,
		Version: "1.0.0",
		Tags:    []string{"wolke.http.path=/api/catalog"},
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			return NewHandler(shopdata.Default())
		},
	}
}

// handler serves the API from JSON encoded once.
type handler struct {
	set         *shopdata.Set
	departments []byte            // the whole answer of GET /departments
	articles    map[string][]byte // article ID -> its JSON
}

// NewHandler returns the catalog's API for the data set (without the chassis
// middleware).
func NewHandler(set *shopdata.Set) (http.Handler, error) {
	h := &handler{set: set, articles: make(map[string][]byte, set.Len())}
	var err error
	if h.departments, err = json.Marshal(set.Departments()); err != nil {
		return nil, err
	}
	for _, a := range set.Articles() {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		h.articles[a.ID] = b
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /departments", h.getDepartments)
	mux.HandleFunc("GET /articles", h.listArticles)
	mux.HandleFunc("GET /articles/{id}", h.getArticle)
	for _, p := range []string{"/departments", "/articles", "/articles/{id}"} {
		mux.HandleFunc(p, methodNotAllowed)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "no such resource: "+r.URL.Path)
	})
	return mux, nil
}

func (h *handler) getDepartments(w http.ResponseWriter, r *http.Request) {
	writeRaw(w, http.StatusOK, h.departments)
}

func (h *handler) getArticle(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	b, ok := h.articles[id]
	if !ok {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("no article %q", id))
		return
	}
	writeRaw(w, http.StatusOK, b)
}

func (h *handler) listArticles(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	page, err := intParam(v.Get("page"), 1, 1, MaxPage)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "page: "+err.Error())
		return
	}
	perPage, err := intParam(v.Get("per_page"), DefaultPerPage, 1, MaxPerPage)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "per_page: "+err.Error())
		return
	}
	q := shopdata.Query{
		Department: v.Get("department"),
		Category:   v.Get("category"),
		Text:       v.Get("q"),
		Offset:     (page - 1) * perPage,
		Limit:      perPage,
	}
	if len(q.Text) > MaxQueryLen {
		writeError(w, r, http.StatusBadRequest, fmt.Sprintf("q: longer than %d bytes", MaxQueryLen))
		return
	}
	if _, ok := h.set.Department(q.Department); q.Department != "" && !ok {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("no department %q", q.Department))
		return
	}
	if _, ok := h.set.Category(q.Category); q.Category != "" && !ok {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("no category %q", q.Category))
		return
	}
	res := h.set.Search(q)
	size := 64
	for _, a := range res.Articles {
		size += len(h.articles[a.ID]) + 1
	}
	b := make([]byte, 0, size)
	b = append(b, `{"total":`...)
	b = strconv.AppendInt(b, int64(res.Total), 10)
	b = append(b, `,"page":`...)
	b = strconv.AppendInt(b, int64(page), 10)
	b = append(b, `,"per_page":`...)
	b = strconv.AppendInt(b, int64(perPage), 10)
	b = append(b, `,"articles":[`...)
	for i, a := range res.Articles {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, h.articles[a.ID]...)
	}
	b = append(b, "]}\n"...)
	writeRaw(w, http.StatusOK, b)
}

// intParam parses a query parameter, def when it is empty.
func intParam(s string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a number from %d to %d, not %q", lo, hi, s)
	}
	return n, nil
}

// writeRaw answers a GET with a JSON body, cacheable (every GET of the catalog is).
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Cache-Control", CacheControl)
	w.WriteHeader(status)
	w.Write(b)
}

// writeError answers {"error": msg}. Errors of GETs are cacheable as well: the data
// set does not change while the service runs.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		chassis.WriteJSON(w, status, map[string]string{"error": msg})
		return
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	writeRaw(w, status, append(b, '\n'))
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
}
