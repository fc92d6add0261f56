// Command inventory is the demo shop's inventory service: the stock of every article,
// and the checkout's two-phase-commit participant that reserves it. See
// examples/shop/README.md and inventorysvc.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/inventory/inventorysvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(inventorysvc.Service()) }
