package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

// etcdEndpoint is the client address of an etcd that TestMain started, or "" when the
// etcd binary is not installed (apt-get install etcd-server).
var etcdEndpoint string

func TestMain(m *testing.M) {
	stop, err := startEtcd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting etcd:", err)
		os.Exit(1)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// startEtcd starts one etcd for all tests in a temporary directory on free loopback
// ports, and waits until it is healthy.
func startEtcd() (stop func(), err error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "bench-etcd-test")
	if err != nil {
		return nil, err
	}
	client, peer := freePort(), freePort()
	cmd := exec.Command(bin, "--name", "t", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "t=http://"+peer, "--log-level", "error")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + client + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				etcdEndpoint = client
				return stop, nil
			}
		}
		select {
		case <-exited:
			stop()
			return nil, fmt.Errorf("etcd exited: %s", logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("etcd not healthy after 20s: %s", logs.String())
		}
	}
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func needEtcd(t *testing.T) {
	t.Helper()
	if etcdEndpoint == "" {
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
}

func TestEtcdDriver(t *testing.T) {
	needEtcd(t)
	d, err := newEtcdKV([]string{etcdEndpoint}, 2, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	key := fmt.Sprintf("driver-test/%d", time.Now().UnixNano())
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"get missing", func() error { return d.Get(ctx, key, benchkv.ReadDefault) }, benchkv.ErrNotFound},
		{"put", func() error { return d.Put(ctx, key, []byte("v")) }, nil},
		{"get default", func() error { return d.Get(ctx, key, benchkv.ReadDefault) }, nil},
		{"get consistent", func() error { return d.Get(ctx, key, benchkv.ReadConsistent) }, nil},
		{"get stale", func() error { return d.Get(ctx, key, benchkv.ReadStale) }, nil},
		{"put empty", func() error { return d.Put(ctx, key+"/empty", nil) }, nil},
		{"get empty value", func() error { return d.Get(ctx, key+"/empty", benchkv.ReadStale) }, nil},
	}
	for _, tt := range tests {
		if err := tt.op(); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestKVCommand(t *testing.T) {
	needEtcd(t)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"kv", "-endpoints", etcdEndpoint, "-workload", "mixed", "-read-mode", "stale",
		"-c", "4", "-d", "200ms", "-warmup", "0", "-keys", "20", "-preload-c", "4", "-format", "json", "-label", "etcd"},
		nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var r benchkv.Result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("%q: %v", stdout.String(), err)
	}
	if r.Ops == 0 || r.Errors != 0 || r.Misses != 0 || r.Put == nil || r.Get == nil || r.Label != "etcd" || r.ReadMode != benchkv.ReadStale {
		t.Errorf("result %+v", r)
	}
}

func TestKVUnreachable(t *testing.T) {
	var stderr bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"kv", "-endpoints", freePort(), "-dial-timeout", "200ms"}, nil, &bytes.Buffer{}, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "etcd at 127.0.0.1:") || time.Since(start) > 5*time.Second {
		t.Fatalf("exit %d after %v: %s", code, time.Since(start), stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "usage: bench kv"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"kv", "-c", "0", "-value-size", "-1"}, "concurrency 0: want 1 to 10000; value size -1"},
		{[]string{"kv", "--workload", "scan"}, `workload "scan"`},
		{[]string{"kv", "-conns", "0"}, "conns 0"},
		{[]string{"kv", "-d"}, "flag needs an argument"},
		{[]string{"kv", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		if code := run(context.Background(), tt.args, nil, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("bench %q: exit %d, %q; want 2 and %q", tt.args, code, stderr.String(), tt.want)
		}
	}
}

func TestTable(t *testing.T) {
	lines := []benchkv.Result{
		{Label: "wolke", Workload: benchkv.WorkloadPut, Concurrency: 64, OpStats: benchkv.OpStats{OpsPerSec: 2000, Latency: benchkv.Latency{P50: time.Millisecond}}},
		{Label: "etcd", Workload: benchkv.WorkloadGet, ReadMode: benchkv.ReadConsistent, Concurrency: 64, OpStats: benchkv.OpStats{OpsPerSec: 3000}},
	}
	var in bytes.Buffer
	for _, r := range lines {
		b, _ := json.Marshal(r)
		in.Write(b)
		in.WriteString("\n\n")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "results.jsonl")
	if err := os.WriteFile(file, in.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{}\nnot json\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		code     int
		want     string
		wantRows int
	}{
		{"stdin", []string{"table"}, in.String(), 0, "| wolke | put | 64 | 2000 | 1.00ms |", 2},
		{"files", []string{"table", file, file}, "", 0, "| etcd | get (consistent) | 64 | 3000 |", 4},
		{"bad line", []string{"table", bad}, "", 1, "bad.jsonl:2:", 0},
		{"missing file", []string{"table", filepath.Join(dir, "none")}, "", 1, "no such file", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, strings.NewReader(tt.stdin), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.want) {
				t.Fatalf("exit %d, out %q err %q; want %d and %q", code, stdout.String(), stderr.String(), tt.code, tt.want)
			}
			if rows := strings.Count(stdout.String(), "\n") - 2; tt.code == 0 && rows != tt.wantRows {
				t.Errorf("%d rows, want %d:\n%s", rows, tt.wantRows, stdout.String())
			}
		})
	}
}

