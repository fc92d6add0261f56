// Command catalog is the demo shop's catalog service: departments, categories and
// articles of the embedded data set (examples/shop/internal/shopdata), with search by
// name. See examples/shop/README.md for its API and catalogsvc for the service.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/catalog/catalogsvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(catalogsvc.Service()) }
