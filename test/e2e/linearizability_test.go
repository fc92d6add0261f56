package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/consul/api"
)

// TestLinearizability runs clients doing put / consistent get / CAS on a few keys at a
// time through every agent of 3 servers + 1 client agent while faults hit the leader,
// then checks the history with porcupine (RELIABILITY.md tests 1–4, over real processes).
//
// In CI it kills and restarts the leader for 30 s, with 2 s of undisturbed load after
// each restart. With WOLKE_LONG=1 (make chaos) it runs WOLKE_LONG_DURATION (default 10m)
// of faults in turn: SIGKILL the leader, SIGSTOP the leader for 3 s, SIGKILL a
// follower, SIGKILL two servers.
//
// History shape, for a fast check ("Using porcupine well"): 16 clients, 4 per key; every
// written value is unique; a client whose write got no answer (indeterminate: it may or
// may not have happened) moves its group to a fresh key, so a key has at most 4 such
// writes; a read that failed is dropped, as is a request refused at connect.
func TestLinearizability(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	long := os.Getenv("WOLKE_LONG") != ""
	duration, checkTimeout := 30*time.Second, time.Minute
	if long {
		duration, checkTimeout = 10*time.Minute, 10*time.Minute
		if d := os.Getenv("WOLKE_LONG_DURATION"); d != "" {
			var err error
			if duration, err = time.ParseDuration(d); err != nil {
				t.Fatalf("WOLKE_LONG_DURATION=%q: %v", d, err)
			}
		}
	}

	c := startCluster(t, clusterOpts{clients: 1})
	terms := c.monitorTerms()
	w := startLinWorkload(c, seed, 16, 4)
	w.waitOK(300, 20*time.Second) // vacuity: a working baseline before any fault
	baseline := w.rate(steady)

	type fault struct {
		name string
		run  func() // inject, wait until the cluster works around it, heal
	}
	var elections []time.Duration
	var resumes []time.Duration
	killLeader := fault{"kill leader", func() {
		old := c.waitLeader(15*time.Second, nil)
		at := time.Now()
		old.kill()
		c.waitLeader(15*time.Second, func(n *node) bool { return n != old })
		elections = append(elections, time.Since(at))
		w.waitOK(100, 20*time.Second)
		resumes = append(resumes, w.firstOKAfter(at).Sub(at))
		c.restart(old)
	}}
	faults := []fault{killLeader}
	if long {
		faults = append(faults,
			fault{"pause leader 3s", func() {
				old := c.waitLeader(15*time.Second, nil)
				at := time.Now()
				old.pause()
				c.waitLeader(15*time.Second, func(n *node) bool { return n != old })
				elections = append(elections, time.Since(at))
				w.waitOK(100, 20*time.Second)
				for time.Since(at) < 3*time.Second {
					time.Sleep(20 * time.Millisecond)
				}
				old.resume()
			}},
			fault{"kill follower", func() {
				leader := c.waitLeader(15*time.Second, nil)
				var f []*node
				for _, n := range c.servers {
					if n != leader {
						f = append(f, n)
					}
				}
				v := f[rng.IntN(len(f))]
				v.kill()
				w.waitOK(300, 20*time.Second)
				c.restart(v)
			}},
			fault{"kill two servers", func() {
				a := c.servers[rng.IntN(3)]
				b := a
				for b == a {
					b = c.servers[rng.IntN(3)]
				}
				a.kill()
				b.kill()
				time.Sleep(2 * time.Second) // no quorum: nothing to poll for but the clock
				c.restart(a)
				c.restart(b)
			}})
	}
	start := time.Now()
	injected := 0
	minRate := baseline
	for i := 0; time.Since(start) < duration; i++ {
		f := faults[i%len(faults)]
		f.run()
		injected++
		c.waitCaughtUp(30 * time.Second)
		r := w.rate(steady)
		minRate = min(minRate, r)
		t.Logf("fault %d (%s) healed at %v: %d ok operations so far, %.0f/s after healing", injected, f.name, time.Since(start).Round(time.Second), w.ok.Load(), r)
	}
	w.stop()
	w.finalReads()
	order := terms.check(t)

	ops, st := w.history()
	t.Logf("history: %d operations (%s) on %d keys, at most %d indeterminate writes on one key; %d faults; elections after leader faults %v; first ok operation called after a leader kill answered after %v; ok operations %.0f/s before the faults, at least %.0f/s after healing; leaders by term %v",
		len(ops), st, st.keys, st.maxUnknownPerKey, injected, roundAll(elections), roundAll(resumes), baseline, minRate, order)
	if injected == 0 || distinctLeaders(order) < 2 || len(elections) == 0 {
		t.Fatalf("vacuous: %d faults injected, leaders by term %v", injected, order)
	}
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, checkTimeout)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	if res != porcupine.Ok {
		path := filepath.Join(c.dir, "history.html")
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("visualize: %v", err)
		}
		t.Fatalf("history is %s (Unknown = the checker timed out after %v: unverifiable); visualization at %s", res, checkTimeout, path)
	}
}

