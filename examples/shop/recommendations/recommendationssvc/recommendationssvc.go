// Package recommendationssvc is the shop's recommendations service
// (examples/shop/README.md):
//
//	GET /recommendations?article={id}   {"articles":[Article]}
//
// up to MaxArticles other articles of the article's category, chosen by a hash of
// the two IDs (the same answer every time, different for every article), fetched
// from the catalog with the chassis client. An unknown article is a 404, a catalog
// that cannot answer a 502.
//
// It is deliberately unreliable on demand, through its dynamic configuration:
//
//	config/recommendations/delay          duration, default 0: wait this long before answering
//	config/recommendations/fail_percent   0-100, default 0: answer this share of requests with 500
//
// The delay comes first and ends early when the caller gives up. Answers carry no
// Cache-Control, so a cache never hides the misbehaviour.
package recommendationssvc

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/wolke-platform/wolke/examples/shop/internal/shopdata"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Name is the service's name in the catalog.
const Name = "recommendations"

// MaxArticles is the most articles recommended for one.
const MaxArticles = 4

// Keys of the dynamic configuration, under config/recommendations/.
const (
	KeyDelay       = "delay"
	KeyFailPercent = "fail_percent"
)

// Service returns the recommendations service, for chassis.Main (or chassis.Run in
// a test). It requires the catalog: without a passing catalog instance it is not
// ready.
func Service() chassis.Service {
	return chassis.Service{
		Name:     Name,
		Version:  "1.0.0",
		Tags:     []string{"wolke.http.path=/api/recommendations"},
		Requires: []string{"catalog"},
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			h := &handler{
				client:  in.Client(),
				delay:   in.Dynamic().Duration(KeyDelay, 0, chassis.Between(0, time.Minute)),
				failPct: in.Dynamic().Int(KeyFailPercent, 0, chassis.Between(0, 100)),
			}
			mux := http.NewServeMux()
			mux.HandleFunc("GET /recommendations", h.recommend)
			mux.HandleFunc("/", chassis.NotFound)
			return mux, nil
		},
	}
}

type handler struct {
	client  *http.Client
	delay   *chassis.Value[time.Duration]
	failPct *chassis.Value[int]
}

// answer is the response body.
type answer struct {
	Articles []shopdata.Article `json:"articles"`
}

func (h *handler) recommend(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("article")
	if id == "" {
		chassis.WriteError(w, http.StatusBadRequest, "article: missing")
		return
	}
	if d := h.delay.Get(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			chassis.WriteError(w, http.StatusServiceUnavailable, "gave up waiting (delay configured)")
			return
		}
	}
	if p := h.failPct.Get(); p > 0 && rand.IntN(100) < p {
		chassis.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("failing on purpose (fail_percent %d)", p))
		return
	}

	var article shopdata.Article
	if err := chassis.GetJSON(ctx, h.client, "http://catalog/articles/"+url.PathEscape(id), &article); err != nil {
		if re := (*chassis.ResponseError)(nil); errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			chassis.WriteError(w, http.StatusNotFound, fmt.Sprintf("no article %q", id))
			return
		}
		catalogError(w, err)
		return
	}
	var list struct {
		Articles []shopdata.Article `json:"articles"`
	}
	u := "http://catalog/articles?per_page=100&category=" + url.QueryEscape(article.Category)
	if err := chassis.GetJSON(ctx, h.client, u, &list); err != nil {
		catalogError(w, err)
		return
	}
	chassis.WriteJSON(w, http.StatusOK, answer{Articles: pick(article.ID, list.Articles)})
}

// pick returns up to MaxArticles of candidates other than the article id: those with
// the smallest hash of (id, candidate).
func pick(id string, candidates []shopdata.Article) []shopdata.Article {
	type scored struct {
		a    shopdata.Article
		hash uint64
	}
	s := make([]scored, 0, len(candidates))
	for _, a := range candidates {
		if a.ID == id {
			continue
		}
		f := fnv.New64a()
		f.Write([]byte(id))
		f.Write([]byte{0})
		f.Write([]byte(a.ID))
		s = append(s, scored{a, f.Sum64()})
	}
	slices.SortFunc(s, func(x, y scored) int {
		switch {
		case x.hash < y.hash:
			return -1
		case x.hash > y.hash:
			return 1
		}
		return 0
	})
	out := make([]shopdata.Article, 0, MaxArticles)
	for i := 0; i < len(s) && i < MaxArticles; i++ {
		out = append(out, s[i].a)
	}
	return out
}

// catalogError answers for a catalog that could not be asked: 502, or 503 when the
// caller's own deadline ran out.
func catalogError(w http.ResponseWriter, err error) {
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		status = http.StatusServiceUnavailable
	}
	chassis.WriteError(w, status, "catalog: "+err.Error())
}
