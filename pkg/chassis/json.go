package chassis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// JSON helpers for the common case of services that speak JSON to each other.

// MaxJSONBody is the largest request body DecodeJSON reads (1 MiB).
const MaxJSONBody = 1 << 20

// WriteJSON answers with v as JSON and the given status code.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers with {"error": msg}, the shape of every error of the shop's
// APIs (and of wolke's gateway).
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// NotFound answers 404 with a JSON error naming the method and path: the fallback
// route of a service's mux.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, http.StatusNotFound, "no such resource: "+r.Method+" "+r.URL.Path)
}

// ValidKeySegment reports whether s can be one segment of a KV key: 1 to max
// letters, digits, '-', '_' or '.', and not "." or "..". IDs that services turn
// into keys (articles, orders, transactions) are checked with it.
func ValidKeySegment(s string, max int) bool {
	if s == "" || len(s) > max || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// DecodeJSON reads the request's JSON body (at most MaxJSONBody, unknown fields
// refused) into v. Its error is meant for the caller: answer it with
// http.Error(w, err.Error(), http.StatusBadRequest).
func DecodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("request body larger than %d bytes", MaxJSONBody)
		}
		return fmt.Errorf("invalid JSON body: %v", err)
	}
	if dec.More() {
		return errors.New("invalid JSON body: more than one value")
	}
	return nil
}

// ResponseError is the error of GetJSON and SendJSON for a response that is not 2xx.
type ResponseError struct {
	Method, URL string
	StatusCode  int
	Body        string // the first 1 KiB of the response body
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.StatusCode, strings.TrimSpace(e.Body))
}

// GetJSON fetches url with c under ctx and decodes a 2xx JSON answer into out.
func GetJSON(ctx context.Context, c *http.Client, url string, out any) error {
	return SendJSON(ctx, c, http.MethodGet, url, nil, out)
}

// SendJSON sends in (unless nil) as a JSON body with the method, and decodes a 2xx
// answer into out (unless nil). The body is replayable, so the client may retry the
// request where that is safe (PUT, DELETE, or with an Idempotency-Key header set by
// the caller through a request of its own).
func SendJSON(ctx context.Context, c *http.Client, method, url string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &ResponseError{Method: method, URL: url, StatusCode: resp.StatusCode, Body: string(b)}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", method, url, err)
	}
	return nil
}
