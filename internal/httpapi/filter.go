package httpapi

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// filter is a parsed ?filter expression: the subset of Consul's go-bexpr language that
// clients use: selectors (Service.Tags, Service.Meta.env, Node.Node ...), ==, !=,
// "in", "not in", "contains", "not contains", "is empty", "is not empty", and, or, not,
// parentheses. Values are quoted strings, numbers, true/false or bare words.
type filter struct{ root node }

type node interface{ eval(obj any) bool }

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ n node }
type cmpNode struct {
	sel   []string
	op    string
	value string
}

func (n andNode) eval(o any) bool { return n.l.eval(o) && n.r.eval(o) }
func (n orNode) eval(o any) bool  { return n.l.eval(o) || n.r.eval(o) }
func (n notNode) eval(o any) bool { return !n.n.eval(o) }

func (n cmpNode) eval(o any) bool {
	v, found := lookup(o, n.sel)
	switch n.op {
	case "is empty":
		return !found || isEmpty(v)
	case "is not empty":
		return found && !isEmpty(v)
	case "==":
		return found && scalar(v) == n.value
	case "!=":
		return !found || scalar(v) != n.value
	case "in", "contains":
		return found && contains(v, n.value)
	case "not in", "not contains":
		return !found || !contains(v, n.value)
	}
	return false
}

func lookup(o any, sel []string) (any, bool) {
	cur := o
	for _, s := range sel {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		v, ok := m[s]
		if !ok {
			// Field names match case-insensitively, like go-bexpr's.
			for k, mv := range m {
				if strings.EqualFold(k, s) {
					v, ok = mv, true
					break
				}
			}
			if !ok {
				return nil, false
			}
		}
		cur = v
	}
	return cur, true
}

func scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	}
	return false
}

func contains(v any, want string) bool {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if scalar(e) == want {
				return true
			}
		}
	case map[string]any:
		_, ok := x[want]
		return ok
	case string:
		return strings.Contains(x, want)
	}
	return false
}

// parseFilter parses a filter expression; errors name what went wrong.
func parseFilter(expr string) (*filter, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.pos].text)
	}
	return &filter{root: n}, nil
}

// match evaluates the filter against v as its JSON object.
func (f *filter) match(v any) bool {
	b, err := json.Marshal(v)
	if err != nil {
		return false
	}
	var obj any
	if err := json.Unmarshal(b, &obj); err != nil {
		return false
	}
	return f.root.eval(obj)
}

type token struct {
	text   string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case unicode.IsSpace(rune(c)):
			i++
		case c == '(' || c == ')':
			out = append(out, token{text: string(c)})
			i++
		case c == '"' || c == '`':
			j := i + 1
			var b strings.Builder
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && j+1 < len(s) && c == '"' {
					j++
				}
				b.WriteByte(s[j])
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			out = append(out, token{text: b.String(), quoted: true})
			i = j + 1
		case c == '=' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				out = append(out, token{text: s[i : i+2]})
				i += 2
				continue
			}
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		default:
			j := i
			for j < len(s) && !unicode.IsSpace(rune(s[j])) && !strings.ContainsRune("()=!\"`", rune(s[j])) {
				j++
			}
			out = append(out, token{text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek(words ...string) bool {
	if p.pos >= len(p.toks) || p.toks[p.pos].quoted {
		return false
	}
	for _, w := range words {
		if strings.EqualFold(p.toks[p.pos].text, w) {
			return true
		}
	}
	return false
}

func (p *parser) next() (token, error) {
	if p.pos >= len(p.toks) {
		return token{}, fmt.Errorf("unexpected end of expression")
	}
	t := p.toks[p.pos]
	p.pos++
	return t, nil
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.peek("or") {
		p.pos++
		var r node
		if r, err = p.and(); err == nil {
			l = orNode{l, r}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.unary()
	for err == nil && p.peek("and") {
		p.pos++
		var r node
		if r, err = p.unary(); err == nil {
			l = andNode{l, r}
		}
	}
	return l, err
}

func (p *parser) unary() (node, error) {
	if p.peek("not") {
		p.pos++
		n, err := p.unary()
		return notNode{n}, err
	}
	if p.peek("(") {
		p.pos++
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peek(")") {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return n, nil
	}
	return p.comparison()
}

func (p *parser) comparison() (node, error) {
	first, err := p.next()
	if err != nil {
		return nil, err
	}
	switch {
	case p.peek("in"):
		p.pos++
		return p.withSelector("in", first.text)
	case p.peek("not") && p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1].text, "in"):
		p.pos += 2
		return p.withSelector("not in", first.text)
	}
	if first.quoted {
		return nil, fmt.Errorf("a value %q must be followed by in or not in", first.text)
	}
	sel := strings.Split(first.text, ".")
	switch {
	case p.peek("==", "!="):
		op, _ := p.next()
		v, err := p.next()
		return cmpNode{sel: sel, op: op.text, value: v.text}, err
	case p.peek("contains"):
		p.pos++
		v, err := p.next()
		return cmpNode{sel: sel, op: "contains", value: v.text}, err
	case p.peek("not") && p.pos+1 < len(p.toks) && strings.EqualFold(p.toks[p.pos+1].text, "contains"):
		p.pos += 2
		v, err := p.next()
		return cmpNode{sel: sel, op: "not contains", value: v.text}, err
	case p.peek("is"):
		p.pos++
		op := "is empty"
		if p.peek("not") {
			p.pos++
			op = "is not empty"
		}
		if !p.peek("empty") {
			return nil, fmt.Errorf("expected empty after is")
		}
		p.pos++
		return cmpNode{sel: sel, op: op}, nil
	}
	return nil, fmt.Errorf("expected an operator after %q", first.text)
}

func (p *parser) withSelector(op, value string) (node, error) {
	s, err := p.next()
	if err != nil {
		return nil, err
	}
	return cmpNode{sel: strings.Split(s.text, "."), op: op, value: value}, nil
}

// filterFrom parses ?filter (nil when absent).
func filterFrom(expr string) (*filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, nil
	}
	f, err := parseFilter(expr)
	if err != nil {
		return nil, badRequest("Failed to create boolean expression evaluator: %v", err)
	}
	return f, nil
}

// keep returns the elements of list the filter matches (all of them without a filter).
func keep[T any](f *filter, list []T) []T {
	if f == nil {
		return list
	}
	out := list[:0:0]
	for _, e := range list {
		if f.match(e) {
			out = append(out, e)
		}
	}
	return out
}
