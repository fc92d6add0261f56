package confsync

import (
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/wolke-platform/wolke/internal/agent/agenttest"
)

// startAgent starts an in-memory dev agent on free ports, stops it with the test and
// returns a client for it once it accepts writes.
func startAgent(t testing.TB) *api.Client {
	t.Helper()
	a := agenttest.StartDev(t)
	// Watches hold several connections; a request cancelled while its connection was
	// being dialled leaves an unused connection in the pool, which the agent's drain
	// would wait 5 s for: close idle connections before the agent stops (cleanups run
	// last-registered first).
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := api.NewClient(&api.Config{Address: a.HTTPAddr(), Scheme: "http", HttpClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls cond every few milliseconds until it holds, failing the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func put(t testing.TB, c *api.Client, key, value string) {
	t.Helper()
	if _, err := c.KV().Put(&api.KVPair{Key: key, Value: []byte(value)}, nil); err != nil {
		t.Fatal(err)
	}
}
