// Command accounts is the demo shop's accounts service: registration, sign-in with
// bcrypt passwords, and RS256 JWTs that the gateway verifies with the JWKS document
// it publishes at wolke/gateway/jwks. See examples/shop/README.md for its API and
// accountssvc for the service.
package main

import (
	"github.com/wolke-platform/wolke/examples/shop/accounts/accountssvc"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

func main() { chassis.Main(accountssvc.Service()) }
