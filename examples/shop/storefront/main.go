// Command storefront is the demo shop's web front end: server-rendered HTML pages
// (departments, article lists, article pages with recommendations, search,
// registration and sign-in, cart, checkout, orders) that work without JavaScript.
// It keeps no state: every page is made from the shop's APIs, which it calls
// through the gateway (GATEWAY_URL) like any client, forwarding the shopper's
// token from its cookie.
//
// Its dynamic configuration (config/storefront/):
//
//	sale_banner              text shown on every page (empty: none)
//	show_recommendations     true/false (default true)
//	recommendations_timeout  budget of the recommendations on the article page (300ms)
//	page_max_age             how long the gateway may cache signed-out catalog pages (30s)
//
// See examples/shop/README.md for the shop's design and examples/shop/storefront/README.md
// for the pages and their elements.
package main

import (
	"context"
	"net/http"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

// version is the storefront's version, registered and logged.
const version = "1.0.0"

func main() {
	var cfg Config
	chassis.Main(service(&cfg))
}

// service declares the storefront; cfg is filled from the environment.
func service(cfg *Config) chassis.Service {
	return chassis.Service{
		Name:    "storefront",
		Version: version,
		Config:  cfg,
		// The gateway's catch-all route (everything no API route claims), cached at the
		// gateway as the pages' Cache-Control allows (signed-out catalog pages only).
		Tags: []string{"wolke.http.path=/", "wolke.http.priority=-10", "wolke.cache=true"},
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			s, err := newServer(in, *cfg)
			if err != nil {
				return nil, err
			}
			return s.routes(), nil
		},
	}
}
