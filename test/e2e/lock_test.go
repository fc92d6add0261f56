package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Locks and leader election with the built binary: `wolke lock` and `wolke elect`
// processes against a 3-server cluster, SIGKILLed at random, with the Raft leader killed
// meanwhile; their children log markers to a shared file (one O_APPEND write per marker)
// that is checked afterwards.
//
// Sessions use the agents' shortest TTL (10s) and a 1s lock-delay. A SIGKILLed holder's
// session outlives it by up to 2xTTL (the servers' grace), so after such a kill the lock
// is free again within 2xTTL + lock-delay; its child, though, dies at once with it
// (parent-death signal), which the tests check.

const (
	lockTTL       = 10 * time.Second
	lockDelay     = time.Second
	handoverBound = 5 * time.Second // slack on top of TTL grace and lock-delay
)

// lockProc is one `wolke lock` or `wolke elect` process.
type lockProc struct {
	id   string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func startLockProc(t testing.TB, id string, env []string, args ...string) *lockProc {
	t.Helper()
	p := &lockProc{id: id, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(wolkeBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.signal(syscall.SIGKILL); <-p.done })
	return p
}

func (p *lockProc) signal(s syscall.Signal) {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(s)
	}
}

func (p *lockProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// pidGone reports whether pid has exited (a zombie counts: it runs no code).
func pidGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] == 'Z'
}

