package eventlog

import "regexp"

// Services lists an agent's local services, name to tags, for ServiceFilter and
// TagFilter. It is called for every received event that has a service filter and must
// be safe for concurrent use.
type Services func() map[string][]string

// Accepts reports whether an agent named node, with the given local services, keeps
// ev (Consul's shouldProcessUserEvent):
//   - NodeFilter must match the node name;
//   - ServiceFilter must match a local service's name, and TagFilter, if set, one of
//     that service's tags.
//
// A nil services means service discovery is not wired up: service and tag filters are
// then not applied. A filter that does not compile rejects the event.
func Accepts(ev *UserEvent, node string, services Services) bool {
	if ev.NodeFilter != "" {
		re, err := regexp.Compile(ev.NodeFilter)
		if err != nil || !re.MatchString(node) {
			return false
		}
	}
	if ev.ServiceFilter == "" || services == nil {
		return true
	}
	svcRe, err := regexp.Compile(ev.ServiceFilter)
	if err != nil {
		return false
	}
	var tagRe *regexp.Regexp
	if ev.TagFilter != "" {
		if tagRe, err = regexp.Compile(ev.TagFilter); err != nil {
			return false
		}
	}
	for name, tags := range services() {
		if !svcRe.MatchString(name) {
			continue
		}
		if tagRe == nil {
			return true
		}
		for _, t := range tags {
			if tagRe.MatchString(t) {
				return true
			}
		}
	}
	return false
}
