// Command payments is the demo shop's simulated payment provider, a participant of the
// checkout's two-phase commit: authorize, capture, void. See examples/shop/README.md
// and paymentssvc.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/payments/paymentssvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(paymentssvc.Service()) }
