// Command cart is the demo shop's cart service: a cart per user in the KV store,
// updated with CAS so that concurrent changes through any instance lose nothing.
// It trusts the X-Wolke-Identity header: reach it only through the gateway, whose JWT
// policy sets that header (and strips any copy a client sent). See
// examples/shop/README.md for its API and cartsvc for the service.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/cart/cartsvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(cartsvc.Service()) }
