package chassis_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/wolke-platform/wolke/internal/agent"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// A service in ten lines, and another service calling it by name. In a real program
// the first would be chassis.Main(chassis.Service{...}) in its own main package, with
// its environment from the process; here both run in one process against an
// in-process dev agent.
func Example() {
	env, stopAgent := exampleAgent()
	defer stopAgent()

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- chassis.Run(ctx, chassis.Service{
			Name: "hello", Version: "1.0.0",
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintln(w, "hello")
			}),
			LookupEnv: env, Stdout: io.Discard,
		})
	}()

	caller, err := chassis.New(chassis.Service{Name: "caller", LookupEnv: env, Stdout: io.Discard})
	if err != nil {
		panic(err)
	}
	defer caller.Close()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := caller.Client().Get("http://hello/")
		if err != nil {
			continue // not registered yet
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Print(string(body))
		break
	}
	stop()
	fmt.Println("shut down:", <-done)
	// Output:
	// hello
	// shut down: <nil>
}

// Setup is where a service builds its handler with what the instance provides:
// dynamic configuration, clients of other services, background work and election.
func ExampleService_setup() {
	chassis.Main(chassis.Service{
		Name: "storefront", Version: "1.4.0",
		Requires: []string{"catalog"}, // not ready without a catalog instance
		Setup: func(ctx context.Context, in *chassis.Instance) (http.Handler, error) {
			pageSize := in.Dynamic().Int("page_size", 20, chassis.Between(1, 100))
			catalog := in.Client()
			recs := in.ClientWith(chassis.ClientOptions{
				Timeout: 300 * time.Millisecond,
				Fallback: func(req *http.Request, err error) (*http.Response, error) {
					return chassis.StaticResponse(req, http.StatusOK, "application/json", "[]"), nil // no recommendations
				},
			})
			in.Go(func(ctx context.Context) {
				_ = in.Elect(ctx, "service/storefront/sitemap", func(ctx context.Context) {
					// Only the leader rebuilds the sitemap, until ctx ends.
				})
			})
			mux := http.NewServeMux()
			mux.HandleFunc("GET /products", func(w http.ResponseWriter, r *http.Request) {
				req, _ := http.NewRequestWithContext(r.Context(), "GET",
					fmt.Sprintf("http://catalog/products?limit=%d", pageSize.Get()), nil)
				resp, err := catalog.Do(req)
				if err != nil {
					in.Logger().WarnContext(r.Context(), "catalog unavailable", "error", err)
					http.Error(w, "catalog unavailable", http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				io.Copy(w, resp.Body)
				// Recommendations degrade to none instead of failing the page.
				req, _ = http.NewRequestWithContext(r.Context(), "GET", "http://recommendations/for/"+r.URL.Query().Get("user"), nil)
				if resp, err := recs.Do(req); err == nil {
					io.Copy(w, resp.Body)
					resp.Body.Close()
				}
			})
			return mux, nil
		},
		Tasks: map[string]chassis.Task{
			"reindex": {Help: "rebuild the search index", Run: func(ctx context.Context, in *chassis.Instance, args []string) error {
				return nil
			}},
		},
	})
}

// exampleAgent starts an in-memory dev agent on free loopback ports and returns the
// environment of a service next to it.
func exampleAgent() (env func(string) (string, bool), stop func()) {
	cfg := agent.DefaultConfig()
	cfg.Dev = true
	cfg.HTTP.Addr, cfg.DNS.Addr = "127.0.0.1:0", ""
	cfg.ServerPort, cfg.SerfPort = 0, 0
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.Raft.HeartbeatTimeout, cfg.Raft.ElectionTimeout, cfg.Raft.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	a, err := agent.New(cfg)
	if err != nil {
		panic(err)
	}
	if err := a.Start(); err != nil {
		panic(err)
	}
	vars := map[string]string{"WOLKE_HTTP_ADDR": a.HTTPAddr(), "BIND_ADDR": "127.0.0.1", "DEREGISTER_WAIT": "10ms"}
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	}
}
