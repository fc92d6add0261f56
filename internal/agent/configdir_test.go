package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestConfigDirLoadAndReload(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("web.json", `{"service": {"name": "web", "port": 8080, "check": {"ttl": "30s", "status": "passing"}}}`)
	write("disk.json", `{"checks": [{"id": "disk", "name": "disk", "ttl": "1m", "status": "passing"}]}`)
	a := startDev(t, func(c *Config) { c.ConfigDir = dir })
	c := clientFor(t, a)
	svcs, _ := c.Agent().Services()
	checks, _ := c.Agent().Checks()
	if svcs["web"] == nil || svcs["web"].Port != 8080 || checks["service:web"] == nil || checks["disk"] == nil {
		t.Fatalf("loaded: services %v checks %v", svcs, checks)
	}
	waitFor(t, 5*time.Second, "web passing in the catalog", func() bool {
		e, _, _ := c.Health().Service("web", "", true, nil)
		return len(e) == 1
	})
	// A broken file: reload fails with the file named, and nothing changes.
	write("broken.json", `{"service": {"port": 1}}`)
	if err := c.Agent().Reload(); err == nil {
		t.Fatal("reload of a broken config dir succeeded")
	}
	if svcs, _ := c.Agent().Services(); svcs["web"] == nil {
		t.Fatal("a failed reload removed a service")
	}
	// Fix it, change web, drop disk: the reload applies exactly that.
	os.Remove(filepath.Join(dir, "broken.json"))
	os.Remove(filepath.Join(dir, "disk.json"))
	write("web.json", `{"service": {"name": "web", "port": 9090}}`)
	if err := c.Agent().Reload(); err != nil {
		t.Fatal(err)
	}
	svcs, _ = c.Agent().Services()
	checks, _ = c.Agent().Checks()
	if svcs["web"] == nil || svcs["web"].Port != 9090 || checks["disk"] != nil || checks["service:web"] != nil {
		t.Fatalf("after reload: services %v checks %v", svcs, checks)
	}
}