// waitPidsGone polls until every pid has exited and returns when the last one was seen
// gone.
func waitPidsGone(t testing.TB, timeout time.Duration, pids ...int) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		alive := 0
		for _, p := range pids {
			if !pidGone(p) {
				alive = p
			}
		}
		if alive == 0 {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("child pid %d still running %v after its wolke process was killed", alive, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// marker is one line of the shared log: KIND ID [TOKEN] PID UNIXNANO.
type marker struct {
	kind, id string
	token    uint64
	pid      int
	ts       time.Time
	line     int
}

func readMarkers(t testing.TB, path string) []marker {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []marker
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fl := strings.Fields(sc.Text())
		var m marker
		var err error
		switch {
		case len(fl) == 5 && fl[0] == "start":
			m.token, err = strconv.ParseUint(fl[2], 10, 64)
			fl = append(fl[:2], fl[3:]...)
		case len(fl) == 4 && (fl[0] == "end" || fl[0] == "abort" || fl[0] == "leader" || fl[0] == "stop"):
		default:
			t.Fatalf("%s:%d: malformed marker %q", path, n, sc.Text())
		}
		m.kind, m.id, m.line = fl[0], fl[1], n
		pid, err2 := strconv.Atoi(fl[2])
		ns, err3 := strconv.ParseInt(fl[3], 10, 64)
		if err != nil || err2 != nil || err3 != nil {
			t.Fatalf("%s:%d: malformed marker %q", path, n, sc.Text())
		}
		m.pid, m.ts = pid, time.Unix(0, ns)
		ms = append(ms, m)
	}
	return ms
}

// criticalSection is the child of every `wolke lock`: it appends start (with its
// fencing token), sleeps, appends end; on SIGTERM (lock lost, or the test stopping
// everything) it appends abort once the sleep is over. Each marker is one write.
const criticalSection = `trap 'echo "abort $LOCK_ID $$ $(date +%s%N)" >> "$LOCK_LOG"; exit 143' TERM
echo "start $LOCK_ID $WOLKE_LOCK_INDEX $$ $(date +%s%N)" >> "$LOCK_LOG"
sleep 0.05
echo "end $LOCK_ID $$ $(date +%s%N)" >> "$LOCK_LOG"`

// checkMutex checks the lock log: sections never overlap, tokens strictly increase.
// A section may be left open (no end or abort) only by a child the test killed
// together with its `wolke lock`, and only if the child was seen gone before the next
// section started; nothing may be written by such a child after that.
func checkMutex(ms []marker, killedGone map[string]time.Time) (sections int, problems []string) {
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	var open *marker
	var lastToken uint64
	closed, started := map[string]bool{}, map[string]bool{}
	for i := range ms {
		m := &ms[i]
		if gone, killed := killedGone[m.id]; killed && m.ts.After(gone) {
			errorf("line %d: %s of %s at %v, after its child was seen gone at %v", m.line, m.kind, m.id, m.ts, gone)
		}
		switch m.kind {
		case "start":
			if open != nil {
				gone, killed := killedGone[open.id]
				switch {
				case !killed:
					errorf("line %d: %s starts while %s (line %d) holds the lock", m.line, m.id, open.id, open.line)
				case !gone.Before(m.ts):
					errorf("line %d: %s starts at %v, before killed holder %s's child was gone (%v)", m.line, m.id, m.ts, open.id, gone)
				}
			}
			started[m.id] = true
			if m.token <= lastToken {
				errorf("line %d: fencing token %d of %s not above the previous %d", m.line, m.token, m.id, lastToken)
			}
			lastToken, open = m.token, m
		case "end", "abort":
			if open != nil && open.id == m.id {
				open = nil
				closed[m.id] = true
				sections++
				continue
			}
			if m.kind == "abort" && (closed[m.id] || !started[m.id]) {
				// SIGTERM after the end marker, or before the start marker (the test
				// stopped everything just as this one took the lock): nothing ran.
				continue
			}
			errorf("line %d: %s of %s, but the open section is %+v", m.line, m.kind, m.id, open)
		}
	}
	return sections, problems
}

func TestLockMutualExclusionUnderKills(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	rng := rand.New(rand.NewPCG(testSeed(t), 0))
	logPath := filepath.Join(c.dir, "mutex.log")
	var mu sync.Mutex
	running := map[string]*lockProc{}
	var all []*lockProc
	stop := make(chan struct{})
	var workers sync.WaitGroup
	for w := range 10 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d.%d", w, n)
				srv := c.servers[w%len(c.servers)]
				mu.Lock()
				p := startLockProc(t, id, []string{"LOCK_ID=" + id, "LOCK_LOG=" + logPath},
					"lock", "-http-addr", srv.httpAddr, "-ttl", lockTTL.String(), "-lock-delay", lockDelay.String(),
					"e2e/mutex", "--", "sh", "-c", criticalSection)
				running[id] = p
				all = append(all, p)
				mu.Unlock()
				select {
				case <-p.done:
				case <-stop:
					<-p.done
				}
				mu.Lock()
				delete(running, id)
				mu.Unlock()
				if p.cmd.ProcessState.ExitCode() == 1 {
					// Not acquired (an agent was down): don't spin.
					select {
					case <-stop:
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}()
	}
	stopAll := func() {
		select {
		case <-stop:
			return
		default:
		}
		close(stop)
		mu.Lock()
		for _, p := range running {
			p.signal(syscall.SIGTERM)
		}
		mu.Unlock()
		workers.Wait()
	}
	defer stopAll()

	sectionsDone := func() int {
		n := 0
		for _, m := range readMarkers(t, logPath) {
			if m.kind == "end" {
				n++
			}
		}
		return n
	}
	waitSections := func(n int, timeout time.Duration, what string) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for sectionsDone() < n {
			if time.Now().After(deadline) {
				stopAll()
				t.Fatalf("%s: only %d of %d critical sections completed within %v", what, sectionsDone(), n, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitSections(15, 20*time.Second, "start-up")

	// Kill the Raft leader and bring it back while the lock changes hands.
	leader := c.waitLeader(10*time.Second, nil)
	t.Logf("killing Raft leader %s after %d sections", leader.name, sectionsDone())
	leader.kill()
	c.restart(leader)
	c.waitLeader(20*time.Second, nil)
	waitSections(sectionsDone()+15, 30*time.Second, "after the leader kill")

	// SIGKILL the holder mid-section, and two other `wolke lock` processes.
	killedGone := map[string]time.Time{}
	kill := func(p *lockProc) {
		p.signal(syscall.SIGKILL)
		<-p.done
		var pids []int
		for _, m := range readMarkers(t, logPath) {
			if m.id == p.id && m.kind == "start" {
				pids = append(pids, m.pid)
			}
		}
		killedGone[p.id] = waitPidsGone(t, 2*time.Second, pids...)
		t.Logf("killed %s (child pids %v gone)", p.id, pids)
	}
	var holder *lockProc
	deadline := time.Now().Add(10 * time.Second)
	for holder == nil {
		if ms := readMarkers(t, logPath); len(ms) > 0 && ms[len(ms)-1].kind == "start" {
			mu.Lock()
			holder = running[ms[len(ms)-1].id]
			mu.Unlock()
		}
		if time.Now().After(deadline) {
			t.Fatal("never caught a holder mid-section")
		}
		time.Sleep(2 * time.Millisecond)
	}
	kill(holder)
	for range 2 {
		mu.Lock()
		var ids []string
		for id := range running {
			ids = append(ids, id)
		}
		mu.Unlock()
		if len(ids) > 0 {
			mu.Lock()
			p := running[ids[rng.IntN(len(ids))]]
			mu.Unlock()
			if p != nil {
				kill(p)
			}
		}
	}
	killedAt := time.Now()
	before := sectionsDone()
	waitSections(before+5, 2*lockTTL+lockDelay+2*handoverBound, "after killing the holder")
	t.Logf("lock taken over %v after the holder was killed", time.Since(killedAt).Round(time.Millisecond))

	stopAll()
	ms := readMarkers(t, logPath)
	var pids []int
	for _, m := range ms {
		if m.kind == "start" {
			pids = append(pids, m.pid)
		}
	}
	waitPidsGone(t, 5*time.Second, pids...)
	n, problems := checkMutex(ms, killedGone)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d wolke lock processes, %d critical sections, %d markers, no overlap", len(all), n, len(ms))
	if t.Failed() {
		os.WriteFile(filepath.Join(c.dir, "procs.txt"), []byte(describeLockProcs(all)), 0o644)
	}
}

func describeLockProcs(ps []*lockProc) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "== %s exit %v\n%s\n", p.id, p.cmd.ProcessState, p.out.String())
	}
	return b.String()
}

// TestLockCheckerCatchesOverlap feeds the checker logs it must reject, so that a
// passing mutual-exclusion run means something.
func TestLockCheckerCatchesOverlap(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(1000+int64(s), 0) }
	bad := map[string][]marker{
		"overlap":        {{kind: "start", id: "a", token: 5, ts: at(0)}, {kind: "start", id: "b", token: 6, ts: at(1)}, {kind: "end", id: "a", ts: at(2)}},
		"token":          {{kind: "start", id: "a", token: 5, ts: at(0)}, {kind: "end", id: "a", ts: at(1)}, {kind: "start", id: "b", token: 5, ts: at(2)}},
		"killed late":    {{kind: "start", id: "a", token: 5, ts: at(0)}, {kind: "start", id: "b", token: 6, ts: at(1)}},
		"killed writes":  {{kind: "start", id: "a", token: 5, ts: at(0)}, {kind: "start", id: "b", token: 6, ts: at(5)}, {kind: "end", id: "a", ts: at(6)}},
		"stray end":      {{kind: "end", id: "a", ts: at(0)}},
		"abort of other": {{kind: "start", id: "b", token: 4, ts: at(0)}, {kind: "start", id: "c", token: 5, ts: at(1)}, {kind: "abort", id: "b", ts: at(1)}},
	}
	for name, ms := range bad {
		if _, problems := checkMutex(ms, map[string]time.Time{"a": at(2)}); len(problems) == 0 {
			t.Errorf("%s: checker accepted %+v", name, ms)
		}
	}
	// a killed mid-section; b's child aborted after its end; c's before its start.
	good := []marker{{kind: "start", id: "a", token: 5, ts: at(0)}, {kind: "start", id: "b", token: 6, ts: at(3)},
		{kind: "end", id: "b", ts: at(4)}, {kind: "abort", id: "b", ts: at(4)}, {kind: "abort", id: "c", ts: at(5)}}
	if n, problems := checkMutex(good, map[string]time.Time{"a": at(2)}); n != 1 || len(problems) > 0 {
		t.Errorf("good log: %d sections, problems %q; want 1, none", n, problems)
	}
}

