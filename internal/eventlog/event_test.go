package eventlog

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   UserEvent
		want string // "" for valid
	}{
		{"name only", UserEvent{Name: "deploy"}, ""},
		{"all filters", UserEvent{Name: "deploy", NodeFilter: "^web-", ServiceFilter: "api", TagFilter: "v[0-9]+"}, ""},
		{"missing name", UserEvent{}, "Missing name"},
		{"tag without service", UserEvent{Name: "x", TagFilter: "v1"}, "Cannot provide tag filter without service filter"},
		{"bad node filter", UserEvent{Name: "x", NodeFilter: "web-("}, "Invalid node filter"},
		{"bad service filter", UserEvent{Name: "x", ServiceFilter: "[a-"}, "Invalid service filter"},
		{"bad tag filter", UserEvent{Name: "x", ServiceFilter: "a", TagFilter: "*"}, "Invalid tag filter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ev.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalid with %q", err, tc.want)
			}
		})
	}
}

func TestIDToIndexMatchesConsulAPI(t *testing.T) {
	var apiEvents api.Event // IDToIndex does not use its client
	for _, id := range []string{
		"b54fe110-7af5-cafc-d1fb-afc8ba432b1c",
		"00000000-0000-0000-0000-000000000001",
		"FFFFFFFF-FFFF-4FFF-BFFF-FFFFFFFFFFFF",
		"12345678-9abc-4def-8123-456789abcdef",
	} {
		if got, want := IDToIndex(id), apiEvents.IDToIndex(id); got != want {
			t.Errorf("IDToIndex(%s) = %d, consul/api says %d", id, got, want)
		}
	}
	// Degenerate inputs still give a usable index.
	for _, id := range []string{"", "not-a-uuid", "00000000-0000-0000-0000-000000000000"} {
		if IDToIndex(id) == 0 {
			t.Errorf("IDToIndex(%q) = 0, want >= 1", id)
		}
	}
}

func TestAccepts(t *testing.T) {
	services := func() map[string][]string {
		return map[string][]string{"api": {"v1", "canary"}, "db": nil}
	}
	for _, tc := range []struct {
		name     string
		ev       UserEvent
		services Services
		want     bool
	}{
		{"no filters", UserEvent{}, nil, true},
		{"node matches", UserEvent{NodeFilter: "^s2$"}, nil, true},
		{"node partial regexp", UserEvent{NodeFilter: "s"}, nil, true},
		{"node does not match", UserEvent{NodeFilter: "^s1$"}, nil, false},
		{"bad node filter rejects", UserEvent{NodeFilter: "("}, nil, false},
		{"service filter without services hook is not applied", UserEvent{ServiceFilter: "nothing"}, nil, true},
		{"service matches", UserEvent{ServiceFilter: "^api$"}, services, true},
		{"service does not match", UserEvent{ServiceFilter: "^web$"}, services, false},
		{"service and tag match", UserEvent{ServiceFilter: "api", TagFilter: "^canary$"}, services, true},
		{"tag on another service", UserEvent{ServiceFilter: "db", TagFilter: "v1"}, services, false},
		{"node filter still applies with services", UserEvent{NodeFilter: "x", ServiceFilter: "api"}, services, false},
		{"bad service filter rejects", UserEvent{ServiceFilter: "["}, services, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Accepts(&tc.ev, "s2", tc.services); got != tc.want {
				t.Fatalf("Accepts = %v, want %v", got, tc.want)
			}
		})
	}
}
