package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/wolke-platform/wolke/internal/health"
	"github.com/wolke-platform/wolke/internal/state"
)

// fileService is a service definition in a -config-dir file (Consul's format; keys
// match case-insensitively, so "service" and "Service" both work).
type fileService struct {
	ID                string
	Name              string
	Tags              []string
	Port              int
	Address           string
	Meta              map[string]string
	EnableTagOverride bool
	Weights           *state.Weights
	Check             *health.Definition
	Checks            []health.Definition
}

type configFile struct {
	Service  *fileService
	Services []fileService
	Check    *health.Definition
	Checks   []health.Definition
}

// loadedConfig is what the files defined, to replace on reload.
type loadedConfig struct {
	services []string
	checks   []string
}

// readConfigDir parses every *.json file in dir, in name order; any error names the
// file, and nothing is applied.
func readConfigDir(dir string) ([]fileService, []health.Definition, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(names)
	var services []fileService
	var checks []health.Definition
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", n, err)
		}
		var cf configFile
		if err := json.Unmarshal(b, &cf); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", n, err)
		}
		if cf.Service != nil {
			services = append(services, *cf.Service)
		}
		services = append(services, cf.Services...)
		if cf.Check != nil {
			checks = append(checks, *cf.Check)
		}
		checks = append(checks, cf.Checks...)
		for _, s := range services {
			if s.Name == "" {
				return nil, nil, fmt.Errorf("%s: a service definition without a Name", n)
			}
			if s.Port < 0 || s.Port > 65535 {
				return nil, nil, fmt.Errorf("%s: service %s: port %d out of range", n, s.Name, s.Port)
			}
		}
		for _, c := range checks {
			if err := c.Validate(true); err != nil {
				return nil, nil, fmt.Errorf("%s: check %q: %w", n, c.Name, err)
			}
		}
	}
	return services, checks, nil
}

// Reload re-reads -config-dir: services and checks defined there are registered,
// and those a previous load defined but the files no longer do are removed. A file
// that does not parse leaves everything as it was.
func (a *Agent) Reload() error {
	if a.cfg.ConfigDir == "" {
		return nil
	}
	services, checks, err := readConfigDir(a.cfg.ConfigDir)
	if err != nil {
		return fmt.Errorf("config dir: %w", err)
	}
	a.configMu.Lock()
	defer a.configMu.Unlock()
	var next loadedConfig
	for _, fs := range services {
		svc := state.Service{ID: fs.ID, Service: fs.Name, Tags: fs.Tags, Port: fs.Port, Address: fs.Address,
			Meta: fs.Meta, EnableTagOverride: fs.EnableTagOverride, Weights: state.Weights{Passing: 1, Warning: 1}}
		if fs.Weights != nil {
			svc.Weights = *fs.Weights
		}
		var defs []health.Definition
		if fs.Check != nil {
			defs = append(defs, *fs.Check)
		}
		defs = append(defs, fs.Checks...)
		if err := a.RegisterService(svc, defs, true); err != nil {
			return fmt.Errorf("config dir: service %s: %w", fs.Name, err)
		}
		id := svc.ID
		if id == "" {
			id = svc.Service
		}
		next.services = append(next.services, id)
	}
	for _, c := range checks {
		if err := a.RegisterCheck(c); err != nil {
			return fmt.Errorf("config dir: check %s: %w", c.Name, err)
		}
		next.checks = append(next.checks, c.CheckID())
	}
	for _, id := range a.loaded.services {
		if !contains(next.services, id) {
			a.DeregisterService(id)
		}
	}
	for _, id := range a.loaded.checks {
		if !contains(next.checks, id) {
			a.DeregisterCheck(id)
		}
	}
	a.loaded = next
	a.logger.Info("configuration loaded", "dir", a.cfg.ConfigDir, "services", len(next.services), "checks", len(next.checks))
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
