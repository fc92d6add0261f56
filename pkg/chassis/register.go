package chassis

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
)

// registration builds the instance's catalog entry: its address and port, tags,
// meta (version, admin_port) and one HTTP check on /health/ready. The check starts
// passing when the instance was ready at registration, so that it is found at once
// instead of after the first probe (the agent staggers a check's first run over its
// interval); DeregisterCriticalServiceAfter removes the entry of a crashed process.
func (in *Instance) registration(passing bool) *api.AgentServiceRegistration {
	_, apiPort, _ := net.SplitHostPort(in.addr)
	port, _ := strconv.Atoi(apiPort)
	_, adminPort, _ := net.SplitHostPort(in.adminAddr)

	addr := in.set.Address
	if addr == "" && in.set.BindAddr != "" && !net.ParseIP(in.set.BindAddr).IsUnspecified() {
		addr = in.set.BindAddr
	}
	// The check comes from the local agent: the registered address if there is one,
	// else loopback (the agent shares the host when it is the node's address).
	checkHost := addr
	if checkHost == "" {
		checkHost = "127.0.0.1"
	}
	meta := map[string]string{"version": in.svc.Version, "admin_port": adminPort}
	for k, v := range in.svc.Meta {
		meta[k] = v
	}
	status := api.HealthCritical
	if passing {
		status = api.HealthPassing
	}
	tags := append(append([]string{}, in.svc.Tags...), in.set.Tags...)
	return &api.AgentServiceRegistration{
		ID:      in.id,
		Name:    in.svc.Name,
		Tags:    tags,
		Port:    port,
		Address: addr,
		Meta:    meta,
		Check: &api.AgentServiceCheck{
			CheckID:                        "service:" + in.id,
			Name:                           in.svc.Name + " ready",
			HTTP:                           "http://" + net.JoinHostPort(checkHost, adminPort) + "/health/ready",
			Interval:                       in.set.CheckInterval.String(),
			Timeout:                        "1s",
			Status:                         status,
			DeregisterCriticalServiceAfter: in.set.DeregisterAfter.String(),
		},
	}
}

// register registers the instance, retrying until ctx ends (an agent that restarts
// while the service starts is ridden out).
func (in *Instance) register(ctx context.Context, passing bool) error {
	reg := in.registration(passing)
	return retry(ctx, func() error {
		return in.consul.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx))
	})
}

// keepRegistered re-registers the instance when the agent has lost it (an agent
// restarted without its state), every interval, until ctx ends.
func (in *Instance) keepRegistered(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _, err := in.consul.Agent().Service(in.id, (&api.QueryOptions{}).WithContext(ctx))
		var se api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusNotFound || ctx.Err() != nil {
			continue
		}
		ok, _ := in.Ready(ctx)
		in.log.Warn("the agent lost this instance's registration, registering again")
		if err := in.consul.Agent().ServiceRegisterOpts(in.registration(ok), api.ServiceRegisterOpts{ReplaceExistingChecks: true}.WithContext(ctx)); err != nil && ctx.Err() == nil {
			in.log.Warn("registering again failed", "error", err.Error())
		}
	}
}

// waitCatalog waits until the catalog lists the instance (a blocking query on the
// service's health entries), so that "ready" means discoverable.
func (in *Instance) waitCatalog(ctx context.Context) error {
	_, err := in.watchOwnEntry(ctx, true)
	return err
}

// watchOwnEntry follows the service's health entries with blocking queries until the
// instance is listed (want true) or not (want false), and returns how long that took.
func (in *Instance) watchOwnEntry(ctx context.Context, want bool) (time.Duration, error) {
	start := time.Now()
	var idx uint64
	for {
		entries, meta, err := in.consul.Health().Service(in.svc.Name, "", false,
			(&api.QueryOptions{WaitIndex: idx, WaitTime: 10 * time.Second}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return time.Since(start), err
			}
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		listed := false
		for _, e := range entries {
			if e.Service != nil && e.Service.ID == in.id {
				listed = true
				break
			}
		}
		if listed == want {
			return time.Since(start), nil
		}
		if meta.LastIndex < idx {
			idx = 0
		} else {
			idx = meta.LastIndex
		}
	}
}

// deregister removes the instance from the agent and waits until the catalog no
// longer lists it (a blocking query on the service's health entries), so that
// every client watching the catalog is told next. It returns how long that took.
func (in *Instance) deregister(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if err := in.consul.Agent().ServiceDeregisterOpts(in.id, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		var se api.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusNotFound {
			return 0, err
		}
	}
	_, err := in.watchOwnEntry(ctx, false)
	return time.Since(start), err
}

// retry calls fn until it succeeds or ctx ends, backing off from 50 ms to 1 s with
// jitter; it returns fn's last error, or ctx's if fn never ran.
func retry(ctx context.Context, fn func() error) error {
	backoff := 50 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if !sleepCtx(ctx, backoff+rand.N(backoff/2)) {
			return err
		}
		backoff = min(2*backoff, time.Second)
	}
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept fully.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
