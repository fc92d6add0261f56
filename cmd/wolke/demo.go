package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/agent"
	"github.com/wolke-platform/wolke/internal/proxy"
)

func init() { subcommands = append(subcommands, newDemoCmd) }

// demoPolicies are the gateway's policies for the shop (examples/shop/README.md).
var demoPolicies = map[string]string{
	"accounts":        `{"rate_limit": {"rate": 5, "burst": 10, "key": "header:X-Forwarded-For"}}`,
	"catalog":         `{"cache": {"enabled": true}}`,
	"cart":            `{"auth": {"jwt": {"jwks_key": "wolke/gateway/jwks", "issuer": "wolke-shop", "audience": ["shop"]}}}`,
	"orders":          `{"auth": {"jwt": {"jwks_key": "wolke/gateway/jwks", "issuer": "wolke-shop", "audience": ["shop"]}}, "timeout": "20s"}`,
	"recommendations": `{"breaker_min_requests": 10, "breaker_open_timeout": "5s", "timeout": "1s", "attempts": 1}`,
}

type demoOptions struct {
	httpAddr, listen, adminListen string
	instances                     int
	chaos                         bool
	chaosEvery                    time.Duration
	shopDir                       string
}

func newDemoCmd() *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the demo shop: a dev agent, the gateway and two instances of every shop service",
		Long: `Run the demo web shop on wolke: builds the services in examples/shop (so run it
from the repository, e.g. go run ./cmd/wolke demo), starts a dev agent and the gateway
in this process and two instances of every service as separate processes, prints the
storefront's URL and a status line every few seconds, and stops everything cleanly on
Ctrl-C. With -chaos it also kills a random instance now and then and starts it again;
SIGUSR1 redeploys every instance, one at a time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8500", "address of the dev agent's HTTP API")
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address of the gateway, where the shop is")
	f.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8081", "the gateway's admin listener")
	f.IntVar(&o.instances, "instances", 2, "instances of every service")
	f.BoolVar(&o.chaos, "chaos", false, "kill a random instance every few seconds and start it again")
	f.DurationVar(&o.chaosEvery, "chaos-every", 5*time.Second, "how often -chaos strikes")
	f.StringVar(&o.shopDir, "shop", "", "directory of the shop's services (default: examples/shop of the repository)")
	return cmd
}

func runDemo(ctx context.Context, o demoOptions, out io.Writer) error {
	if o.instances < 1 || o.instances > 10 {
		return usageErrorf("-instances must be 1..10")
	}
	// The demo's own output is the status line; only errors of its parts interrupt it.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	shop := o.shopDir
	if shop == "" {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		shop = filepath.Join(root, "examples", "shop")
	}
	services, err := shopServices(shop)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "wolke-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(out, "building %d services (%s)...\n", len(services), strings.Join(services, ", "))
	if err := buildShop(ctx, shop, work, services); err != nil {
		return err
	}

	acfg := agent.DefaultConfig()
	acfg.Dev = true
	acfg.HTTP.Addr = o.httpAddr
	acfg.ServerPort, acfg.SerfPort = 0, 0
	acfg.DNS.Addr = "127.0.0.1:0"
	acfg.Logger = log
	acfg.Version = Version
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		return fmt.Errorf("dev agent: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(sctx)
	}()
	client, err := api.NewClient(&api.Config{Address: a.HTTPAddr()})
	if err != nil {
		return err
	}
	if err := waitWritable(ctx, client); err != nil {
		return err
	}
	for svc, doc := range demoPolicies {
		if _, err := client.KV().Put(&api.KVPair{Key: proxy.DocPrefix + svc, Value: []byte(doc)}, nil); err != nil {
			return fmt.Errorf("gateway policy for %s: %w", svc, err)
		}
	}

	pcfg := proxy.DefaultConfig()
	pcfg.Listen, pcfg.AdminListen, pcfg.APIAddr, pcfg.AccessLog, pcfg.Logger = o.listen, o.adminListen, a.HTTPAddr(), nil, log
	gw, err := proxy.New(pcfg)
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(sctx)
	}()

	sup := &supervisor{dir: work, agent: a.HTTPAddr(), gateway: "http://" + gw.Addr(), log: log, out: out}
	for _, svc := range services {
		for n := 1; n <= o.instances; n++ {
			if err := sup.start(svc, n); err != nil {
				sup.stopAll()
				return err
			}
		}
	}
	defer sup.stopAll()

	fmt.Fprintf(out, "\nthe shop:       http://%s/\nthe agent:      http://%s/v1/catalog/services\nthe gateway:    http://%s/v1/proxy/routes\nlogs:           %s\nCtrl-C stops everything.\n\n",
		gw.Addr(), a.HTTPAddr(), gw.AdminAddr(), work)

	// SIGUSR1 redeploys every instance, one at a time (the Black Friday benchmark does).
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)

	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	var chaos <-chan time.Time
	if o.chaos {
		ct := time.NewTicker(o.chaosEvery)
		defer ct.Stop()
		chaos = ct.C
	}
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(out, "\nstopping: instances drain and deregister first...")
			return nil
		case <-tick.C:
			fmt.Fprintln(out, demoStatus(client, services, o.instances, gw))
		case <-chaos:
			sup.strike()
		case <-usr1:
			go sup.redeploy(ctx, client, o.instances)
		}
	}
}

// moduleRoot finds the wolke repository above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/wolke-platform/wolke\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", usageErrorf("wolke demo builds the shop from source: run it inside the wolke repository (go run ./cmd/wolke demo), or give -shop DIR")
		}
		dir = parent
	}
}

// shopServices lists the service directories (those with a main.go).
func shopServices(shop string) ([]string, error) {
	entries, err := os.ReadDir(shop)
	if err != nil {
		return nil, fmt.Errorf("shop: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(shop, e.Name(), "main.go")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no services in %s", shop)
	}
	sort.Strings(out)
	return out, nil
}

func buildShop(ctx context.Context, shop, outDir string, services []string) error {
	args := []string{"build", "-o", outDir + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./"+s)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = shop
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the shop: %v\n%s", err, b)
	}
	return nil
}

func waitWritable(ctx context.Context, c *api.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := c.KV().Put(&api.KVPair{Key: "wolke/demo/started", Value: []byte(time.Now().UTC().Format(time.RFC3339))}, nil); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("dev agent did not become ready")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// supervisor runs the shop's instances and starts again those that die.
type supervisor struct {
	dir, agent, gateway string
	log                 *slog.Logger
	out                 io.Writer

	mu       sync.Mutex
	procs    map[string]*demoProc
	stopping bool
}

type demoProc struct {
	svc  string
	n    int
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *supervisor) start(svc string, n int) error {
	logf, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("%s-%d.log", svc, n)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.dir, svc))
	cmd.Env = append(os.Environ(),
		"PORT=0", "ADMIN_PORT=0", "WOLKE_HTTP_ADDR="+s.agent, "CONSUL_HTTP_ADDR="+s.agent,
		"GATEWAY_URL="+s.gateway, "LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", svc, err)
	}
	p := &demoProc{svc: svc, n: n, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	if s.procs == nil {
		s.procs = map[string]*demoProc{}
	}
	s.procs[fmt.Sprintf("%s-%d", svc, n)] = p
	s.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(p.done)
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		// Died on its own or by chaos: start it again after a moment, as a scheduler would.
		time.Sleep(2 * time.Second)
		s.mu.Lock()
		stopping = s.stopping
		s.mu.Unlock()
		if !stopping {
			if err := s.start(svc, n); err != nil {
				s.log.Error("restart failed", "instance", fmt.Sprintf("%s-%d", svc, n), "err", err)
			}
		}
	}()
	return nil
}

// redeploy restarts every instance one at a time, the way a rolling deploy does:
// SIGTERM (the instance deregisters and drains), the supervisor starts it again,
// and the next one goes only when the service has all its instances passing.
func (s *supervisor) redeploy(ctx context.Context, c *api.Client, want int) {
	s.mu.Lock()
	var procs []*demoProc
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	sort.Slice(procs, func(i, j int) bool {
		return procs[i].svc+fmt.Sprint(procs[i].n) < procs[j].svc+fmt.Sprint(procs[j].n)
	})
	fmt.Fprintf(s.out, "redeploy: %d instances, one at a time\n", len(procs))
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-ctx.Done():
			return
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			s.mu.Lock()
			cur := s.procs[fmt.Sprintf("%s-%d", p.svc, p.n)]
			s.mu.Unlock()
			entries, _, err := c.Health().Service(p.svc, "", true, nil)
			if cur != p && err == nil && len(entries) >= want {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	fmt.Fprintln(s.out, "redeploy: done")
}

// strike kills a random instance with SIGKILL; the supervisor starts it again.
func (s *supervisor) strike() {
	s.mu.Lock()
	var live []*demoProc
	for _, p := range s.procs {
		select {
		case <-p.done:
		default:
			live = append(live, p)
		}
	}
	s.mu.Unlock()
	if len(live) == 0 {
		return
	}
	p := live[rand.IntN(len(live))]
	fmt.Fprintf(s.out, "chaos: SIGKILL %s-%d (pid %d)\n", p.svc, p.n, p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGKILL)
}

// stopAll sends SIGTERM to every instance (they deregister, drain and exit) and waits.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	s.stopping = true
	procs := make([]*demoProc, 0, len(s.procs))
	for _, p := range s.procs {
		procs = append(procs, p)
	}
	s.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(20 * time.Second)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
}

// demoStatus is one line: passing instances per service and the gateway's traffic.
func demoStatus(c *api.Client, services []string, want int, gw *proxy.Proxy) string {
	var b strings.Builder
	b.WriteString(time.Now().Format("15:04:05"))
	for _, svc := range services {
		entries, _, err := c.Health().Service(svc, "", true, &api.QueryOptions{AllowStale: true})
		n := len(entries)
		if err != nil {
			n = -1
		}
		fmt.Fprintf(&b, " %s %d/%d", svc, n, want)
	}
	ok, failed := gatewayCounts(gw)
	fmt.Fprintf(&b, " | gateway %d ok, %d 5xx", ok, failed)
	return b.String()
}

func gatewayCounts(gw *proxy.Proxy) (ok, failed int64) {
	mfs, err := gw.Registry().Gather()
	if err != nil {
		return 0, 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "wolke_proxy_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" {
					switch l.GetValue() {
					case "5xx":
						failed += int64(m.GetCounter().GetValue())
					default:
						ok += int64(m.GetCounter().GetValue())
					}
				}
			}
		}
	}
	return ok, failed
}
