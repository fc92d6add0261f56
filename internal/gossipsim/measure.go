package gossipsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// MaxMeasureNodes bounds a measurement pool: each node holds two sockets and about ten
// goroutines, and beyond a few hundred on a small machine the CPU, not gossip, sets the
// pace.
const MaxMeasureNodes = 1000

// MeasureConfig says how to measure; the pool is described by [Params].
type MeasureConfig struct {
	// Trials is the number of broadcasts timed; percentiles are taken over them.
	// Default 5.
	Trials int
	// Seed picks each trial's sender and failed nodes.
	Seed uint64
	// Logger receives progress and memberlist's own log at debug level. Default: none.
	Logger *slog.Logger
	// SetupTimeout bounds starting the pool until every node sees every other alive.
	// Default 30s plus 200ms per node.
	SetupTimeout time.Duration
	// TrialTimeout bounds one trial, including the pool's recovery from simulated
	// crashes. Default 60s.
	TrialTimeout time.Duration
}

// Measure starts a pool of p.Nodes real memberlist instances on 127.0.0.1, times
// cfg.Trials broadcasts at p.Loss and p.Failed, and shuts the pool down.
func Measure(ctx context.Context, p Params, cfg MeasureConfig) (Result, error) {
	pool, err := StartPool(ctx, p, cfg)
	if err != nil {
		return Result{}, err
	}
	defer pool.Shutdown()
	return pool.Measure(ctx, p.Loss, p.Failed, cfg)
}

// Pool is a set of real memberlist instances in this process, on loopback with
// OS-assigned ports, behind a transport that can lose packets and silence nodes. Its
// methods are not safe for concurrent use.
type Pool struct {
	p      Params
	logger *slog.Logger
	net    *lossyNet
	nodes  []*poolNode
	cur    atomic.Pointer[trial] // the broadcast being timed; nil between trials
	nextID uint64
	rng    *rand.Rand

	setup      time.Duration
	memory     uint64
	goroutines int
}

// poolNode is one member and its broadcast delegate: it passes the timed message on
// through a TransmitLimitedQueue, as Serf does for user events, so the message gets
// exactly the retransmit limit memberlist gives its own broadcasts.
type poolNode struct {
	idx   int
	pool  *Pool
	ml    atomic.Pointer[memberlist.Memberlist]
	tr    *lossyTransport
	queue *memberlist.TransmitLimitedQueue
}

var _ memberlist.Delegate = (*poolNode)(nil)

// trial records when each node first received one broadcast.
type trial struct {
	id       uint64
	start    time.Time
	recv     []atomic.Int64 // ns after start; -1 before receipt
	received atomic.Int64
}

// msgMagic marks the timed message; a trial ID follows it.
const msgMagic = "wolkegossipsim"

func encodeMsg(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(msgMagic), id)
}

func decodeMsg(b []byte) (uint64, bool) {
	if len(b) != len(msgMagic)+8 || string(b[:len(msgMagic)]) != msgMagic {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[len(msgMagic):]), true
}

type broadcast []byte

var _ memberlist.UniqueBroadcast = broadcast(nil)

func (b broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b broadcast) Message() []byte                       { return b }
func (b broadcast) Finished()                             {}
func (b broadcast) UniqueBroadcast()                      {}

func (n *poolNode) NodeMeta(int) []byte           { return nil }
func (n *poolNode) LocalState(bool) []byte        { return nil }
func (n *poolNode) MergeRemoteState([]byte, bool) {}
func (n *poolNode) GetBroadcasts(overhead, limit int) [][]byte {
	return n.queue.GetBroadcasts(overhead, limit)
}
func (n *poolNode) numMembers() int               { return n.ml.Load().NumMembers() }
func (n *poolNode) members() []*memberlist.Node   { return n.ml.Load().Members() }
func (n *poolNode) queued() int                   { return n.queue.NumQueued() }
func (n *poolNode) String() string                { return "node-" + strconv.Itoa(n.idx) }
func (n *poolNode) shutdown() error               { return n.ml.Load().Shutdown() }
func (n *poolNode) join(addr string) (int, error) { return n.ml.Load().Join([]string{addr}) }
func (n *poolNode) address() string               { return n.tr.addr }

