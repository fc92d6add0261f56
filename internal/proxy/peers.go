package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/internal/servicewatch"
)

// register puts this gateway into the catalog, checked by its admin /health (or a
// TTL the gateway keeps alive), and tagged so that it gets no route of its own.
func (p *Proxy) register(client *api.Client) error {
	host, portStr, err := net.SplitHostPort(p.Addr())
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(portStr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "" // the node's address
	}
	p.regID = fmt.Sprintf("%s-%s", p.cfg.GatewayService, net.JoinHostPort(host, portStr))
	reg := &api.AgentServiceRegistration{
		ID: p.regID, Name: p.cfg.GatewayService, Address: host, Port: port,
		Tags: []string{"wolke.http.enable=false"},
		Meta: map[string]string{"admin": p.AdminAddr()},
	}
	check := &api.AgentServiceCheck{CheckID: p.regID + ":alive", DeregisterCriticalServiceAfter: "1m"}
	if p.adminLn != nil {
		check.HTTP, check.Interval, check.Timeout = "http://"+p.adminLn.Addr().String()+"/health", "1s", "1s"
	} else {
		check.TTL = "10s"
	}
	reg.Check = check
	p.agent = client.Agent()
	if err := p.agent.ServiceRegister(reg); err != nil {
		return fmt.Errorf("register %s: %w", p.regID, err)
	}
	if check.TTL != "" {
		if err := p.agent.UpdateTTL(check.CheckID, "gateway running", api.HealthPassing); err != nil {
			return err
		}
	}
	p.ttlCheck = check.TTL != ""
	return nil
}

// deregister takes the gateway out of the catalog first thing on shutdown, so the
// others take over its share of cluster-wide limits.
func (p *Proxy) deregister() {
	if p.agent == nil || p.regID == "" {
		return
	}
	if err := p.agent.ServiceDeregister(p.regID); err != nil {
		p.log.Warn("could not deregister the gateway", "err", err)
	}
}

// keepAlive keeps a TTL check passing while the gateway runs (without an admin
// listener there is nothing for an HTTP check to ask).
func (p *Proxy) keepAlive(ctx context.Context) {
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		if err := p.agent.UpdateTTL(p.regID+":alive", "gateway running", api.HealthPassing); err != nil {
			p.log.Debug("gateway TTL update failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// applyShares gives every cluster-wide rate limit this gateway's share.
func (p *Proxy) applyShares() {
	share := 1 / float64(max(p.peers.Load(), 1))
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.services {
		if st := s.state.Load(); st != nil && st.limiter != nil && st.policy.RateLimit.Cluster {
			st.limiter.SetShare(share)
		}
	}
}

// onPeers is called with the passing gateway instances.
func (p *Proxy) onPeers(insts []servicewatch.Instance) {
	n := len(insts)
	if n < 1 {
		n = 1 // this one, even before its check passes
	}
	if int(p.peers.Swap(int64(n))) != n {
		p.log.Info("live gateways changed", "gateways", n)
		p.applyShares()
	}
}
