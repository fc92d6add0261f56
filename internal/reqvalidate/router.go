package reqvalidate

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// pathMatcher is one path template of the document compiled for matching
// request paths segment by segment, without allocating.
type pathMatcher struct {
	segs []segment
}

// segment is one /-separated part of a template: a literal, a whole-segment
// variable, or, for templates like "{name}.{ext}", a regular expression.
type segment struct {
	lit   string
	name  string         // whole-segment variable
	re    *regexp.Regexp // mixed literal and variables
	names []string       // the variables of re, in order
}

// param is a path parameter found by a match; val points into the request path.
type param struct {
	name string
	val  []byte
}

// compileTemplate compiles an OpenAPI path template ("/orders/{id}"), with the
// server's base path (possibly "") in front.
func compileTemplate(base, tmpl string) (pathMatcher, error) {
	full := strings.TrimSuffix(base, "/") + tmpl
	if !strings.HasPrefix(full, "/") {
		return pathMatcher{}, fmt.Errorf("path %q must start with /", tmpl)
	}
	var m pathMatcher
	for _, s := range strings.Split(full[1:], "/") {
		seg, err := compileSegment(s)
		if err != nil {
			return pathMatcher{}, fmt.Errorf("path %q: %w", tmpl, err)
		}
		m.segs = append(m.segs, seg)
	}
	return m, nil
}

func compileSegment(s string) (segment, error) {
	if !strings.ContainsAny(s, "{}") {
		return segment{lit: s}, nil
	}
	if len(s) > 2 && s[0] == '{' && s[len(s)-1] == '}' && !strings.ContainsAny(s[1:len(s)-1], "{}") {
		return segment{name: s[1 : len(s)-1]}, nil
	}
	var (
		expr  strings.Builder
		names []string
	)
	expr.WriteByte('^')
	for rest := s; rest != ""; {
		open := strings.IndexByte(rest, '{')
		if open < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return segment{}, fmt.Errorf("unbalanced } in %q", s)
			}
			expr.WriteString(regexp.QuoteMeta(rest))
			break
		}
		if strings.IndexByte(rest[:open], '}') >= 0 {
			return segment{}, fmt.Errorf("unbalanced } in %q", s)
		}
		expr.WriteString(regexp.QuoteMeta(rest[:open]))
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return segment{}, fmt.Errorf("unbalanced { in %q", s)
		}
		name := rest[open+1 : open+end]
		if name == "" || strings.IndexByte(name, '{') >= 0 {
			return segment{}, fmt.Errorf("bad variable in %q", s)
		}
		names = append(names, name)
		expr.WriteString("([^/]+)")
		rest = rest[open+end+1:]
	}
	expr.WriteByte('$')
	re, err := regexp.Compile(expr.String())
	if err != nil {
		return segment{}, fmt.Errorf("segment %q: %w", s, err)
	}
	return segment{re: re, names: names}, nil
}

// match reports whether path matches, appending its parameters to ps.
func (m *pathMatcher) match(path []byte, ps []param) ([]param, bool) {
	if len(path) == 0 || path[0] != '/' {
		return ps, false
	}
	rest := path[1:]
	for i := range m.segs {
		s := &m.segs[i]
		var seg []byte
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			if i != len(m.segs)-1 {
				return ps, false
			}
			seg, rest = rest, nil
		}
		switch {
		case s.name != "":
			if len(seg) == 0 {
				return ps, false
			}
			ps = append(ps, param{s.name, seg})
		case s.re != nil:
			sub := s.re.FindSubmatchIndex(seg)
			if sub == nil {
				return ps, false
			}
			for k, name := range s.names {
				ps = append(ps, param{name, seg[sub[2+2*k]:sub[3+2*k]]})
			}
		default:
			if string(seg) != s.lit {
				return ps, false
			}
		}
	}
	return ps, rest == nil
}
