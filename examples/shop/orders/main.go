// Command orders is the demo shop's orders service: checkout as a two-phase commit
// across inventory, payments and orders, and the order history. See
// examples/shop/README.md and orderssvc.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/orders/orderssvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(orderssvc.Service()) }
