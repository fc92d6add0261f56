// Package authn authenticates the edge gateway's requests: JWT bearer tokens, API keys
// kept in the KV store, HTTP Basic against bcrypt hashes, and forward auth to an
// external service. A route's Policy says which; New turns it into an Authenticator,
// whose Authenticate the gateway calls on each of the route's requests.
//
// # Methods
//
// A policy usually sets one method. When it sets several, any of them may let a
// request in: the methods whose credential the request carries are tried in the
// order jwt, api_key, basic, forward, and the first success wins (see Authenticate).
//
// # Identity
//
// On success the identity (JWT claim, API key name, user, or the auth service's word)
// goes to the upstream in one header, X-Wolke-Identity by default. Services may trust
// that header only because the gateway makes it unforgeable: Authenticate removes every
// client-sent copy (in any case, and spelt with '_' for '-', which some frameworks
// merge with '-') before anything else, and the gateway must do the same with
// StripIdentity on every route without auth.
//
// # Using it in the gateway
//
//   - One APIKeyStore per gateway (NewAPIKeyStore, Start at boot, Close at shutdown),
//     handed to every New through Deps.
//   - One Authenticator per route with a policy; Close it when the route's policy is
//     replaced or removed, and call Reload on SIGHUP (it re-reads jwks_file).
//   - Per request, after the route matched and before the request is rewritten:
//     Authenticate. On !OK answer Status, with WWW-Authenticate: Challenge when set,
//     and Body/ContentType when set, else the gateway's own error with Reason.
//   - Result.Identity and Result.Claim serve the access log and rate limiting keys.
//
// # Costs
//
// A JWT's verdict is cached per token string until the token expires (at most 10240
// tokens), so a client re-using its token costs a map lookup, not a signature check.
// API keys are a SHA-256 and a map lookup in the shared APIKeyStore, kept current by a
// blocking query. Basic remembers credentials that passed bcrypt once. Forward auth
// costs a round trip to the auth service on every request.
//
// # Files
//
//	policy.go  the JSON policy and Validate
//	authn.go   Deps, Authenticator, Result, identity header stripping
//	jwt.go     bearer tokens; jwks.go the key sets; cache.go the verdict cache
//	apikey.go  API keys and the APIKeyStore
//	basic.go   HTTP Basic
//	forward.go forward auth
//	kv.go      the KV store interface, its consul/api implementation, the watch loop
package authn
