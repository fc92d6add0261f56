// Package httpcache is the edge gateway's shared HTTP cache (RFC 9111), on
// fasthttp: Cache.Serve answers a request from memory or forwards it through the
// gateway's Fetch, storing what may be stored. Memory is bounded in bytes with
// LRU eviction, every response carries a Cache-Status field (RFC 9211, cache
// name "wolke"), and concurrent misses for one object send one request upstream.
//
// # What is implemented
//
// Storing (RFC 9111 §3): responses to GET with a status the cache understands
// (200, 203, 204, 300, 301, 302, 307, 308, 404, 405, 410, 414, 501; 302 and 307
// only with explicit freshness). Never stored: no-store in the request or the
// response, unqualified private, Vary: *, 206 and other statuses, bodies over
// Config.MaxObjectSize, responses to requests with Authorization unless the
// response says public, s-maxage or must-revalidate (§3.5). The qualified forms
// no-cache="f" and private="f" are stored without the named fields.
// Hop-by-hop fields (Connection and the fields it names, Keep-Alive, TE,
// Transfer-Encoding, Upgrade, Trailer, Proxy-*) and Age are not stored.
//
// Set-Cookie: a response carrying it is stored only when it is explicitly
// public or names Set-Cookie in a qualified no-cache or private, and then
// without the cookie: the client whose request fetched it gets its cookie, the
// clients answered from the cache do not. One user's session must never be
// handed to another, whatever the origin forgot to say.
//
// Keys (§2, §4.1): the request's host and request URI; the method is not part
// of it, so HEAD is answered from a stored GET response. A response with Vary is
// stored per variant, keyed by the request's values of the Vary'd fields
// (whitespace around list commas normalized; an absent field differs from an
// empty one), at most 32 variants per URI; a response that varies on other
// fields than the stored ones replaces them.
//
// Freshness (§4.2): s-maxage, else max-age, else Expires minus Date (an
// invalid Expires means stale), else Config.DefaultTTL when set, for the
// heuristically cacheable statuses; the first of repeated directives counts.
// Ages follow §4.2.3 (upstream Age, response delay, time resident) and every
// response from the cache carries Age.
//
// Reuse (§4.2, §4.3, §5.2): a fresh response is served unless the request says
// no-cache (or Pragma: no-cache without Cache-Control), max-age or min-fresh
// rule it out; max-stale admits a stale one; only-if-cached gets 504 without a
// stored response. must-revalidate, proxy-revalidate and no-cache responses are
// never served without validation. A stale response with an ETag or
// Last-Modified is revalidated with If-None-Match / If-Modified-Since; a 304
// freshens the stored header (§3.2, §4.3.4, only when its ETag is the stored
// one) and the client gets the stored 200. Client conditionals (If-None-Match,
// If-Modified-Since) are answered from the cache with a 304 when they match.
//
// RFC 5861: stale-while-revalidate serves the stale response and refreshes it
// once in the background (the refresh joins, or is joined by, a foreground
// forward of the same object); stale-if-error serves it when the forward fails
// or answers 500, 502, 503 or 504 within the window. Neither applies to
// must-revalidate, proxy-revalidate or no-cache responses; s-maxage does not
// cancel them (CDNs honour "s-maxage=1, stale-while-revalidate=59"), but does
// keep a client's max-stale away, as its implied proxy-revalidate says.
//
// Invalidation (§4.4): a 2xx or 3xx answer to an unsafe method drops what is
// stored for its URI and for same-host URIs in Location and Content-Location.
// Cache.Purge drops by key prefix.
//
// # Collapsing
//
// Concurrent GET misses (or revalidations) for one object wait on one upstream
// exchange (singleflight) and then get the stored response. If the response
// turns out not storable (private, no-store, too large, an error...) it cannot
// be shared: each waiter then forwards its own request, and a pass marker
// (Varnish's hit-for-miss) makes later misses on that key skip collapsing until
// a storable response arrives, so that uncacheable URIs are not serialized
// behind one another. Misses carrying the client's own conditionals are not
// collapsed, since a 304 to them could not be shared.
//
// # Bodies
//
// An upstream body stream (fasthttp's StreamResponseBody) is read up to
// MaxObjectSize. A larger one, or one announced larger by Content-Length, is
// handed to the client as it streams in: the prefix already read, then the rest
// of the stream, never held whole; closing the client's body closes the
// upstream stream. Stored bodies are immutable and shared, zero-copy, by every
// response served from them.
//
// # Not implemented
//
//   - Heuristic freshness other than Config.DefaultTTL (no Last-Modified based
//     fraction), and by default (DefaultTTL 0) nothing without explicit
//     freshness is stored: the conservative reading for a shared cache.
//   - Partial content (§3.3, §3.4): requests with Range, and the preconditions
//     If-Match, If-Unmodified-Since and If-Range, bypass the cache; 206 is not
//     stored.
//   - HEAD misses are forwarded as HEAD and nothing is stored; a HEAD response
//     does not freshen a stored GET response (§4.3.5).
//   - Responses to methods other than GET are never stored.
//   - Requests with Authorization are answered from the cache only with fresh
//     responses the origin declared public or gave s-maxage (the gateway checks
//     credentials first); their own responses are stored only where §3.5 allows.
//   - Trailers are not stored. The request directives stale-if-error and
//     no-transform, and the response directives must-understand and immutable
//     are ignored (the cache never transforms content).
//   - The gateway's fasthttp server sends its own Date unless it runs with
//     NoDefaultDate; Age still tells a client how old a response is.
//
// A Cache is safe for concurrent use. A hit costs a map lookup and an LRU move
// under one mutex, a copy of the stored header and no allocation.
package httpcache