// NotifyMsg times the first receipt of the current trial's message and passes it on.
func (n *poolNode) NotifyMsg(b []byte) {
	id, ok := decodeMsg(b)
	if !ok {
		return
	}
	tr := n.pool.cur.Load()
	if tr == nil || tr.id != id {
		return // a late copy from an earlier trial
	}
	if tr.recv[n.idx].CompareAndSwap(-1, int64(time.Since(tr.start))) {
		tr.received.Add(1)
		n.queue.QueueBroadcast(broadcast(slices.Clone(b)))
	}
}

// StartPool starts p.Nodes memberlist instances with the gossip settings of p (the rest
// of memberlist's LAN defaults unchanged) and returns once every node sees every other
// alive. Nodes start at random moments within one gossip interval, because memberlist
// times its gossip from when a node starts and a real pool's agents are not aligned.
func StartPool(ctx context.Context, p Params, cfg MeasureConfig) (*Pool, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.Nodes < 2 || p.Nodes > MaxMeasureNodes {
		return nil, &ParamError{"nodes", p.Nodes, fmt.Sprintf("a measurement needs between 2 and %d nodes", MaxMeasureNodes)}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.SetupTimeout
	if timeout <= 0 {
		timeout = 30*time.Second + time.Duration(p.Nodes)*200*time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	memBefore, gBefore := heapAndStacks()
	start := time.Now()
	pool := &Pool{p: p, logger: logger, net: newLossyNet(), rng: rand.New(rand.NewPCG(cfg.Seed, 0))}
	pool.nodes = make([]*poolNode, p.Nodes)
	mlLog := log.New(io.Discard, "", 0)
	if logger.Enabled(ctx, slog.LevelDebug) {
		mlLog = slog.NewLogLogger(logger.With("component", "memberlist").Handler(), slog.LevelDebug)
	}

	ok := false
	defer func() {
		if !ok {
			pool.Shutdown()
		}
	}()
	if err := pool.startNode(0, mlLog); err != nil {
		return nil, err
	}
	for up := 1; up < p.Nodes; {
		batch := min(joinBatch, p.Nodes-up)
		if err := pool.startBatch(ctx, up, batch, mlLog); err != nil {
			return nil, err
		}
		up += batch
		if err := pool.awaitHealthy(ctx, up); err != nil {
			return nil, fmt.Errorf("gossipsim: pool of %d nodes did not converge in %v (too many for this machine?): %w",
				up, timeout, err)
		}
		if err := pool.awaitQuiet(ctx, up); err != nil {
			return nil, fmt.Errorf("gossipsim: pool of %d nodes did not settle in %v (too many for this machine?): %w",
				up, timeout, err)
		}
		logger.Debug("gossip pool growing", "nodes", up, "elapsed", time.Since(start))
	}
	pool.setup = time.Since(start)
	memAfter, gAfter := heapAndStacks()
	if memAfter > memBefore {
		pool.memory = memAfter - memBefore
	}
	pool.goroutines = gAfter - gBefore
	logger.Info("gossip pool ready", "nodes", p.Nodes, "setup", pool.setup,
		"memory_bytes", pool.memory, "goroutines", pool.goroutines)
	ok = true
	return pool, nil
}

// joinBatch is how many nodes join at once. Every node that learns of another
// broadcasts it, so forming a pool costs n²·RetransmitLimit messages; joined all at once,
// a few hundred nodes overload two cores, probes time out, and suspicion gossip feeds on
// itself. In batches that settle in between, the same work never piles up.
const joinBatch = 50

// startBatch starts nodes [first, first+count) at random moments within one gossip
// interval, each joining a random node of the settled pool [0, first).
func (pool *Pool) startBatch(ctx context.Context, first, count int, mlLog *log.Logger) error {
	errs := make([]error, count)
	var wg sync.WaitGroup
	for k := range count {
		i := first + k
		delay := time.Duration(pool.rng.Int64N(int64(pool.p.Interval)))
		seed := pool.nodes[pool.rng.IntN(first)].address()
		wg.Go(func() {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-ctx.Done():
				errs[k] = ctx.Err()
				return
			case <-t.C:
			}
			if errs[k] = pool.startNode(i, mlLog); errs[k] != nil {
				return
			}
			if _, err := pool.nodes[i].join(seed); err != nil {
				errs[k] = fmt.Errorf("gossipsim: node %d joining: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startNode binds a transport to 127.0.0.1 on an OS-assigned port and creates the
// memberlist. The UDP port must equal the TCP port the kernel picked, which another
// socket may hold, so binding is retried as memberlist itself does.
func (pool *Pool) startNode(i int, mlLog *log.Logger) error {
	var nt *memberlist.NetTransport
	var err error
	for range 10 {
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{"127.0.0.1"},
			BindPort:  0,
			Logger:    mlLog,
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("gossipsim: node %d: binding 127.0.0.1: %w", i, err)
	}
	port := nt.GetAutoBindPort()
	tr := &lossyTransport{NetTransport: nt, net: pool.net, addr: "127.0.0.1:" + strconv.Itoa(port)}
	n := &poolNode{idx: i, pool: pool, tr: tr}
	n.queue = &memberlist.TransmitLimitedQueue{NumNodes: n.numMembers, RetransmitMult: pool.p.RetransmitMult}
	pool.net.add(tr)

	c := memberlist.DefaultLANConfig()
	c.Name = n.String()
	c.BindAddr = "127.0.0.1"
	c.BindPort = port
	c.AdvertiseAddr = "127.0.0.1"
	c.AdvertisePort = port
	c.Transport = tr
	c.Delegate = n
	c.Logger = mlLog
	c.GossipInterval = pool.p.Interval
	c.GossipNodes = pool.p.Fanout
	c.RetransmitMult = pool.p.RetransmitMult
	c.UDPBufferSize = pool.p.PacketBytes
	// The queue is empty until a trial starts, so memberlist cannot ask it for
	// NumNodes before ml is set.
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = nt.Shutdown()
		return fmt.Errorf("gossipsim: node %d: %w", i, err)
	}
	n.ml.Store(ml)
	pool.nodes[i] = n
	return nil
}

// awaitHealthy waits until the first count nodes see each other alive. A node that
// lags behind joins one that sees everyone: a push/pull brings it the whole membership
// at once, instead of waiting for the 30 s push/pull timer to repair an alive message
// that ran out of retransmits before reaching it. Each push/pull makes the joiner
// broadcast what it learnt, so a node re-joins at most once per rejoinEvery.
func (pool *Pool) awaitHealthy(ctx context.Context, count int) error {
	const (
		rejoinEvery       = 2 * time.Second
		maxRejoinsPerTick = 10
	)
	lastJoin := make(map[*poolNode]time.Time)
	start := time.Now()
	tick := time.NewTicker(pool.p.Interval / 2)
	defer tick.Stop()
	for {
		var full *poolNode
		var lagging []*poolNode
		for _, n := range pool.nodes[:count] {
			if pool.allAlive(n, count) {
				full = n
			} else {
				lagging = append(lagging, n)
			}
		}
		if len(lagging) == 0 {
			return nil
		}
		if full != nil && time.Since(start) > rejoinEvery {
			// A push/pull can take up to memberlist's TCPTimeout on an overloaded
			// machine, so a few per tick keep the deadline in reach.
			joins := 0
			for _, n := range lagging {
				if ctx.Err() != nil || joins == maxRejoinsPerTick {
					break
				}
				if time.Since(lastJoin[n]) < rejoinEvery {
					continue
				}
				joins++
				lastJoin[n] = time.Now()
				if _, err := n.join(full.address()); err != nil {
					pool.logger.Debug("re-join failed", "node", n, "err", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d nodes still missing peers: %w", len(lagging), ctx.Err())
		case <-tick.C:
		}
	}
}

// awaitQuiet waits until memberlist has gossiped away its own broadcasts. A pool that
// just formed has n² alive messages to spread, and memberlist fills each gossip packet
// with its own messages before a delegate's, so a user broadcast would wait behind them.
// A quiet pool only probes: a ping and an ack per node per probe interval, each counted
// by the sender and the receiver; full-rate gossip adds 2·fanout/interval.
func (pool *Pool) awaitQuiet(ctx context.Context, count int) error {
	probe := memberlist.DefaultLANConfig().ProbeInterval
	quiet := 4/probe.Seconds() + 0.25*2*float64(pool.p.Fanout)/pool.p.Interval.Seconds()
	tick := time.NewTicker(probe)
	defer tick.Stop()
	_, prev := pool.traffic()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("gossip still busy: %w", ctx.Err())
		case <-tick.C:
		}
		_, now := pool.traffic()
		rate := float64(now-prev) / float64(count) / time.Since(last).Seconds()
		if rate < quiet {
			return nil
		}
		pool.logger.Debug("waiting for membership gossip to settle", "packets_per_node_per_second", rate)
		prev, last = now, time.Now()
	}
}

// allAlive reports whether n sees exactly count members, all alive.
func (pool *Pool) allAlive(n *poolNode, count int) bool {
	ms := n.members()
	if len(ms) != count {
		return false
	}
	for _, m := range ms {
		if m.State != memberlist.StateAlive {
			return false
		}
	}
	return true
}

// Shutdown stops every node; it does not announce a leave, as nobody is left to care.
// Nodes stop all at once: one by one, the survivors of a large pool would spend the
// time probing and suspecting the dead.
func (pool *Pool) Shutdown() error {
	errs := make([]error, len(pool.nodes))
	var wg sync.WaitGroup
	for i, n := range pool.nodes {
		if n != nil && n.ml.Load() != nil {
			wg.Go(func() { errs[i] = n.shutdown() })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Measure times trials broadcasts from a random live node at the given loss, with a
// random share failed of the other nodes silenced for the duration of each trial (as
// if crashed just before it, so not yet detected).
func (pool *Pool) Measure(ctx context.Context, loss, failed float64, cfg MeasureConfig) (Result, error) {
	p := pool.p
	p.Loss, p.Failed = loss, failed
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	trials := cfg.Trials
	if trials == 0 {
		trials = 5
	}
	if trials < 0 {
		return Result{}, &ParamError{"trials", trials, "must be at least 1"}
	}
	trialTimeout := cfg.TrialTimeout
	if trialTimeout <= 0 {
		trialTimeout = time.Minute
	}
	start := time.Now()
	pool.net.setLoss(loss)
	defer pool.net.setLoss(0)

	r := Result{Method: MethodMeasurement, Params: p, Live: p.live(),
		Setup: pool.setup, MemoryBytes: pool.memory, Goroutines: pool.goroutines}
	bw := binWidth(p.Interval)
	var hist []int64
	outcomes := make([]runOutcome, 0, trials)
	for i := range trials {
		tctx, cancel := context.WithTimeout(ctx, trialTimeout)
		o, recv, err := pool.trial(tctx, p)
		cancel()
		if err != nil {
			return Result{}, fmt.Errorf("gossipsim: trial %d: %w", i+1, err)
		}
		for _, d := range recv {
			b := int(d / bw)
			if b >= len(hist) {
				hist = append(hist, make([]int64, b+1-len(hist))...)
			}
			hist[b]++
		}
		outcomes = append(outcomes, o)
		pool.logger.Info("gossip trial", "trial", i+1, "loss", loss, "failed", failed,
			"all", o.levels[len(o.levels)-1], "complete", o.complete)
	}
	r.aggregate(outcomes, hist, bw)
	r.Elapsed = time.Since(start)
	return r, nil
}

// trial times one broadcast. It ends when every holder has spent its transmit budget,
// so that no copy of this message competes with the next trial's, and then restores
// silenced nodes and waits for the pool to see them alive again.
func (pool *Pool) trial(ctx context.Context, p Params) (runOutcome, []time.Duration, error) {
	n := len(pool.nodes)
	perm := pool.rng.Perm(n)
	silenced := perm[:p.failedCount()]
	origin := pool.nodes[perm[len(silenced)]]
	for _, i := range silenced {
		pool.nodes[i].tr.silenced.Store(true)
	}

	pool.nextID++
	tr := &trial{id: pool.nextID, recv: make([]atomic.Int64, n)}
	for i := range tr.recv {
		tr.recv[i].Store(-1)
	}
	bytesBefore, pktsBefore := pool.traffic()
	tr.start = time.Now()
	tr.recv[origin.idx].Store(0)
	tr.received.Store(1)
	pool.cur.Store(tr)
	origin.queue.QueueBroadcast(broadcast(encodeMsg(tr.id)))

	live := int64(p.live())
	window, bytes, pkts, err := pool.awaitTrialEnd(ctx, tr, live)
	pool.cur.Store(nil)
	for _, i := range silenced {
		pool.nodes[i].tr.silenced.Store(false)
	}
	if err != nil {
		return runOutcome{}, nil, err
	}
	if len(silenced) > 0 {
		// Peers may have suspected the silenced nodes; their refutations must land
		// before the next trial, or it would run on a smaller pool.
		if err := pool.awaitHealthy(ctx, n); err != nil {
			return runOutcome{}, nil, fmt.Errorf("pool did not recover from silenced nodes: %w", err)
		}
		if err := pool.awaitQuiet(ctx, n); err != nil {
			return runOutcome{}, nil, fmt.Errorf("pool did not settle after silenced nodes: %w", err)
		}
	}

	var times []time.Duration
	for i := range tr.recv {
		if d := tr.recv[i].Load(); d >= 0 {
			times = append(times, time.Duration(d))
		}
	}
	slices.Sort(times)
	o := runOutcome{levels: make([]time.Duration, len(Shares())), complete: int64(len(times)) == live}
	for l, s := range Shares() {
		o.levels[l] = Never
		if k := threshold(s, int(live)); k <= len(times) {
			o.levels[l] = times[k-1]
		}
	}
	perNode := float64(live) * window.Seconds()
	o.bandwidth = float64(bytes-bytesBefore) / perNode
	o.packets = float64(pkts-pktsBefore) / perNode
	return o, times, nil
}

// traffic sums every node's counters: bytes sent plus received, and packets.
// awaitTrialEnd waits until no node has the trial's message queued any more, and
// returns how long it took until all live nodes had it (or until the end, if some never
// did) and the traffic counters at that moment.
func (pool *Pool) awaitTrialEnd(ctx context.Context, tr *trial, live int64) (window time.Duration, bytes, pkts uint64, err error) {
	poll := time.NewTicker(max(pool.p.Interval/40, time.Millisecond))
	defer poll.Stop()
	var drainedAt time.Time
	defer func() {
		if window == 0 {
			window = time.Since(tr.start)
			bytes, pkts = pool.traffic()
		}
	}()
	for {
		got := tr.received.Load()
		if window == 0 && got == live {
			window = time.Since(tr.start)
			bytes, pkts = pool.traffic()
		}
		switch {
		case pool.queuedTotal() > 0:
			drainedAt = time.Time{}
		case got == live:
			return window, bytes, pkts, nil
		case drainedAt.IsZero():
			drainedAt = time.Now()
		case time.Since(drainedAt) > pool.p.Interval/4:
			// Copies already on the wire arrive within microseconds on loopback; a
			// quarter interval is ample for the receivers' handler goroutines to
			// record them.
			return window, bytes, pkts, nil
		}
		select {
		case <-ctx.Done():
			return window, bytes, pkts, fmt.Errorf("broadcast still queued: %w", ctx.Err())
		case <-poll.C:
		}
	}
}

func (pool *Pool) traffic() (bytes, packets uint64) {
	for _, n := range pool.nodes {
		if n == nil {
			continue // not started yet
		}
		bytes += n.tr.sent.Load() + n.tr.received.Load()
		packets += n.tr.packets.Load()
	}
	return bytes, packets
}

func (pool *Pool) queuedTotal() int {
	total := 0
	for _, n := range pool.nodes {
		total += n.queued()
	}
	return total
}

// heapAndStacks is the memory a pool is charged with: live heap after a collection
// plus goroutine stacks, and the goroutine count.
func heapAndStacks() (uint64, int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse, runtime.NumGoroutine()
}