// steady is how long the workload runs undisturbed before the first fault and after
// each heal.
const steady = 2 * time.Second

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// linWorkload records a porcupine history of KV operations from concurrent clients.
type linWorkload struct {
	c      *cluster
	seed   uint64
	start  time.Time
	stopCh chan struct{}
	wg     sync.WaitGroup
	ok     atomic.Int64 // operations with a definite answer
	ids    atomic.Int64 // porcupine client ids: a client gets a new one after a timeout
	groups []*keyGroup

	mu      sync.Mutex
	ops     []porcupine.Operation
	okOps   [][2]time.Time // call and return of each operation with a definite answer
	dropped map[kvOp]int
	keysUse map[string]bool
}

// keyGroup is the key a group of clients shares; a client that got no answer to a write
// moves the group on to a fresh key.
type keyGroup struct {
	mu   sync.Mutex
	id   int
	gen  int
	name string
}

func (g *keyGroup) current() (string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.name, g.gen
}

func (g *keyGroup) rotate(gen int, prefix string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gen == gen {
		g.gen++
		g.name = fmt.Sprintf("%s/g%d/%d", prefix, g.id, g.gen)
	}
}

func startLinWorkload(c *cluster, seed uint64, clients, perKey int) *linWorkload {
	w := &linWorkload{c: c, seed: seed, start: time.Now(), stopCh: make(chan struct{}),
		dropped: map[kvOp]int{}, keysUse: map[string]bool{}}
	prefix := fmt.Sprintf("lin%d", seed%100000)
	for i := 0; i < (clients+perKey-1)/perKey; i++ {
		w.groups = append(w.groups, &keyGroup{id: i, name: fmt.Sprintf("%s/g%d/0", prefix, i)})
	}
	for i := 0; i < clients; i++ {
		w.wg.Add(1)
		go w.client(i, w.groups[i%len(w.groups)], prefix)
	}
	c.t.Cleanup(w.stop)
	return w
}

func (w *linWorkload) now() int64 { return int64(time.Since(w.start)) }