// startEtcdCluster starts a 3-member etcd cluster for one test and returns the members'
// client addresses and a function that kills member i.
func startEtcdCluster(t *testing.T) (clients []string, kill func(i int)) {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	dir := t.TempDir()
	var peers []string
	initial := ""
	for i := range 3 {
		clients = append(clients, freePort())
		peers = append(peers, freePort())
		initial += fmt.Sprintf(",m%d=http://%s", i, peers[i])
	}
	var cmds []*exec.Cmd
	var exited []chan struct{}
	for i := range 3 {
		cmd := exec.Command(bin, "--name", fmt.Sprintf("m%d", i), "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--listen-client-urls", "http://"+clients[i], "--advertise-client-urls", "http://"+clients[i],
			"--listen-peer-urls", "http://"+peers[i], "--initial-advertise-peer-urls", "http://"+peers[i],
			"--initial-cluster", initial[1:], "--initial-cluster-state", "new", "--log-level", "error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		cmds, exited = append(cmds, cmd), append(exited, done)
	}
	kill = func(i int) {
		cmds[i].Process.Kill()
		<-exited[i]
	}
	t.Cleanup(func() {
		for i := range cmds {
			kill(i)
		}
	})
	for i, c := range clients {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get("http://" + c + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %d not healthy after 20s", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return clients, kill
}

// handledPuts reads how many Puts an etcd member has answered from its metrics.
func handledPuts(t *testing.T, client string) int {
	t.Helper()
	resp, err := http.Get("http://" + client + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "grpc_server_handled_total{") && strings.Contains(line, `grpc_method="Put"`) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			n += int(v)
		}
	}
	return n
}

// TestEtcdDriverCluster checks that the driver's requests spread over every member of
// a cluster, and move to the others when a member dies.
func TestEtcdDriverCluster(t *testing.T) {
	clients, kill := startEtcdCluster(t)
	d, err := newEtcdKV(clients, 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := benchkv.DefaultConfig()
	cfg.Workload, cfg.Concurrency, cfg.Warmup, cfg.Duration, cfg.KeyCount = benchkv.WorkloadPut, 6, 0, 300*time.Millisecond, 100
	r, err := benchkv.Run(context.Background(), cfg, d, nil)
	if err != nil || r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("%d ops, %d errors %q: %v", r.Ops, r.Errors, r.ErrorSamples, err)
	}
	for i, c := range clients {
		if n := handledPuts(t, c); n < int(r.Ops)/6 {
			t.Errorf("member %d answered %d of %d puts, want about a third", i, n, r.Ops)
		}
	}

	// Kill a follower (a dead leader would add an election to the figures).
	status, err := d.clients[0].Status(context.Background(), clients[0])
	if err != nil {
		t.Fatal(err)
	}
	victim := 0
	if status.Header.MemberId == status.Leader {
		victim = 1
	}
	kill(victim)
	before := make([]int, 3)
	for i, c := range clients {
		if i != victim {
			before[i] = handledPuts(t, c)
		}
	}
	r, err = benchkv.Run(context.Background(), cfg, d, nil)
	if err != nil || r.Ops == 0 || r.Errors > uint64(cfg.Concurrency) || r.LongestStall > 200*time.Millisecond {
		t.Fatalf("with member %d dead: %d ops, %d errors %q, longest stall %v: %v", victim, r.Ops, r.Errors, r.ErrorSamples, r.LongestStall, err)
	}
	for i, c := range clients {
		if i == victim {
			continue
		}
		if n := handledPuts(t, c) - before[i]; n < int(r.Ops)/4 {
			t.Errorf("member %d answered %d of %d puts, want about half", i, n, r.Ops)
		}
	}
}