// electChild appends "leader ID PID NS" when it starts and "stop ID PID NS" on SIGTERM.
const electChild = `trap 'echo "stop $ELECT_ID $$ $(date +%s%N)" >> "$ELECT_LOG"; exit 0' TERM
echo "leader $ELECT_ID $$ $(date +%s%N)" >> "$ELECT_LOG"
i=0; while [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done`

func TestElectOneLeaderAtATime(t *testing.T) {
	c := startCluster(t, clusterOpts{})
	logPath := filepath.Join(c.dir, "elect.log")
	procs := map[string]*lockProc{}
	start := func(id string, srv *node) {
		procs[id] = startLockProc(t, id, []string{"ELECT_ID=" + id, "ELECT_LOG=" + logPath},
			"elect", "-http-addr", srv.httpAddr, "-name", id, "-ttl", lockTTL.String(), "-lock-delay", lockDelay.String(),
			"e2e/svc", "--", "sh", "-c", electChild)
	}
	for i, id := range []string{"e1", "e2", "e3"} {
		start(id, c.servers[i])
	}
	// leaders returns the ids whose last marker is "leader" (a SIGKILLed one's stays so),
	// and how many markers exist.
	leaders := func() ([]string, int) {
		ms := readMarkers(t, logPath)
		last := map[string]string{}
		for _, m := range ms {
			last[m.id] = m.kind
		}
		var ids []string
		for id, k := range last {
			if k == "leader" {
				ids = append(ids, id)
			}
		}
		return ids, len(ms)
	}
	waitNewLeader := func(after int, timeout time.Duration) string {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			ms := readMarkers(t, logPath)
			for _, m := range ms[min(after, len(ms)):] {
				if m.kind == "leader" {
					return m.id
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no new leader within %v", timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	first := waitNewLeader(0, 15*time.Second)
	show := func() string {
		out, _ := exec.Command(wolkeBin, "elect", "-http-addr", c.servers[0].httpAddr, "-show", "e2e/svc").Output()
		return string(out)
	}
	if s := show(); !strings.Contains(s, `"Name":"`+first+`"`) {
		t.Errorf("elect -show says %q, leader is %s", s, first)
	}

	// 1. SIGTERM the leader: it stops its child and resigns; no lock-delay applies to a
	// released key, so the next leader follows within the bound.
	_, n := leaders()
	t0 := time.Now()
	procs[first].signal(syscall.SIGTERM)
	second := waitNewLeader(n, lockDelay+handoverBound)
	t.Logf("graceful hand-off %s -> %s in %v", first, second, time.Since(t0).Round(time.Millisecond))
	<-procs[first].done
	if code := procs[first].cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("%s exited %d after SIGTERM: %s", first, code, procs[first].out.String())
	}
	start(first+"b", c.servers[0]) // back to three candidates

	// 2. SIGKILL the leader: its child dies with it at once; its session lives until the
	// servers' 2xTTL grace ends, then lock-delay, then exactly one other takes over.
	var pid int
	for _, m := range readMarkers(t, logPath) {
		if m.id == second && m.kind == "leader" {
			pid = m.pid
		}
	}
	_, n = leaders()
	t1 := time.Now()
	procs[second].signal(syscall.SIGKILL)
	<-procs[second].done
	gone := waitPidsGone(t, 2*time.Second, pid)
	third := waitNewLeader(n, 2*lockTTL+lockDelay+handoverBound)
	took := time.Since(t1)
	t.Logf("crash hand-off %s -> %s in %v (bound 2xTTL + lock-delay + %v = %v)", second, third, took.Round(time.Millisecond),
		handoverBound, 2*lockTTL+lockDelay+handoverBound)
	if took < lockDelay {
		t.Errorf("new leader %v after the crash, sooner than lock-delay %v", took, lockDelay)
	}
	lockWaitStable(t, func() bool {
		ids, _ := leaders()
		live := 0
		for _, id := range ids {
			if id != second { // killed: its last marker stays "leader"
				live++
			}
		}
		return live == 1 && slices.Contains(ids, third)
	}, 2*time.Second)
	if s := show(); !strings.Contains(s, `"Name":"`+third+`"`) {
		t.Errorf("elect -show says %q, leader is %s", s, third)
	}

	// Stop everyone, then check: leadership intervals never overlap.
	for _, p := range procs {
		p.signal(syscall.SIGTERM)
	}
	for id, p := range procs {
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			t.Errorf("%s did not exit within 15s of SIGTERM", id)
		}
	}
	ms := readMarkers(t, logPath)
	type interval struct {
		id         string
		start, end time.Time
	}
	var ivs []interval
	openAt := map[string]time.Time{}
	var pids []int
	for _, m := range ms {
		switch m.kind {
		case "leader":
			if _, dup := openAt[m.id]; dup {
				t.Errorf("line %d: %s leader twice without a stop", m.line, m.id)
			}
			openAt[m.id] = m.ts
			pids = append(pids, m.pid)
		case "stop":
			ivs = append(ivs, interval{m.id, openAt[m.id], m.ts})
			delete(openAt, m.id)
		}
	}
	for id, s := range openAt {
		if id != second {
			t.Errorf("%s's term has no stop marker", id)
		}
		ivs = append(ivs, interval{id, s, gone})
	}
	for i, a := range ivs {
		for _, b := range ivs[i+1:] {
			if a.start.Before(b.end) && b.start.Before(a.end) {
				t.Errorf("two leaders at once: %s %v..%v and %s %v..%v", a.id, a.start, a.end, b.id, b.start, b.end)
			}
		}
	}
	waitPidsGone(t, 5*time.Second, pids...)
	t.Logf("%d terms, none overlapping", len(ivs))
}

// lockWaitStable waits until cond holds and checks it still holds for hold.
func lockWaitStable(t testing.TB, cond func() bool, hold time.Duration) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	end := time.Now().Add(hold)
	for time.Now().Before(end) {
		if !cond() {
			t.Fatal("condition stopped holding")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
