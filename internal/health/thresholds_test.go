package health

import (
	"strings"
	"testing"
)

func TestThresholds(t *testing.T) {
	const (
		P = StatusPassing
		W = StatusWarning
		C = StatusCritical
		_ = "" // not reported
	)
	tests := []struct {
		name                 string
		success, warn, fails int
		results, want        string // one letter per result: p w c; want "-" = not reported
	}{
		{"no thresholds report everything", 0, 0, 0, "pcwcp", "pcwcp"},
		{"first result always reported", 3, 0, 3, "p", "p"},
		{"first failure always reported", 3, 0, 3, "c", "c"},
		{"success before passing 2", 2, 0, 0, "pcpp", "pc-p"},
		{"success before passing 3", 3, 0, 0, "pcppp", "pc--p"},
		{"warning counts as success", 2, 0, 0, "pcwp", "pc-p"},
		{"failures before critical 2", 0, 0, 2, "pcpcc", "p-p-c"},
		{"failures reset by a success", 0, 0, 3, "pccpccc", "p--p--c"},
		{"failures before warning then critical", 0, 1, 3, "pccc", "pwwc"},
		{"warning default equals critical", 0, 0, 2, "pcc", "p-c"},
		{"both", 2, 0, 2, "pccpp", "p-c-p"},
	}
	letter := map[byte]string{'p': P, 'w': W, 'c': C}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			th := newThresholds(tt.success, tt.warn, tt.fails)
			var got strings.Builder
			for i := range len(tt.results) {
				s, ok := th.apply(letter[tt.results[i]])
				if !ok {
					got.WriteByte('-')
				} else {
					got.WriteByte(s[0])
				}
			}
			if got.String() != tt.want {
				t.Errorf("results %s reported %s, want %s", tt.results, got.String(), tt.want)
			}
		})
	}
}
