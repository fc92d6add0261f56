package chassis

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

func TestTasks(t *testing.T) {
	agent := startAgent(t)
	c := consulClient(t, agent)
	if _, err := c.KV().Put(&api.KVPair{Key: "config/shop/batch", Value: []byte("25")}, nil); err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Table string `env:"TABLE" default:"items" help:"table to migrate"`
		DB    string `env:"DB_URL" required:"true"`
	}
	var gotArgs []string
	var gotBatch int
	var gotTable string
	svc := Service{
		Name: "shop", Version: "2.0", Config: &cfg,
		Tasks: map[string]Task{
			"migrate": {Help: "apply schema migrations", Run: func(ctx context.Context, in *Instance, args []string) error {
				gotArgs, gotTable = args, cfg.Table
				gotBatch = in.Dynamic().Int("batch", 10).Get()
				_, err := in.Consul().KV().Put(&api.KVPair{Key: "shop/schema", Value: []byte("v2")}, nil)
				return err
			}},
			"fail": {Help: "always fails", Run: func(context.Context, *Instance, []string) error { return errors.New("nope") }},
		},
	}
	run := func(args []string, env ...string) (*logBuffer, error) {
		logs := &logBuffer{}
		s := svc
		s.Args, s.Stdout, s.LookupEnv = args, logs, testEnv(agent, env...)
		return logs, Run(context.Background(), s)
	}

	logs, err := run([]string{"migrate", "--dry-run", "x"}, "DB_URL", "pg://", "TABLE", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(gotArgs, " ") != "--dry-run x" || gotTable != "orders" || gotBatch != 25 {
		t.Fatalf("task saw args %v, table %q, batch %d", gotArgs, gotTable, gotBatch)
	}
	if p, _, _ := c.KV().Get("shop/schema", nil); p == nil || string(p.Value) != "v2" {
		t.Fatal("the task's write is missing")
	}
	if done := logs.find(t, "task done"); done == nil || !strings.HasPrefix(done["instance"].(string), "shop-migrate-") {
		t.Fatalf("task log: %v", logs.records(t))
	}
	if svcs, _ := c.Agent().Services(); len(svcs) != 0 {
		t.Fatalf("a task registered: %v", svcs)
	}

	_, err = run([]string{"fail"}, "DB_URL", "pg://")
	if err == nil || !strings.Contains(err.Error(), "nope") || ExitCode(err) != 1 {
		t.Fatalf("failing task: %v (exit %d)", err, ExitCode(err))
	}
	_, err = run([]string{"frobnicate"}, "DB_URL", "pg://")
	var ue *UsageError
	if !errors.As(err, &ue) || ExitCode(err) != 2 || !strings.Contains(err.Error(), `"frobnicate"`) {
		t.Fatalf("unknown command: %v", err)
	}
	_, err = run([]string{"migrate"}) // DB_URL missing
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "DB_URL") {
		t.Fatalf("task without its environment: %v", err)
	}

	// help and version work without the environment.
	out, err := run([]string{"help"})
	help := out.buf.String()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shop 2.0", "migrate", "apply schema migrations", "TABLE", `default "items"`, "DB_URL", "required", "PORT", "WOLKE_HTTP_ADDR, CONSUL_HTTP_ADDR"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if out, err := run([]string{"version"}); err != nil || out.buf.String() != "shop 2.0\n" {
		t.Fatalf("version: %v %q", err, out.buf.String())
	}
}
