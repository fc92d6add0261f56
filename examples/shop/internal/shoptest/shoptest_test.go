package shoptest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/wolke-platform/wolke/pkg/chassis"
)

func TestStartAndClient(t *testing.T) {
	agent := StartAgent(t)
	svc := agent.Start(t, chassis.Service{
		Name: "echo",
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			word := in.Dynamic().String("word", "hello")
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, word.Get())
			}), nil
		},
	}, "CONFIG_PREFIX=config/echo-test/")

	// Directly, and through the catalog.
	for _, url := range []string{svc.URL + "/", "http://echo/"} {
		resp, err := agent.Client(t).Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Fatalf("%s: %q", url, b)
		}
	}
	// The env reached the instance.
	if p := svc.Dynamic().Prefix(); p != "config/echo-test/" {
		t.Fatalf("prefix %q", p)
	}
	svc.Stop(t)
	svc.Stop(t) // twice is fine
	if !strings.Contains(svc.Logs(), `"msg":"ready"`) {
		t.Fatal("no ready line in the log")
	}
	entries, _, err := agent.Consul.Health().Service("echo", "", false, nil)
	if err != nil || len(entries) != 0 {
		t.Fatalf("still in the catalog after Stop: %v %v", entries, err)
	}
}
