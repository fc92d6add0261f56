package main

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"sync"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var styleCSS []byte

// pageNames are the pages, each templates/<name>.html defining "title" and
// "content" for templates/layout.html.
var pageNames = []string{
	"home", "department", "article", "search", "signin", "register",
	"cart", "checkout", "orders", "order", "error",
}

// renderer holds the templates, parsed once at the start.
type renderer struct {
	pages   map[string]*template.Template
	cssPath string // /static/style.css?v=<content hash>: cached for a year
	cssETag string
}

func newRenderer() (*renderer, error) {
	base, err := template.New("layout.html").Funcs(template.FuncMap{
		"price":               formatPrice,
		"date":                formatDate,
		"cards":               func(list []Article) template.HTML { return cardsHTML(list, "") },
		"recommendationCards": func(list []Article) template.HTML { return cardsHTML(list, "recommendation") },
	}).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, err
	}
	rd := &renderer{pages: make(map[string]*template.Template, len(pageNames))}
	for _, name := range pageNames {
		t, err := base.Clone()
		if err == nil {
			t, err = t.ParseFS(templateFS, "templates/"+name+".html")
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		rd.pages[name] = t
	}
	sum := sha256.Sum256(styleCSS)
	h := hex.EncodeToString(sum[:6])
	rd.cssPath, rd.cssETag = "/static/style.css?v="+h, `"`+h+`"`
	return rd, nil
}

// site is what the layout shows on every page.
type site struct {
	Title       string
	Banner      string
	User        *session // nil: signed out
	CartCount   int
	Departments []Department  // nil when the catalog is unreachable
	Nav         template.HTML // the departments' navigation
	Query       string        // the search box's value
	Next        string        // where sign-in and registration lead back to ("": home)
	CSS         string
}

// view is a page's data: the layout's and the page's own.
type view struct {
	Site *site
	Page any
}

// cachePolicy says how long a shared cache may keep a page.
type cachePolicy time.Duration

// noCache marks a page that no cache may store.
const noCache cachePolicy = 0

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// render executes the page into a buffer and sends it with the status. A page
// may be stored by the gateway (public, max-age) only when it says so, answers
// 200, shows no shopper and sets no cookie; every HTML answer varies on Cookie, so
// a shared cache never hands a signed-out page to a signed-in shopper or back.
// A stored page may be served stale for as long again while the gateway refreshes
// it in the background (stale-while-revalidate), so that no shopper waits for an
// expired page.
func (rd *renderer) render(w http.ResponseWriter, status int, name string, st *site, page any, cache cachePolicy) {
	t := rd.pages[name]
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 256<<10 {
			bufPool.Put(buf)
		}
	}()
	st.CSS = rd.cssPath
	if err := t.ExecuteTemplate(buf, "layout.html", view{Site: st, Page: page}); err != nil {
		http.Error(w, "the page could not be rendered: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/html; charset=utf-8"}
	h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	h["Vary"] = []string{"Cookie"}
	h["Cache-Control"] = []string{cacheControl(status, st.User != nil || len(h["Set-Cookie"]) > 0, cache)}
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// cacheControl is the Cache-Control of an HTML answer.
func cacheControl(status int, personal bool, cache cachePolicy) string {
	switch {
	case personal:
		return "private, no-store"
	case status != http.StatusOK || cache <= 0:
		return "no-store"
	}
	n := strconv.FormatInt(int64(time.Duration(cache)/time.Second), 10)
	return "public, max-age=" + n + ", stale-while-revalidate=" + n + staleIfError
}

// staleIfError lets the gateway answer a signed-out catalog page from its cache
// for this long while no storefront instance can (all restarting, or answering
// 5xx because the catalog is down): an older page beats an error page.
const staleIfError = ", stale-if-error=600"

// serveCSS answers the style sheet, cached for a year: its URL changes with it.
func (rd *renderer) serveCSS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/css; charset=utf-8"}
	h["Cache-Control"] = []string{"public, max-age=31536000, immutable"}
	h["Etag"] = []string{rd.cssETag}
	if r.Header.Get("If-None-Match") == rd.cssETag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Length"] = []string{strconv.Itoa(len(styleCSS))}
	_, _ = w.Write(styleCSS)
}

// formatPrice writes cents as euros: 1999 → "€19.99".
func formatPrice(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	c := cents % 100
	pad := ""
	if c < 10 {
		pad = "0"
	}
	return sign + "€" + strconv.FormatInt(cents/100, 10) + "." + pad + strconv.FormatInt(c, 10)
}

func formatDate(t flexTime) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