func (w *linWorkload) client(i int, g *keyGroup, prefix string) {
	defer w.wg.Done()
	rng := rand.New(rand.NewPCG(w.seed, uint64(100+i)))
	id := int(w.ids.Add(1) - 1)
	type read struct {
		value string
		index uint64
	}
	reads := map[string]read{} // last read per key, for CAS
	for seq := 0; ; seq++ {
		select {
		case <-w.stopCh:
			return
		default:
		}
		up := w.c.up()
		if len(up) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		kv := w.c.api(up[rng.IntN(len(up))]).KV()
		key, gen := g.current()
		in := kvInput{key: key}
		last, haveRead := reads[key]
		switch r := rng.IntN(100); {
		case r < 50 || r >= 80 && !haveRead: // a CAS needs an index from a read
			in.op = opGet
		case r < 80:
			in.op, in.value = opPut, fmt.Sprintf("c%d-%d", i, seq)
		default:
			in.op, in.value, in.expect = opCAS, fmt.Sprintf("c%d-%d", i, seq), last.value
		}
		var out kvOutput
		var err error
		call := w.now()
		switch in.op {
		case opGet:
			var p *api.KVPair
			p, _, err = kv.Get(key, &api.QueryOptions{RequireConsistent: true})
			if err == nil && p != nil {
				out.value = string(p.Value)
				reads[key] = read{out.value, p.ModifyIndex}
			} else if err == nil {
				reads[key] = read{}
			}
		case opPut:
			_, err = kv.Put(&api.KVPair{Key: key, Value: []byte(in.value)}, nil)
		case opCAS:
			out.ok, _, err = kv.CAS(&api.KVPair{Key: key, Value: []byte(in.value), ModifyIndex: last.index}, nil)
			delete(reads, key)
		}
		ret := w.now()
		switch {
		case err == nil:
			w.record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: ret}, true)
		case in.op == opGet || isRefused(err):
			// A failed read tells nothing; a refused connection reached no agent.
			w.mu.Lock()
			w.dropped[in.op]++
			w.mu.Unlock()
		default:
			// No answer: the write may take effect at any time from its call on, or never.
			// Its return is fixed to the end of the history later.
			out.unknown = true
			w.record(porcupine.Operation{ClientId: id, Input: in, Call: call, Output: out, Return: -1}, false)
			id = int(w.ids.Add(1) - 1)
			g.rotate(gen, prefix)
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (w *linWorkload) record(op porcupine.Operation, ok bool) {
	w.mu.Lock()
	w.ops = append(w.ops, op)
	w.keysUse[op.Input.(kvInput).key] = true
	if ok {
		w.okOps = append(w.okOps, [2]time.Time{w.start.Add(time.Duration(op.Call)), w.start.Add(time.Duration(op.Return))})
	}
	w.mu.Unlock()
	if ok {
		w.ok.Add(1)
	}
}

func (w *linWorkload) stop() {
	select {
	case <-w.stopCh:
	default:
		close(w.stopCh)
	}
	w.wg.Wait()
}

// waitOK polls until n more operations than at the call got a definite answer.
func (w *linWorkload) waitOK(n int64, timeout time.Duration) {
	w.c.t.Helper()
	want := w.ok.Load() + n
	deadline := time.Now().Add(timeout)
	for w.ok.Load() < want {
		if time.Now().After(deadline) {
			w.c.t.Fatalf("only %d of %d ok operations after %v: %s", w.ok.Load(), want, timeout, w.c.describe())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rate runs the workload undisturbed for d and returns its ok operations per second.
func (w *linWorkload) rate(d time.Duration) float64 {
	n := w.ok.Load()
	start := time.Now()
	for time.Since(start) < d {
		time.Sleep(20 * time.Millisecond)
	}
	return float64(w.ok.Load()-n) / time.Since(start).Seconds()
}

// firstOKAfter is when the first operation called after t got a definite answer.
func (w *linWorkload) firstOKAfter(t time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, o := range w.okOps {
		if o[0].After(t) && (first.IsZero() || o[1].Before(first)) {
			first = o[1]
		}
	}
	return first
}

// finalReads reads every key once more, after the faults, so that the history ends with
// what the cluster kept.
func (w *linWorkload) finalReads() {
	w.c.t.Helper()
	w.mu.Lock()
	var ks []string
	for k := range w.keysUse {
		ks = append(ks, k)
	}
	w.mu.Unlock()
	sort.Strings(ks)
	id := int(w.ids.Add(1) - 1)
	for _, k := range ks {
		deadline := time.Now().Add(20 * time.Second)
		for {
			n := w.c.up()[0]
			call := w.now()
			p, _, err := w.c.api(n).KV().Get(k, &api.QueryOptions{RequireConsistent: true})
			ret := w.now()
			if err == nil {
				out := kvOutput{}
				if p != nil {
					out.value = string(p.Value)
				}
				w.record(porcupine.Operation{ClientId: id, Input: kvInput{op: opGet, key: k}, Call: call, Output: out, Return: ret}, true)
				break
			}
			if time.Now().After(deadline) {
				w.c.t.Fatalf("final read of %s: %v", k, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

type historyStats struct {
	byOp             map[string]int
	keys             int
	maxUnknownPerKey int
}

func (s historyStats) String() string {
	var parts []string
	for _, k := range []string{"get", "put", "put?", "cas", "cas?", "get dropped", "put dropped", "cas dropped"} {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.byOp[k]))
	}
	return strings.Join(parts, ", ")
}

// history returns the recorded operations with the indeterminate ones' return set past
// the end, and counts.
func (w *linWorkload) history() ([]porcupine.Operation, historyStats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := w.now() + 1
	st := historyStats{byOp: map[string]int{}, keys: len(w.keysUse)}
	unknown := map[string]int{}
	ops := make([]porcupine.Operation, len(w.ops))
	names := map[kvOp]string{opGet: "get", opPut: "put", opCAS: "cas"}
	for i, op := range w.ops {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		name := names[in.op]
		if out.unknown {
			op.Return = end
			name += "?"
			unknown[in.key]++
			st.maxUnknownPerKey = max(st.maxUnknownPerKey, unknown[in.key])
		}
		st.byOp[name]++
		ops[i] = op
	}
	for op, n := range w.dropped {
		st.byOp[names[op]+" dropped"] += n
	}
	return ops, st
}
