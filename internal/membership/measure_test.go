package membership

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// TestMeasureFailureDetection measures, with memberlist.DefaultLANConfig timing, how
// long the other members of a 5-node pool take to mark a crashed member failed. It is a
// measurement, not a check: it runs only with WOLKE_MEASURE=1 and logs its figures.
//
//	WOLKE_MEASURE=1 go test -run TestMeasureFailureDetection -v ./internal/membership/
func TestMeasureFailureDetection(t *testing.T) {
	if os.Getenv("WOLKE_MEASURE") == "" {
		t.Skip("set WOLKE_MEASURE=1 to measure failure detection with LAN timing (about a minute)")
	}
	const nodes, trials = 5, 5
	var firsts, lasts []time.Duration
	for trial := range trials {
		logger, _ := testLogs(t)
		var pools []*Pool
		for i := range nodes {
			cfg := testConfig(fmt.Sprintf("t%d-n%d", trial, i), logger)
			cfg.Memberlist = nil // DefaultLANConfig
			pools = append(pools, startPool(t, cfg))
		}
		for _, p := range pools[1:] {
			if _, err := p.Join(context.Background(), []string{gossipAddr(pools[0])}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 30*time.Second, allAlive(nodes, pools...))
		time.Sleep(2 * time.Second) // let probing reach a steady state before the crash

		victim := pools[trial%nodes]
		others := slices.DeleteFunc(slices.Clone(pools), func(p *Pool) bool { return p == victim })
		name := victim.cfg.NodeName
		start := time.Now()
		_ = victim.Shutdown()
		seen := map[*Pool]time.Duration{}
		for len(seen) < len(others) {
			if time.Since(start) > 2*time.Minute {
				t.Fatalf("trial %d: not detected after 2m", trial)
			}
			for _, p := range others {
				if _, ok := seen[p]; !ok {
					if _, st := memberStatus(p, name); st == StatusFailed {
						seen[p] = time.Since(start)
					}
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		var ds []time.Duration
		for _, d := range seen {
			ds = append(ds, d)
		}
		slices.Sort(ds)
		firsts = append(firsts, ds[0])
		lasts = append(lasts, ds[len(ds)-1])
		t.Logf("trial %d: crash of %s seen failed after %v", trial, name, ds)
		for _, p := range pools {
			_ = p.Shutdown()
		}
	}
	slices.Sort(firsts)
	slices.Sort(lasts)
	t.Logf("first member to mark it failed: median %v (all: %v)", firsts[trials/2], firsts)
	t.Logf("last member to mark it failed:  median %v (all: %v)", lasts[trials/2], lasts)
}
