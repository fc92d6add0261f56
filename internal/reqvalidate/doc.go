// Package reqvalidate checks the requests the edge gateway receives against a
// route's validation policy (issue 8): size limits, methods, content types and,
// when the service publishes one, its OpenAPI 3 document.
//
// A Validator is compiled once per policy (New) and is safe for concurrent use;
// the gateway swaps in a new one when the policy or the document changes. It is
// used at two points of the fasthttp request path:
//
//   - in Server.HeaderReceived, before the body is read, the gateway returns
//     fasthttp.RequestConfig{MaxRequestBodySize: v.MaxBodySize()}, so fasthttp
//     refuses an oversized body (ErrBodyTooLarge, 413) without reading it;
//   - in the handler, before the request is rewritten for the upstream, the
//     gateway calls Check with the path the service will see (the route's prefix
//     stripped if the route strips it) and, on a violation, answers with
//     Violation.Write instead of forwarding.
//
// CheckHeader is the part of Check that needs only the request line and the
// header; it allocates nothing and takes well under a microsecond.
//
// # What is checked, in order
//
// The first violation is reported, so a request is always refused for the same
// reason:
//
//	414 URI longer than max_uri_length
//	431 header larger than max_header_bytes, or more fields than max_headers
//	405 method not in methods (with an Allow header)
//	411 POST, PUT or PATCH without Content-Length or chunked framing, when content_types is set
//	413 Content-Length, or a chunked body, larger than max_body_bytes
//	415 a body whose media type is not in content_types (or that has none)
//	404 path matches no path of the OpenAPI document
//	405 method not defined for the matched path (with an Allow header)
//	415 body with a Content-Encoding, or a media type the operation does not accept
//	400 parameters (path, query, header, cookie, in the document's order), then the body
//
// An unknown path is 404 "no such operation" rather than 400: the request is not
// malformed, the service just has no such resource, and 404 is what the service
// itself would answer. Methods are case-sensitive; where GET is allowed, HEAD is
// allowed too (as net/http's ServeMux does), in both the methods list and the
// document.
//
// # The OpenAPI document
//
// The document (JSON or YAML, OpenAPI 3.0 to 3.2) is loaded without following
// external $refs: it comes from the KV store and must be self-contained. Paths
// are matched as the service sees them, with or without the path of one of the
// document's servers in front; servers' schemes and hosts are ignored, since the
// gateway has already chosen the service. Security requirements are not checked
// here (authentication is a separate gateway feature), and default values are
// not written into the request: what is forwarded is what the client sent.
// Bodies are validated from a copy; the fasthttp request is never modified.
package reqvalidate
