package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServicesRegisterAndCatalogCommands(t *testing.T) {
	kvClearEnv(t)
	addr := startKVAgent(t)
	file := filepath.Join(t.TempDir(), "web.json")
	os.WriteFile(file, []byte(`{"Services":[
		{"ID":"web-1","Name":"web","Port":8080,"Tags":["v1"],"Check":{"TTL":"1m","Status":"passing"}},
		{"ID":"web-2","Name":"web","Port":8081,"Tags":["v2"]}]}`), 0o600)
	out := mustCLI(t, "", "services", "register", "-http-addr", addr, file)
	if !strings.Contains(out, "Registered service: web-1") || !strings.Contains(out, "Registered service: web-2") {
		t.Fatalf("register output %q", out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out = mustCLI(t, "", "catalog", "service", "-http-addr", addr, "web")
		if strings.Count(out, "\n") == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "web-1") || !strings.Contains(out, "8081") || !strings.Contains(out, "passing") {
		t.Fatalf("catalog service output %q", out)
	}
	if out := mustCLI(t, "", "catalog", "services", "-tags", "-http-addr", addr); !strings.Contains(out, "web") || !strings.Contains(out, "v1") {
		t.Fatalf("catalog services output %q", out)
	}
	if out := mustCLI(t, "", "catalog", "nodes", "-http-addr", addr); !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("catalog nodes output %q", out)
	}
	mustCLI(t, "", "services", "deregister", "-http-addr", addr, "web-2")
	if r := runCLI(t, "", "services", "deregister", "-http-addr", addr, "web-2"); r.code != 1 {
		t.Fatalf("deregistering twice: exit %d", r.code)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"Port": 80}`), 0o600)
	if r := runCLI(t, "", "services", "register", "-http-addr", addr, bad); r.code != 2 || !strings.Contains(r.stderr, "Name") {
		t.Fatalf("a definition without a name: exit %d %q", r.code, r.stderr)
	}
	if r := runCLI(t, "", "catalog", "service", "-http-addr", addr); r.code != 2 {
		t.Fatalf("catalog service without a name: exit %d", r.code)
	}
}
