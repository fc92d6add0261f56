package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/wolke-platform/wolke/internal/dns"
	"github.com/wolke-platform/wolke/internal/state"
)

// dnsCatalog answers the DNS server from the catalog. A server reads its own state
// (stale, as Consul's DNS does by default); a client agent has none and asks a server
// through its own API with ?stale.
type dnsCatalog struct{ a *Agent }

var _ dns.Catalog = dnsCatalog{}

func (c dnsCatalog) Datacenter() string { return c.a.cfg.Datacenter }

func (c dnsCatalog) ServiceInstances(ctx context.Context, service, tag string) ([]dns.Instance, error) {
	var tags []string
	if tag != "" {
		tags = []string{tag}
	}
	if c.a.node == nil {
		return c.remoteInstances(ctx, service, tag)
	}
	_, inst, err := c.a.store.ServiceInstances(nil, service, tags)
	if err != nil {
		return nil, err
	}
	out := make([]dns.Instance, 0, len(inst))
	for i := range inst {
		out = append(out, toDNSInstance(inst[i].Node, inst[i].Service, inst[i].AggregatedStatus()))
	}
	return out, nil
}

func toDNSInstance(n *state.Node, s *state.Service, health string) dns.Instance {
	if health == "maintenance" {
		health = state.HealthCritical
	}
	return dns.Instance{Node: n.Node, NodeAddress: n.Address, ServiceAddress: s.Address, Port: s.Port,
		Tags: s.Tags, Health: health, Weights: dns.Weights{Passing: s.Weights.Passing, Warning: s.Weights.Warning}}
}

func (c dnsCatalog) Node(ctx context.Context, name string) (dns.NodeInfo, bool, error) {
	if c.a.node == nil {
		var out *struct {
			Node struct {
				Node    string
				Address string
				Meta    map[string]string
			}
		}
		if err := c.a.internalGet(ctx, "/v1/catalog/node/"+url.PathEscape(name)+"?stale", &out); err != nil {
			return dns.NodeInfo{}, false, err
		}
		if out == nil {
			return dns.NodeInfo{}, false, nil
		}
		return dns.NodeInfo{Name: out.Node.Node, Address: out.Node.Address, Meta: out.Node.Meta}, true, nil
	}
	_, n, err := c.a.store.GetNode(nil, name)
	if err != nil || n == nil {
		return dns.NodeInfo{}, false, err
	}
	return dns.NodeInfo{Name: n.Node, Address: n.Address, Meta: n.Meta}, true, nil
}

func (c dnsCatalog) remoteInstances(ctx context.Context, service, tag string) ([]dns.Instance, error) {
	path := "/v1/health/service/" + url.PathEscape(service) + "?stale"
	if tag != "" {
		path += "&tag=" + url.QueryEscape(tag)
	}
	var entries []struct {
		Node struct {
			Node    string
			Address string
		}
		Service struct {
			Address string
			Port    int
			Tags    []string
			Weights state.Weights
		}
		Checks []state.Check
	}
	if err := c.a.internalGet(ctx, path, &entries); err != nil {
		return nil, err
	}
	out := make([]dns.Instance, 0, len(entries))
	for _, e := range entries {
		si := state.ServiceInstance{Node: &state.Node{Node: e.Node.Node, Address: e.Node.Address},
			Service: &state.Service{Address: e.Service.Address, Port: e.Service.Port, Tags: e.Service.Tags, Weights: e.Service.Weights}}
		for i := range e.Checks {
			si.Checks = append(si.Checks, &e.Checks[i])
		}
		out = append(out, toDNSInstance(si.Node, si.Service, si.AggregatedStatus()))
	}
	return out, nil
}

// internalGet reads JSON through this agent's own API (forwarded as any request).
func (a *Agent) internalGet(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, http.NoBody)
	if err != nil {
		return err
	}
	rec := &memResponse{header: http.Header{}}
	a.http.Handler().ServeHTTP(rec, req)
	if rec.code != 0 && rec.code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, rec.code, strings.TrimSpace(rec.body.String()))
	}
	return json.Unmarshal(rec.body.Bytes(), v)
}
