package reqvalidate

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
)

// shopJSON is a small shop: orders listed with a required, bounded limit and
// an enum filter, created with a tenant header and a JSON body, read and
// deleted by integer id; a concrete path beside a templated one; a path with
// two variables in one segment.
const shopJSON = `{
  "openapi": "3.0.3",
  "info": {"title": "shop", "version": "1.0.0"},
  "servers": [{"url": "https://shop.example.com/api"}],
  "security": [{"bearer": []}],
  "paths": {
    "/orders": {
      "get": {
        "parameters": [
          {"name": "limit", "in": "query", "required": true, "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
          {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["open", "shipped", "cancelled"]}}
        ],
        "responses": {"200": {"description": "orders"}}
      },
      "post": {
        "parameters": [
          {"name": "X-Tenant", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[a-z0-9-]+$"}}
        ],
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewOrder"}}}
        },
        "responses": {"201": {"description": "created"}}
      }
    },
    "/orders/export": {
      "get": {"responses": {"200": {"description": "CSV"}}}
    },
    "/orders/{id}": {
      "parameters": [
        {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64", "minimum": 1}}
      ],
      "get": {"responses": {"200": {"description": "an order"}}},
      "delete": {"responses": {"204": {"description": "deleted"}}}
    },
    "/reports/{name}.{ext}": {
      "get": {
        "parameters": [
          {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}},
          {"name": "ext", "in": "path", "required": true, "schema": {"type": "string", "enum": ["csv", "json"]}}
        ],
        "responses": {"200": {"description": "a report"}}
      }
    }
  },
  "components": {
    "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    "schemas": {
      "NewOrder": {
        "type": "object",
        "required": ["customer", "items"],
        "additionalProperties": false,
        "properties": {
          "customer": {"type": "string", "minLength": 1},
          "priority": {"type": "string", "enum": ["normal", "express"]},
          "items": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Item"}}
        }
      },
      "Item": {
        "type": "object",
        "required": ["sku", "qty"],
        "properties": {
          "sku": {"type": "string"},
          "qty": {"type": "integer", "minimum": 1}
        }
      }
    }
  }
}`

// shopYAML is shopJSON in YAML.
const shopYAML = `
openapi: 3.0.3
info: {title: shop, version: 1.0.0}
servers:
  - url: https://shop.example.com/api
security:
  - bearer: []
paths:
  /orders:
    get:
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, minimum: 1, maximum: 100}}
        - {name: status, in: query, schema: {type: string, enum: [open, shipped, cancelled]}}
      responses: {"200": {description: orders}}
    post:
      parameters:
        - name: X-Tenant
          in: header
          required: true
          schema: {type: string, pattern: "^[a-z0-9-]+$"}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewOrder"}
      responses: {"201": {description: created}}
  /orders/export:
    get:
      responses: {"200": {description: CSV}}
  /orders/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer, format: int64, minimum: 1}}
    get:
      responses: {"200": {description: an order}}
    delete:
      responses: {"204": {description: deleted}}
  /reports/{name}.{ext}:
    get:
      parameters:
        - {name: name, in: path, required: true, schema: {type: string}}
        - {name: ext, in: path, required: true, schema: {type: string, enum: [csv, json]}}
      responses: {"200": {description: a report}}
components:
  securitySchemes:
    bearer: {type: http, scheme: bearer}
  schemas:
    NewOrder:
      type: object
      required: [customer, items]
      additionalProperties: false
      properties:
        customer: {type: string, minLength: 1}
        priority: {type: string, enum: [normal, express]}
        items:
          type: array
          minItems: 1
          items: {$ref: "#/components/schemas/Item"}
    Item:
      type: object
      required: [sku, qty]
      properties:
        sku: {type: string}
        qty: {type: integer, minimum: 1}
`

const goodOrder = `{"customer":"ada","priority":"express","items":[{"sku":"A-1","qty":2}]}`

func post(path, headers, body string) string {
	return "POST " + path + " HTTP/1.1\nHost: shop\n" + headers + "Content-Length: " + itoa(len(body)) + "\n\n" + body
}

func itoa(n int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + n%10)}, b...)
		if n /= 10; n == 0 {
			return string(b)
		}
	}
}

