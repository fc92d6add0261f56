package health

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/health"
)

// barrier makes the dispatcher deliver everything queued so far: it flips
// a TTL check "barrier" and waits for that update (delivery is FIFO).
func barrier(t *testing.T, m *Manager, rec *recorder) {
	t.Helper()
	if _, ok := m.Status("barrier"); !ok {
		if err := m.Add(Definition{Name: "barrier", TTL: 1000 * time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	token := fmt.Sprintf("b%d", time.Now().UnixNano())
	if err := m.UpdateTTL("barrier", StatusPassing, token); err != nil {
		t.Fatal(err)
	}
	rec.waitUpdate(t, "barrier", func(u Update) bool { return u.Output == token })
}

func TestManagerTTL(t *testing.T) {
	clk := newFakeClock()
	m, rec := newTestManager(t, Config{Clock: clk})
	if err := m.Add(Definition{ID: "ttl", Name: "heartbeat", TTL: 10 * time.Second, OutputMaxSize: 8}); err != nil {
		t.Fatal(err)
	}
	if u := mustStatus(t, m, "ttl"); u.Status != StatusCritical || u.Output != "" {
		t.Fatalf("initial state %+v, want critical (Consul's default)", u)
	}
	steps := []struct {
		name    string
		do      func() error
		advance time.Duration
		status  string
		output  string
	}{
		{"pass", func() error { return m.UpdateTTL("ttl", StatusPassing, "ok") }, 0, StatusPassing, "ok"},
		{"warn", func() error { return m.UpdateTTL("ttl", StatusWarning, "meh") }, 0, StatusWarning, "meh"},
		{"fail", func() error { return m.UpdateTTL("ttl", StatusCritical, "bad") }, 0, StatusCritical, "bad"},
		{"pass again", func() error { return m.UpdateTTL("ttl", StatusPassing, "fine") }, 9 * time.Second, StatusPassing, "fine"},
		{"renewal restarts the TTL", func() error { return m.UpdateTTL("ttl", StatusPassing, "fine") }, 9 * time.Second, StatusPassing, "fine"},
		{"expiry", nil, time.Second, StatusCritical, "TTL expired (last output before timeout follows): fine"},
		{"output truncated", func() error { return m.UpdateTTL("ttl", StatusPassing, "0123456789") }, 0, StatusPassing, "01234567 ... (captured 8 of 10 bytes)"},
		{"expiry after truncation", nil, 10 * time.Second, StatusCritical, "TTL expired (last output before timeout follows): 01234567 ... (captured 8 of 10 bytes)"},
		{"no second expiry", nil, time.Hour, StatusCritical, "TTL expired (last output before timeout follows): 01234567 ... (captured 8 of 10 bytes)"},
	}
	for _, s := range steps {
		if s.do != nil {
			if err := s.do(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
		clk.Advance(s.advance)
		if u := mustStatus(t, m, "ttl"); u.Status != s.status || u.Output != s.output {
			t.Fatalf("%s: state %+v, want %s %q", s.name, u, s.status, s.output)
		}
	}
	barrier(t, m, rec)
	var got []string
	for _, u := range rec.updatesOf("ttl") {
		got = append(got, u.Status+":"+u.Output)
	}
	want := []string{"critical:", "passing:ok", "warning:meh", "critical:bad", "passing:fine",
		"critical:TTL expired (last output before timeout follows): fine",
		"passing:01234567 ... (captured 8 of 10 bytes)",
		"critical:TTL expired (last output before timeout follows): 01234567 ... (captured 8 of 10 bytes)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("updates\n got %q\nwant %q", got, want)
	}

	t.Run("expiry without output", func(t *testing.T) {
		if err := m.Add(Definition{Name: "quiet", TTL: time.Second, Status: StatusPassing}); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		if u := mustStatus(t, m, "quiet"); u.Status != StatusCritical || u.Output != "TTL expired" {
			t.Errorf("state %+v", u)
		}
	})
}

func TestManagerUpdateTTLErrors(t *testing.T) {
	m, _ := newTestManager(t, Config{Clock: newFakeClock()})
	if err := m.Add(Definition{Name: "tcp", TCP: "127.0.0.1:1", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(Definition{Name: "ttl", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id, status string
		want       error
	}{
		{"nope", StatusPassing, ErrUnknownCheck},
		{"tcp", StatusPassing, ErrNotTTL},
		{"ttl", "ok", ErrInvalidStatus},
		{"ttl", "", ErrInvalidStatus},
		{"ttl", StatusWarning, nil},
	}
	for _, tt := range tests {
		if err := m.UpdateTTL(tt.id, tt.status, "x"); !errors.Is(err, tt.want) {
			t.Errorf("UpdateTTL(%q, %q) = %v, want %v", tt.id, tt.status, err, tt.want)
		}
	}
}

// flakyServer answers each request with the next code of a script (the last
// one repeats) and counts requests.
type flakyServer struct {
	*httptest.Server
	codes []int
	hits  atomic.Int32
}

func newFlakyServer(t *testing.T, codes ...int) *flakyServer {
	f := &flakyServer{codes: codes}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.hits.Add(1)) - 1
		code := f.codes[min(n, len(f.codes)-1)]
		w.WriteHeader(code)
		fmt.Fprintf(w, "run %d", n+1)
	}))
	t.Cleanup(f.Close)
	return f
}

func TestManagerThresholds(t *testing.T) {
	tests := []struct {
		name                  string
		success, warn, failed int
		codes                 []int
		want                  []string // reported status after each run
	}{
		{"no thresholds", 0, 0, 0, []int{200, 500, 429, 200}, []string{"passing", "critical", "warning", "passing"}},
		{"SuccessBeforePassing 2", 2, 0, 0, []int{500, 200, 200, 500, 200, 200},
			[]string{"critical", "critical", "passing", "critical", "critical", "passing"}},
		{"FailuresBeforeCritical 3", 0, 0, 3, []int{200, 500, 500, 200, 500, 500, 500},
			[]string{"passing", "passing", "passing", "passing", "passing", "passing", "critical"}},
		{"FailuresBeforeWarning 1 of 2", 0, 1, 2, []int{200, 500, 500, 200},
			[]string{"passing", "warning", "critical", "passing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFlakyServer(t, tt.codes...)
			clk := newFakeClock()
			m, _ := newTestManager(t, Config{Clock: clk})
			err := m.Add(Definition{Name: "c", HTTP: srv.URL, Interval: 10 * time.Second,
				SuccessBeforePassing: tt.success, FailuresBeforeWarning: tt.warn, FailuresBeforeCritical: tt.failed})
			if err != nil {
				t.Fatal(err)
			}
			clk.waitPending(t, 1) // the stagger
			for i, want := range tt.want {
				clk.Advance(10 * time.Second)
				clk.waitPending(t, 1) // the run is over and the next one scheduled
				if got := srv.hits.Load(); got != int32(i+1) {
					t.Fatalf("run %d: server saw %d requests", i+1, got)
				}
				if u := mustStatus(t, m, "c"); u.Status != want {
					t.Fatalf("after run %d (%d): %s, want %s", i+1, tt.codes[i], u.Status, want)
				}
			}
		})
	}
}

func TestManagerDeregisterCriticalServiceAfter(t *testing.T) {
	type step struct {
		status  string // UpdateTTL before advancing, "" for none
		advance time.Duration
		want    int // deregistrations delivered so far
	}
	tests := []struct {
		name      string
		def       Definition
		steps     []step
		wantAfter time.Duration
	}{
		{"fires once after the threshold", Definition{ServiceID: "web", DeregisterCriticalServiceAfter: 2 * time.Minute},
			[]step{{"", 119 * time.Second, 0}, {"", time.Second, 1}, {"", time.Hour, 1}, {StatusCritical, time.Hour, 1}}, 2 * time.Minute},
		{"recovery in time resets", Definition{ServiceID: "web", DeregisterCriticalServiceAfter: 2 * time.Minute},
			[]step{{"", 90 * time.Second, 0}, {StatusPassing, time.Hour, 0}, {StatusCritical, 90 * time.Second, 0}, {StatusWarning, time.Hour, 0}, {StatusCritical, 2 * time.Minute, 1}}, 2 * time.Minute},
		{"warning is not critical", Definition{ServiceID: "web", DeregisterCriticalServiceAfter: 2 * time.Minute, Status: StatusWarning},
			[]step{{"", time.Hour, 0}}, 0},
		{"node check is never reaped", Definition{DeregisterCriticalServiceAfter: 2 * time.Minute},
			[]step{{"", time.Hour, 0}}, 0},
		{"disabled by default", Definition{ServiceID: "web"},
			[]step{{"", time.Hour, 0}}, 0},
		{"raised to the minimum", Definition{ServiceID: "web", DeregisterCriticalServiceAfter: 10 * time.Second},
			[]step{{"", 59 * time.Second, 0}, {"", time.Second, 1}}, time.Minute},
		{"after a TTL expiry", Definition{ServiceID: "web", DeregisterCriticalServiceAfter: 5 * time.Minute, Status: StatusPassing, TTL: 30 * time.Second},
			[]step{{"", 30 * time.Second, 0}, {"", 299 * time.Second, 0}, {"", time.Second, 1}}, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			m, rec := newTestManager(t, Config{Clock: clk})
			def := tt.def
			def.Name = "svc-check"
			if def.TTL == 0 {
				def.TTL = 1000 * time.Hour
			}
			start := clk.Now()
			if err := m.Add(def); err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				if s.status != "" {
					if err := m.UpdateTTL("svc-check", s.status, ""); err != nil {
						t.Fatal(err)
					}
				}
				clk.Advance(s.advance)
				barrier(t, m, rec)
				_, deregs := rec.snapshot()
				if len(deregs) != s.want {
					t.Fatalf("step %d: %d deregistrations, want %d: %+v", i, len(deregs), s.want, deregs)
				}
			}
			_, deregs := rec.snapshot()
			if len(deregs) > 0 {
				d := deregs[0]
				if d.CheckID != "svc-check" || d.ServiceID != "web" || d.After != tt.wantAfter {
					t.Errorf("deregistration %+v", d)
				}
				if tt.name == "fires once after the threshold" && !d.CriticalSince.Equal(start) {
					t.Errorf("CriticalSince %v, want the registration time %v", d.CriticalSince, start)
				}
			}
		})
	}

	t.Run("removed check is not reaped", func(t *testing.T) {
		clk := newFakeClock()
		m, rec := newTestManager(t, Config{Clock: clk})
		if err := m.Add(Definition{Name: "c", ServiceID: "web", TTL: time.Hour, DeregisterCriticalServiceAfter: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove("c"); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		barrier(t, m, rec)
		if _, d := rec.snapshot(); len(d) != 0 {
			t.Errorf("removed check reaped: %+v", d)
		}
	})
}

func TestManagerNotify(t *testing.T) {
	clk := newFakeClock()
	m, rec := newTestManager(t, Config{Clock: clk})
	if err := m.Add(Definition{Name: "c", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct{ status, output string }{
		{StatusPassing, "a"}, {StatusPassing, "a"}, {StatusPassing, "b"}, {StatusWarning, "b"}, {StatusWarning, "b"}, {StatusCritical, ""},
	} {
		clk.Advance(time.Second)
		if err := m.UpdateTTL("c", s.status, s.output); err != nil {
			t.Fatal(err)
		}
	}
	barrier(t, m, rec)
	var got []string
	for _, u := range rec.updatesOf("c") {
		got = append(got, u.Status+":"+u.Output+"@"+u.At.Sub(newFakeClock().Now()).String())
	}
	want := []string{"critical:@0s", "passing:a@1s", "passing:b@3s", "warning:b@4s", "critical:@6s"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("updates %q, want %q (deduplicated, stamped with the clock)", got, want)
	}
}

func TestManagerSlowNotifyDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var delivered []Update
	var n atomic.Int32
	m := NewManager(Config{Clock: newFakeClock(), Notify: func(u Update) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		delivered = append(delivered, u) // only the dispatcher goroutine writes
		n.Add(1)
	}})
	defer m.Shutdown()
	m.q.maxQueue = 10
	if err := m.Add(Definition{Name: "c", TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	<-entered // the dispatcher is stuck in Notify with the initial update
	done := make(chan struct{})
	go func() {
		for i := range 1000 {
			m.UpdateTTL("c", StatusPassing, fmt.Sprint(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("UpdateTTL blocked behind a stuck Notify")
	}
	if u := mustStatus(t, m, "c"); u.Output != "999" {
		t.Fatalf("state %+v", u)
	}
	close(release)
	// The initial update was in Notify; the queue then took 10 updates
	// (0..9) before coalescing replaced the last of them with each newer one.
	waitFor(t, func() bool { return n.Load() >= 11 }, "delivery")
	m.Shutdown() // waits for the dispatcher: delivered is safe to read
	var got []string
	for _, u := range delivered {
		got = append(got, u.Output)
	}
	if want := "|0|1|2|3|4|5|6|7|8|999"; strings.Join(got, "|") != want {
		t.Errorf("delivered %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestManagerScriptChecksDisabled(t *testing.T) {
	def := Definition{Name: "s", Args: []string{"/bin/true"}, Interval: time.Second}
	m, _ := newTestManager(t, Config{Clock: newFakeClock()})
	if err := m.Add(def); !errors.Is(err, ErrScriptsDisabled) {
		t.Fatalf("Add(script) with scripts disabled: %v", err)
	}
	if _, ok := m.Status("s"); ok {
		t.Fatal("refused check is registered")
	}
	m2, _ := newTestManager(t, Config{Clock: newFakeClock(), EnableScriptChecks: true})
	if err := m2.Add(def); err != nil {
		t.Fatalf("Add(script) with scripts enabled: %v", err)
	}
}

func TestManagerAddReplacesAndRemove(t *testing.T) {
	clk := newFakeClock()
	m, rec := newTestManager(t, Config{Clock: clk})
	if err := m.Add(Definition{ID: "c", Name: "c", TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateTTL("c", StatusPassing, "ttl"); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(Definition{ID: "c", Name: "c", TCP: closedAddr(t), Interval: time.Minute, Status: StatusWarning}); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateTTL("c", StatusPassing, ""); !errors.Is(err, ErrNotTTL) {
		t.Fatalf("UpdateTTL on the replacement: %v", err)
	}
	if u := mustStatus(t, m, "c"); u.Status != StatusWarning || u.Output != "" {
		t.Fatalf("replacement state %+v", u)
	}
	clk.waitPending(t, 1)    // only the TCP runner's stagger: the TTL timer is gone
	clk.Advance(time.Minute) // the old TTL would expire here
	clk.waitPending(t, 1)
	if u := mustStatus(t, m, "c"); u.Status != StatusCritical || !strings.Contains(u.Output, "connection refused") {
		t.Fatalf("state after a run %+v", u)
	}
	if err := m.Remove("c"); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Status("c"); ok {
		t.Fatal("removed check still known")
	}
	if err := m.Remove("c"); !errors.Is(err, ErrUnknownCheck) {
		t.Fatalf("second Remove: %v", err)
	}
	clk.waitPending(t, 0)
	barrier(t, m, rec)
	for _, u := range rec.updatesOf("c") {
		if strings.Contains(u.Output, "TTL expired") {
			t.Errorf("stale TTL expiry delivered: %+v", u)
		}
	}
}

func TestManagerRemoveCancelsRunningProbe(t *testing.T) {
	m, _ := newTestManager(t, Config{EnableScriptChecks: true})
	m.minInterval = time.Millisecond
	started := t.TempDir() + "/started"
	if err := m.Add(Definition{Name: "slow", Script: "touch " + started + "; sleep 30", Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := runtimeStat(started); return err == nil }, "the script to start")
	begin := time.Now()
	if err := m.Remove("slow"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Remove took %v with a script running", d)
	}
}

// TestManagerRealClock runs an HTTP check on the wall clock with a short
// interval and follows the service going down and up again.
func TestManagerRealClock(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
		io.WriteString(w, "hi")
	}))
	defer srv.Close()
	m, rec := newTestManager(t, Config{})
	m.minInterval = time.Millisecond
	if err := m.Add(Definition{Name: "web", HTTP: srv.URL, Interval: 5 * time.Millisecond, FailuresBeforeCritical: 2}); err != nil {
		t.Fatal(err)
	}
	rec.waitUpdate(t, "web", func(u Update) bool { return u.Status == StatusPassing })
	code.Store(500)
	rec.waitUpdate(t, "web", func(u Update) bool { return u.Status == StatusCritical && strings.Contains(u.Output, "500") })
	code.Store(200)
	waitFor(t, func() bool { return mustStatus(t, m, "web").Status == StatusPassing }, "recovery")
}

func TestManagerStagger(t *testing.T) {
	clk := newFakeClock()
	m, _ := newTestManager(t, Config{Clock: clk})
	const n = 20
	for i := range n {
		if err := m.Add(Definition{Name: fmt.Sprint(i), TCP: "127.0.0.1:1", Interval: 30 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	clk.waitPending(t, n)
	distinct := map[time.Duration]bool{}
	for _, d := range clk.deadlines() {
		if d < 0 || d >= 30*time.Second {
			t.Fatalf("first run in %v, want within the interval", d)
		}
		distinct[d] = true
	}
	if len(distinct) < n/2 {
		t.Errorf("only %d distinct first-run times for %d checks", len(distinct), n)
	}
}

func TestManagerIntervalMinimum(t *testing.T) {
	clk := newFakeClock()
	m, _ := newTestManager(t, Config{Clock: clk})
	if err := m.Add(Definition{Name: "c", TCP: "127.0.0.1:1", Interval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	clk.waitPending(t, 1)
	if d := clk.deadlines()[0]; d >= MinInterval {
		t.Fatalf("stagger %v, want it within the raised 1s interval", d)
	}
	clk.fireNext(t) // the first run
	clk.waitPending(t, 1)
	if d := clk.deadlines()[0]; d != MinInterval {
		t.Errorf("next run in %v, want the 1s minimum", d)
	}
}

func TestManagerShutdown(t *testing.T) {
	hs := health.NewServer()
	grpcAddr := startGRPC(t, hs)
	httpSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer httpSrv.Close()
	tcpAddr := strings.TrimPrefix(httpSrv.URL, "http://")
	time.Sleep(0)
	before := runtime.NumGoroutine()

	var afterShutdown atomic.Bool
	var late atomic.Int32
	rec := &recorder{}
	m := NewManager(Config{EnableScriptChecks: true, Notify: func(u Update) {
		if afterShutdown.Load() {
			late.Add(1)
		}
		rec.notify(u)
	}})
	m.minInterval = time.Millisecond
	defs := []Definition{
		{Name: "http", HTTP: httpSrv.URL, Interval: 2 * time.Millisecond},
		{Name: "tcp", TCP: tcpAddr, Interval: 2 * time.Millisecond},
		{Name: "grpc", GRPC: grpcAddr, Interval: 2 * time.Millisecond},
		{Name: "script", Args: []string{"/bin/true"}, Interval: 2 * time.Millisecond},
		{Name: "ttl", TTL: time.Hour},
		{Name: "slow", Script: "sleep 30", Interval: time.Millisecond},
	}
	for _, d := range defs {
		if err := m.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"http", "tcp", "grpc", "script"} {
		rec.waitUpdate(t, id, func(u Update) bool { return u.Status == StatusPassing })
	}
	begin := time.Now()
	m.Shutdown()
	afterShutdown.Store(true)
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	m.Shutdown() // idempotent
	if err := m.Add(Definition{Name: "late", TTL: time.Second}); !errors.Is(err, ErrShutdown) {
		t.Errorf("Add after Shutdown: %v", err)
	}
	if _, ok := m.Status("http"); ok {
		t.Error("checks survive Shutdown")
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before },
		"goroutines to return to %d (now %d)", before, runtime.NumGoroutine())
	if late.Load() != 0 {
		t.Errorf("%d Notify calls after Shutdown returned", late.Load())
	}
}
