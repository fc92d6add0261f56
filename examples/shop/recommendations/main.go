// Command recommendations is the demo shop's "customers also bought" service: up to
// four articles of the same category, from the catalog, slow or failing on demand
// (config/recommendations/delay and fail_percent) to show graceful degradation. See
// examples/shop/README.md for its API and recommendationssvc for the service.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/recommendations/recommendationssvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(recommendationssvc.Service()) }
