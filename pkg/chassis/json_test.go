package chassis

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestJSONHelpers(t *testing.T) {
	type item struct {
		ID   int    `json:"id"`
		Name string `json:"name"`
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/1", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, item{1, "lamp"})
	})
	mux.HandleFunc("POST /items", func(w http.ResponseWriter, r *http.Request) {
		var in item
		if err := DecodeJSON(r, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		in.ID = 2
		WriteJSON(w, http.StatusCreated, in)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	ctx := context.Background()
	c := srv.Client()

	var got item
	if err := GetJSON(ctx, c, srv.URL+"/items/1", &got); err != nil || got != (item{1, "lamp"}) {
		t.Fatalf("GetJSON: %v %+v", err, got)
	}
	if err := SendJSON(ctx, c, "POST", srv.URL+"/items", item{Name: "desk"}, &got); err != nil || got != (item{2, "desk"}) {
		t.Fatalf("SendJSON: %v %+v", err, got)
	}
	err := SendJSON(ctx, c, "POST", srv.URL+"/items", map[string]any{"name": "x", "color": "red"}, nil)
	var re *ResponseError
	if !errors.As(err, &re) || re.StatusCode != 400 || !strings.Contains(re.Body, `unknown field "color"`) {
		t.Fatalf("unknown field: %v", err)
	}
	err = GetJSON(ctx, c, srv.URL+"/nope", &got)
	if !errors.As(err, &re) || re.StatusCode != 404 {
		t.Fatalf("404: %v", err)
	}
	req := httptest.NewRequest("POST", "/", strings.NewReader(strings.Repeat(" ", MaxJSONBody+1)+"{}"))
	if err := DecodeJSON(req, &got); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized body: %v", err)
	}
	req = httptest.NewRequest("POST", "/", strings.NewReader(`{"id":1} {"id":2}`))
	if err := DecodeJSON(req, &got); err == nil {
		t.Fatal("two values accepted")
	}
}

func TestNotFound(t *testing.T) {
	rec := httptest.NewRecorder()
	NotFound(rec, httptest.NewRequest("DELETE", "/nowhere", nil))
	if rec.Code != 404 || rec.Header().Get("Content-Type") != "application/json" ||
		strings.TrimSpace(rec.Body.String()) != `{"error":"no such resource: DELETE /nowhere"}` {
		t.Fatalf("%d %v %q", rec.Code, rec.Header(), rec.Body)
	}
}
