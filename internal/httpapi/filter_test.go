package httpapi

import "testing"

func TestFilterExpressions(t *testing.T) {
	entry := map[string]any{
		"Node":    map[string]any{"Node": "n1", "Meta": map[string]any{"rack": "r1"}},
		"Service": map[string]any{"Service": "web", "Tags": []any{"v1", "canary"}, "Port": 8080.0, "Meta": map[string]any{"env": "prod"}},
	}
	cases := []struct {
		expr string
		want bool
	}{
		{`Service.Service == web`, true},
		{`Service.Service == "db"`, false},
		{`Service.Service != db`, true},
		{`"v1" in Service.Tags`, true},
		{`"v2" in Service.Tags`, false},
		{`"v2" not in Service.Tags`, true},
		{`Service.Tags contains canary`, true},
		{`Service.Meta.env == prod and Node.Meta.rack == r1`, true},
		{`Service.Meta.env == dev or Service.Port == 8080`, true},
		{`not (Service.Meta.env == prod)`, false},
		{`Service.Meta.missing is empty`, true},
		{`Service.Tags is not empty`, true},
		{`service.service == web`, true},
		{`"env" in Service.Meta`, true},
	}
	for _, tc := range cases {
		f, err := parseFilter(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got := f.root.eval(entry); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`Service.Service ==`, `(Service.Port == 1`, `"x"`, `Service.Port ~ 3`, `Service.Tags is full`, `"unterminated`} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
