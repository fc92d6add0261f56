package chassis

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestLockExclusionAndFencing(t *testing.T) {
	agent := startAgent(t)
	a := startInstance(t, agent, Service{Name: "locker"})
	b := startInstance(t, agent, Service{Name: "locker"})
	ctx := context.Background()

	la, err := a.Lock(ctx, "locks/x", LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pair, _, err := consulClient(t, agent).KV().Get("locks/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Session != la.Session() || pair.Flags != api.LockFlagValue || string(pair.Value) != a.ID() || la.Token() != pair.ModifyIndex {
		t.Fatalf("lock key %+v, token %d", pair, la.Token())
	}

	got := make(chan *Lock, 1)
	go func() {
		lb, err := b.Lock(ctx, "locks/x", LockOptions{})
		if err != nil {
			t.Error(err)
		}
		got <- lb
	}()
	select {
	case <-got:
		t.Fatal("a second holder got the lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	if err := la.Unlock(); err != nil {
		t.Fatal(err)
	}
	if la.Context().Err() == nil {
		t.Fatal("the released lock's context is not done")
	}
	var lb *Lock
	select {
	case lb = <-got:
	case <-time.After(3 * time.Second):
		t.Fatal("the second holder did not get the released lock")
	}
	if lb.Token() <= la.Token() {
		t.Fatalf("fencing token did not grow: %d then %d", la.Token(), lb.Token())
	}
	_ = lb.Unlock()
	_ = lb.Unlock() // twice is fine

	// A waiting Lock gives up with its context.
	lc, err := a.Lock(ctx, "locks/x", LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(wctx, "locks/x", LockOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestLockLostWhenSessionDestroyed(t *testing.T) {
	agent := startAgent(t)
	a := startInstance(t, agent, Service{Name: "loser"})
	l, err := a.Lock(context.Background(), "locks/y", LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if _, err := consulClient(t, agent).Session().Destroy(l.Session(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Context().Done():
		if !errors.Is(context.Cause(l.Context()), ErrLockLost) {
			t.Fatalf("cause %v", context.Cause(l.Context()))
		}
	case <-time.After(3 * time.Second):
		t.Fatal("loss not noticed")
	}
}

// leaderLog records who led with which token and checks that no two lead at once.
type leaderLog struct {
	mu      sync.Mutex
	current atomic.Int32
	terms   []string
	tokens  []uint64
	overlap atomic.Bool
}

func (l *leaderLog) run(id string) func(ctx context.Context) {
	return func(ctx context.Context) {
		if l.current.Add(1) > 1 {
			l.overlap.Store(true)
		}
		l.mu.Lock()
		l.terms = append(l.terms, id)
		l.tokens = append(l.tokens, LeaderToken(ctx))
		l.mu.Unlock()
		<-ctx.Done()
		l.current.Add(-1)
	}
}

func (l *leaderLog) snapshot() ([]string, []uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string{}, l.terms...), append([]uint64{}, l.tokens...)
}

func TestElectFailsOverOnShutdown(t *testing.T) {
	agent := startAgent(t)
	var log leaderLog
	elector := func(ctx context.Context, in *Instance) {
		in.Go(func(ctx context.Context) { _ = in.Elect(ctx, "service/elect/leader", log.run(in.ID())) })
	}
	var insts []*running
	for i := 0; i < 3; i++ {
		insts = append(insts, startInstance(t, agent, Service{Name: "elect",
			Setup: func(ctx context.Context, in *Instance) (http.Handler, error) { elector(ctx, in); return nil, nil }}))
	}
	waitFor(t, 3*time.Second, "a leader", func() bool { terms, _ := log.snapshot(); return len(terms) == 1 })
	for round := 0; round < 2; round++ {
		terms, _ := log.snapshot()
		leader := terms[len(terms)-1]
		for _, r := range insts {
			if r.ID() == leader {
				begin := time.Now()
				r.stop(t)
				waitFor(t, 3*time.Second, "a new leader", func() bool { terms, _ := log.snapshot(); return len(terms) == round+2 })
				t.Logf("failover after a graceful stop: %v", time.Since(begin))
			}
		}
	}
	terms, tokens := log.snapshot()
	if log.overlap.Load() {
		t.Fatal("two leaders at once")
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] || terms[i] == terms[i-1] {
			t.Fatalf("terms %v, tokens %v: tokens must grow and the leader change", terms, tokens)
		}
	}
}

func TestElectLeaderLosesWithItsCheck(t *testing.T) {
	agent := startAgent(t)
	c := consulClient(t, agent)
	var log leaderLog
	lost := make(chan error, 1)
	r := startInstance(t, agent, Service{Name: "bound",
		Setup: func(ctx context.Context, in *Instance) (http.Handler, error) {
			in.Go(func(ctx context.Context) {
				_ = in.ElectWith(ctx, "service/bound/leader", LockOptions{LockDelay: 10 * time.Millisecond}, func(ctx context.Context) {
					log.run(in.ID())(ctx)
					select {
					case lost <- context.Cause(ctx):
					default:
					}
				})
			})
			return nil, nil
		}})
	waitFor(t, 3*time.Second, "leader", func() bool { terms, _ := log.snapshot(); return len(terms) == 1 })
	// The agent drops the instance's check (as it would reap a crashed process): the
	// session bound to it is invalidated and the leader is told at once.
	if err := c.Agent().CheckDeregister("service:" + r.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-lost:
		if !errors.Is(err, ErrLockLost) {
			t.Fatalf("leadership ended with %v, want ErrLockLost", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("leadership not lost with the check")
	}
}