var shopRequests = []struct {
	name   string
	raw    string
	status int
	field  string
	reason string // a substring of the reason, "" to skip
}{
	{"list", "GET /orders?limit=10 HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"list with filter", "GET /orders?limit=1&status=shipped HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"list under the server's base path", "GET /api/orders?limit=100 HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"HEAD is GET", "HEAD /orders?limit=10 HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"get one", "GET /orders/42 HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"delete one", "DELETE /orders/42 HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"concrete path before template", "GET /orders/export HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"two variables in a segment", "GET /reports/sales-2026.csv HTTP/1.1\nHost: shop\n\n", 0, "", ""},
	{"create", post("/orders", "X-Tenant: acme-1\nContent-Type: application/json\n", goodOrder), 0, "", ""},
	{"create, charset", post("/orders", "X-Tenant: acme\nContent-Type: application/json; charset=utf-8\n", goodOrder), 0, "", ""},
	{"no credentials needed here", "GET /orders/1 HTTP/1.1\nHost: shop\n\n", 0, "", ""},

	{"unknown path", "GET /customers HTTP/1.1\nHost: shop\n\n", 404, "path", "no such operation"},
	{"trailing slash is another path", "GET /orders/42/ HTTP/1.1\nHost: shop\n\n", 404, "path", ""},
	{"empty path parameter", "GET /orders/ HTTP/1.1\nHost: shop\n\n", 404, "path", ""},
	{"unknown base path", "GET /v2/orders?limit=1 HTTP/1.1\nHost: shop\n\n", 404, "path", ""},
	{"method not in path item", "PUT /orders/42 HTTP/1.1\nHost: shop\nContent-Length: 0\n\n", 405, "method", "allowed: DELETE, GET, HEAD"},
	{"path parameter not an integer", "GET /orders/abc HTTP/1.1\nHost: shop\n\n", 400, "path.id", `path parameter "id": must be a valid integer`},
	{"path parameter below minimum", "GET /orders/0 HTTP/1.1\nHost: shop\n\n", 400, "path.id", "at least 1"},
	{"path parameter in a mixed segment", "GET /reports/sales.xml HTTP/1.1\nHost: shop\n\n", 400, "path.ext", "allowed values"},
	{"required query parameter missing", "GET /orders HTTP/1.1\nHost: shop\n\n", 400, "query.limit", `query parameter "limit" is required`},
	{"query parameter above maximum", "GET /orders?limit=101 HTTP/1.1\nHost: shop\n\n", 400, "query.limit", "at most 100"},
	{"query parameter below minimum", "GET /orders?limit=0 HTTP/1.1\nHost: shop\n\n", 400, "query.limit", "at least 1"},
	{"query parameter not an integer", "GET /orders?limit=ten HTTP/1.1\nHost: shop\n\n", 400, "query.limit", ""},
	{"query enum", "GET /orders?limit=5&status=lost HTTP/1.1\nHost: shop\n\n", 400, "query.status", "allowed values"},
	{"required header missing", post("/orders", "Content-Type: application/json\n", goodOrder), 400, "header.X-Tenant", `header parameter "X-Tenant" is required`},
	{"header pattern", post("/orders", "X-Tenant: ACME!\nContent-Type: application/json\n", goodOrder), 400, "header.X-Tenant", "regular expression"},
	{"body missing", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", ""), 400, "body", "request body is required"},
	{"body not JSON", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":`), 400, "body", "cannot be decoded as application/json: unexpected EOF"},
	{"body not an object", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `[1]`), 400, "body", "object"},
	{"body media type", post("/orders", "X-Tenant: acme\nContent-Type: text/plain\n", goodOrder), 415, "header.Content-Type", "accepted: application/json"},
	{"body content-encoded", post("/orders", "X-Tenant: acme\nContent-Type: application/json\nContent-Encoding: gzip\n", goodOrder), 415, "header.Content-Encoding", ""},
	{"required property", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"items":[{"sku":"A","qty":1}]}`), 400, "body.customer", `property "customer" is missing`},
	{"property type", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":7,"items":[{"sku":"A","qty":1}]}`), 400, "body.customer", "string"},
	{"property enum", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","priority":"now","items":[{"sku":"A","qty":1}]}`), 400, "body.priority", "allowed values"},
	{"unknown property", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","coupon":"x","items":[{"sku":"A","qty":1}]}`), 400, "body.coupon", ""},
	{"empty array", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","items":[]}`), 400, "body.items", ""},
	{"nested type", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","items":[{"sku":"A","qty":1},{"sku":"B","qty":"2"}]}`), 400, "body.items[1].qty", "integer"},
	{"nested required", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","items":[{"sku":"A"}]}`), 400, "body.items[0].qty", `property "qty" is missing`},
	{"nested minimum", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"a","items":[{"sku":"A","qty":0}]}`), 400, "body.items[0].qty", "at least 1"},

	// The first violation: path, then query/header in the document's order, then the body.
	{"path before body", post("/orders/x", "Content-Type: application/json\n", "{}"), 405, "method", ""},
	{"header before body", post("/orders", "Content-Type: application/json\n", `{}`), 400, "header.X-Tenant", ""},
	{"first query parameter first", "GET /orders?status=lost HTTP/1.1\nHost: shop\n\n", 400, "query.limit", ""},
	{"first body error first", post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", `{"customer":"","items":[{"sku":"A","qty":0}]}`), 400, "body.customer", ""},
}

func TestOpenAPI(t *testing.T) {
	for _, doc := range []struct{ name, text string }{{"json", shopJSON}, {"yaml", shopYAML}} {
		t.Run(doc.name, func(t *testing.T) {
			v, err := New(Policy{OpenAPI: "wolke/gateway/openapi/shop"}, []byte(doc.text))
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range shopRequests {
				t.Run(tt.name, func(t *testing.T) {
					req := parseRequest(t, tt.raw)
					body := append([]byte(nil), req.Body()...)
					got := v.Check(req, req.URI().Path())
					wantViolation(t, got, tt.status, tt.field)
					if got != nil && !strings.Contains(got.Reason, tt.reason) {
						t.Errorf("reason %q, want it to contain %q", got.Reason, tt.reason)
					}
					if got != nil && strings.Contains(got.Reason, "\n") {
						t.Errorf("reason has more than one line: %q", got.Reason)
					}
					if got != nil && got.Status == 405 && got.Allow == "" {
						t.Errorf("405 without Allow")
					}
					if !bytes.Equal(req.Body(), body) {
						t.Errorf("body changed by validation: %q, was %q", req.Body(), body)
					}
				})
			}
		})
	}
}

// TestOpenAPIStrippedPrefix: the gateway passes the path the service will see,
// which may differ from the request's own.
func TestOpenAPIStrippedPrefix(t *testing.T) {
	v, err := New(Policy{}, []byte(shopJSON))
	if err != nil {
		t.Fatal(err)
	}
	req := parseRequest(t, "GET /shop/orders/7 HTTP/1.1\nHost: gw\n\n")
	wantViolation(t, v.Check(req, []byte("/orders/7")), 0, "")
	wantViolation(t, v.Check(req, req.URI().Path()), 404, "path")

	// A route whose prefix is the whole path leaves "" or "/": both are the root.
	root, err := New(Policy{}, []byte(`{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
		"paths": {"/": {"get": {"responses": {"200": {"description": "ok"}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	req = parseRequest(t, "GET /shop HTTP/1.1\nHost: gw\n\n")
	for _, p := range []string{"", "/"} {
		wantViolation(t, root.Check(req, []byte(p)), 0, "")
	}
	wantViolation(t, root.Check(req, []byte("/x")), 404, "path")
}

// TestOpenAPIAfterLimits: the policy's limits come before the document.
func TestOpenAPIAfterLimits(t *testing.T) {
	v, err := New(Policy{MaxBodyBytes: 32, Methods: []string{"GET", "POST"}}, []byte(shopJSON))
	if err != nil {
		t.Fatal(err)
	}
	req := parseRequest(t, post("/nowhere", "Content-Type: application/json\n", goodOrder))
	wantViolation(t, v.Check(req, req.URI().Path()), 413, "body")
	req = parseRequest(t, "DELETE /orders/1 HTTP/1.1\nHost: shop\n\n")
	wantViolation(t, v.Check(req, req.URI().Path()), 405, "method")
}

// TestBodyForwardable: after validation the request still writes out as it came.
func TestBodyForwardable(t *testing.T) {
	v, err := New(Policy{}, []byte(shopJSON))
	if err != nil {
		t.Fatal(err)
	}
	req := parseRequest(t, post("/orders", "X-Tenant: acme\nContent-Type: application/json\n", goodOrder))
	if vi := v.Check(req, req.URI().Path()); vi != nil {
		t.Fatal(vi)
	}
	var out bytes.Buffer
	if _, err := req.WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "\r\n\r\n"+goodOrder) || !strings.Contains(out.String(), "Content-Length: "+itoa(len(goodOrder))) {
		t.Errorf("forwarded request:\n%s", out.String())
	}
	if q := string(req.URI().QueryString()); q != "" {
		t.Errorf("query changed to %q", q)
	}
}

func TestOpenAPIConcurrent(t *testing.T) {
	v, err := New(Policy{}, []byte(shopJSON))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				tt := shopRequests[(g*7+i)%len(shopRequests)]
				req := parseRequest(t, tt.raw)
				got := v.Check(req, req.URI().Path())
				if (got == nil) != (tt.status == 0) || (got != nil && got.Field != tt.field) {
					t.Errorf("%s: got %v, want %d (%s)", tt.name, got, tt.status, tt.field)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestInvalidDocument(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string // a substring of the error
	}{
		{"not JSON or YAML", `{"openapi": "3.0.3", "info": {`, ""},
		{"swagger 2", `{"swagger": "2.0", "info": {"title": "x", "version": "1"}, "paths": {}}`, "3.x"},
		{"no info", `{"openapi": "3.0.3", "paths": {"/a": {"get": {"responses": {"200": {"description": "ok"}}}}}}`, "info"},
		{"no paths", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"}, "paths": {}}`, "no paths"},
		{"undeclared path parameter", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
			"paths": {"/a/{id}": {"get": {"responses": {"200": {"description": "ok"}}}}}}`, "id"},
		{"dangling $ref", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
			"paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Nope"}}}},
			"responses": {"200": {"description": "ok"}}}}}}`, "Nope"},
		{"external $ref", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
			"paths": {"/a": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "other.json#/S"}}}},
			"responses": {"200": {"description": "ok"}}}}}}`, "other.json"},
		{"bad schema type", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
			"paths": {"/a": {"get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": "integr"}}],
			"responses": {"200": {"description": "ok"}}}}}}`, "integr"},
		{"unbalanced template", `{"openapi": "3.0.3", "info": {"title": "x", "version": "1"},
			"paths": {"/a/{id": {"get": {"responses": {"200": {"description": "ok"}}}}}}`, "{id"},
		{"YAML with a wrong type", "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths:\n  /a:\n    get:\n      responses: 7\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(Policy{}, []byte(tt.doc))
			if err == nil {
				t.Fatalf("New accepted the document (%v)", v)
			}
			if !errors.Is(err, ErrInvalidDocument) {
				t.Errorf("error %v does not wrap ErrInvalidDocument", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %q", err, tt.want)
			}
			t.Log(err)
		})
	}
	if _, err := New(Policy{OpenAPI: "wolke/gateway/openapi/shop"}, nil); !errors.Is(err, ErrNoDocument) {
		t.Errorf("no document: %v, want ErrNoDocument", err)
	}
}

// TestOpenAPI31 runs a 3.1 document, which kin-openapi validates with JSON
// Schema 2020-12, with a cookie parameter and a server base path.
func TestOpenAPI31(t *testing.T) {
	const doc = `
openapi: 3.1.0
info: {title: carts, version: "1"}
servers: [{url: "/v1"}]
paths:
  /carts/{id}/items:
    put:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string, format: uuid}}
        - {name: session, in: cookie, required: true, schema: {type: string, minLength: 8}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [qty]
              properties:
                qty: {type: integer, minimum: 1}
                note: {type: [string, "null"]}
      responses: {"204": {description: updated}}
`
	v, err := New(Policy{}, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	const id = "/v1/carts/6f1c1d0e-3b1a-4f7e-9a51-2b8f2f0c9d11/items"
	put := func(path, cookie, body string) string {
		return "PUT " + path + " HTTP/1.1\nHost: carts\n" + cookie + "Content-Type: application/json\nContent-Length: " +
			itoa(len(body)) + "\n\n" + body
	}
	tests := []struct {
		name   string
		raw    string
		status int
		field  string
		reason string
	}{
		{"ok", put(id, "Cookie: session=abcdefgh\n", `{"qty":2,"note":null}`), 0, "", ""},
		{"without the base path", put(strings.TrimPrefix(id, "/v1"), "Cookie: session=abcdefgh\n", `{"qty":2}`), 0, "", ""},
		{"cookie missing", put(id, "", `{"qty":2}`), 400, "cookie.session", `cookie parameter "session" is required`},
		{"cookie too short", put(id, "Cookie: session=abc\n", `{"qty":2}`), 400, "cookie.session", `cookie parameter "session": minLength`},
		{"qty too small", put(id, "Cookie: session=abcdefgh\n", `{"qty":0}`), 400, "body.qty", "request body: minimum"},
		{"note not a string", put(id, "Cookie: session=abcdefgh\n", `{"qty":1,"note":5}`), 400, "body.note", "request body: got number, want null or string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseRequest(t, tt.raw)
			got := v.Check(req, req.URI().Path())
			wantViolation(t, got, tt.status, tt.field)
			if got != nil && !strings.HasPrefix(got.Reason, tt.reason) {
				t.Errorf("reason %q, want it to start with %q", got.Reason, tt.reason)
			}
		})
	}
}
