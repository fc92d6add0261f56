package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	mdns "github.com/miekg/dns"
)

// The measurements of issue 5's benchmarks. They are not timed tests: run them with
// WOLKE_MEASURE=1 go test -run Measure -v ./internal/agent/ and read the logged figures.

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func TestMeasurePropagation(t *testing.T) {
	if os.Getenv("WOLKE_MEASURE") == "" {
		t.Skip("a measurement; set WOLKE_MEASURE=1")
	}
	s1 := startClusterAgent(t, "s1", 3, "")
	s2 := startClusterAgent(t, "s2", 3, s1.SerfAddr())
	s3 := startClusterAgent(t, "s3", 3, s1.SerfAddr())
	c1 := startClusterAgent(t, "c1", 0, s1.SerfAddr())
	c2 := startClusterAgent(t, "c2", 0, s1.SerfAddr())
	waitFor(t, 15*time.Second, "a leader", func() bool { return leaderOf([]*Agent{s1, s2, s3}) != nil })
	reg, look := clientFor(t, c1).Agent(), clientFor(t, c2).Health()
	dnsAddr := c2.dnsServer.Addr()
	var toHTTP, toDNS, checkFail []time.Duration
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("prop-%d", i)
		start := time.Now()
		if err := reg.ServiceRegister(&api.AgentServiceRegistration{Name: name, Port: 80,
			Check: &api.AgentServiceCheck{TTL: "10m", Status: "passing"}}); err != nil {
			t.Fatal(err)
		}
		var httpAt, dnsAt time.Duration
		for httpAt == 0 || dnsAt == 0 {
			if httpAt == 0 {
				if e, _, err := look.Service(name, "", true, nil); err == nil && len(e) == 1 {
					httpAt = time.Since(start)
				}
			}
			if dnsAt == 0 {
				m := new(mdns.Msg)
				m.SetQuestion(name+".service.wolke.", mdns.TypeA)
				if r, _, err := (&mdns.Client{Timeout: time.Second}).Exchange(m, dnsAddr); err == nil && len(r.Answer) == 1 {
					dnsAt = time.Since(start)
				}
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("trial %d: not visible after 10 s", i)
			}
		}
		toHTTP, toDNS = append(toHTTP, httpAt), append(toDNS, dnsAt)
		start = time.Now()
		if err := reg.FailTTL("service:"+name, "down"); err != nil {
			t.Fatal(err)
		}
		for {
			if e, _, err := look.Service(name, "", true, nil); err == nil && len(e) == 0 {
				checkFail = append(checkFail, time.Since(start))
				break
			}
		}
	}
	t.Logf("registration on c1 -> health/service?passing on c2: p50 %v p99 %v", pct(toHTTP, .5), pct(toHTTP, .99))
	t.Logf("registration on c1 -> DNS on c2: p50 %v p99 %v", pct(toDNS, .5), pct(toDNS, .99))
	t.Logf("check critical on c1 -> gone from ?passing on c2: p50 %v p99 %v", pct(checkFail, .5), pct(checkFail, .99))
}

func TestMeasureHealthServiceAtScale(t *testing.T) {
	if os.Getenv("WOLKE_MEASURE") == "" {
		t.Skip("a measurement; set WOLKE_MEASURE=1")
	}
	a := startDev(t)
	c := clientFor(t, a)
	// 10,000 instances over 500 nodes: 499 services of 20 instances and one more of 20.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for n := 0; n < 500; n++ {
		for k := 0; k < 20; k++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(n, k int) {
				defer wg.Done()
				defer func() { <-sem }()
				reg := &api.CatalogRegistration{Node: fmt.Sprintf("node-%d", n), Address: fmt.Sprintf("10.%d.%d.1", n/250, n%250),
					Service: &api.AgentService{ID: fmt.Sprintf("svc-%d-%d", (n+k*25)%500, n), Service: fmt.Sprintf("svc-%d", (n+k*25)%500), Port: 8000 + k},
					Checks:  api.HealthChecks{{CheckID: fmt.Sprintf("c-%d-%d", n, k), Name: "up", Status: "passing", ServiceID: fmt.Sprintf("svc-%d-%d", (n+k*25)%500, n)}}}
				if _, err := c.Catalog().Register(reg, nil); err != nil {
					t.Error(err)
				}
			}(n, k)
		}
	}
	wg.Wait()
	e, _, err := c.Health().Service("svc-7", "", true, nil)
	if err != nil || len(e) != 20 {
		t.Fatalf("svc-7: %d instances, %v", len(e), err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	hc := &http.Client{Transport: tr}
	url := "http://" + a.HTTPAddr() + "/v1/health/service/svc-7?passing"
	var mu sync.Mutex
	var lat []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for ctx.Err() == nil {
				start := time.Now()
				resp, err := hc.Get(url)
				if err != nil {
					continue
				}
				buf := make([]byte, 32<<10)
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("health/service of a 20-instance service, 10,000 instances on 500 nodes, 64 clients: %d requests in 5 s (%.0f/s), p50 %v p99 %v",
		len(lat), float64(len(lat))/5, pct(lat, .5), pct(lat, .99))
}
