package proxy

import (
	"bytes"
	"sort"
)

// route is one entry of the routing table: which requests (spec) go to which
// service.
type route struct {
	spec    RouteSpec
	svc     *service
	metrics *routeMetrics
}

// table is an immutable routing table. A new one is built whenever the catalog
// changes and swapped in atomically, so the request path reads it without a lock.
type table struct {
	byHost map[string][]*route // routes for one Host, best first
	any    []*route            // routes for any Host, best first
}

func better(a, b *route) bool {
	if len(a.spec.Prefix) != len(b.spec.Prefix) {
		return len(a.spec.Prefix) > len(b.spec.Prefix)
	}
	if a.spec.Priority != b.spec.Priority {
		return a.spec.Priority > b.spec.Priority
	}
	if (a.spec.Host != "") != (b.spec.Host != "") {
		return a.spec.Host != ""
	}
	return a.svc.name < b.svc.name
}

func newTable(routes []*route) *table {
	t := &table{byHost: map[string][]*route{}}
	for _, r := range routes {
		if r.spec.Host == "" {
			t.any = append(t.any, r)
		} else {
			t.byHost[r.spec.Host] = append(t.byHost[r.spec.Host], r)
		}
	}
	sortRoutes := func(rs []*route) { sort.SliceStable(rs, func(i, j int) bool { return better(rs[i], rs[j]) }) }
	sortRoutes(t.any)
	for _, rs := range t.byHost {
		sortRoutes(rs)
	}
	return t
}

// prefixMatch reports whether path lies under prefix at a segment boundary, so
// /cart matches /cart and /cart/items but not /cartoon.
func prefixMatch(path []byte, prefix string) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// match finds the route for a request: the longest matching prefix wins, then the
// higher priority, then a route for this Host over one for any Host.
func (t *table) match(host, path []byte) *route {
	var best *route
	if len(t.byHost) > 0 {
		var buf [256]byte
		h := normHost(host, buf[:0])
		for _, r := range t.byHost[string(h)] {
			if prefixMatch(path, r.spec.Prefix) {
				best = r
				break
			}
		}
	}
	for _, r := range t.any {
		if best != nil && !better(r, best) {
			break
		}
		if prefixMatch(path, r.spec.Prefix) {
			return r
		}
	}
	return best
}

// normHost lowercases a Host header and drops its port.
func normHost(host, dst []byte) []byte {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && !bytes.HasSuffix(host, []byte("]")) {
		host = host[:i]
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
