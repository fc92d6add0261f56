// Command backend is the upstream of the gateway tests: an HTTP service that registers
// itself with a wolke agent and, on SIGTERM, drains in the order of RELIABILITY test 14.
//
//	backend -listen 127.0.0.1:PORT -name NAME -agent HOST:PORT -service SVC [-fail-ratio 0.5] [-tags a=b,c=d]
//
// Every request is answered 200 with the instance's name, except that -fail-ratio of
// them (deterministically spread: request n fails when floor(n·r) grows) get a 500.
// /health answers the agent's HTTP check (registered every 200 ms; the agent runs it at
// most once a second, Consul's minimum) and never fails; /slow?ms=N answers after N
// milliseconds, /slow-inflight says how many of those are waiting, and /conns how many
// connections the backend accepted (the agent's checks included).
//
// On SIGTERM: deregister from the agent → wait -propagation for every gateway to drop
// the instance → http.Server.Shutdown (stop accepting, close idle connections, let
// in-flight requests finish) → exit 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	name := flag.String("name", "", "instance name: the service ID and the response body")
	agent := flag.String("agent", "127.0.0.1:8500", "HTTP address of the agent to register with")
	service := flag.String("service", "", "service name to register under")
	failRatio := flag.Float64("fail-ratio", 0, "share of requests answered 500 (0..1)")
	propagation := flag.Duration("propagation", 500*time.Millisecond, "wait after deregistering before shutting down")
	drain := flag.Duration("drain", 30*time.Second, "longest wait for in-flight requests")
	tags := flag.String("tags", "", "comma-separated service tags, e.g. wolke.retry.attempts=1")
	flag.Parse()
	if *name == "" || *service == "" || *failRatio < 0 || *failRatio > 1 {
		flag.Usage()
		os.Exit(2)
	}
	log.SetPrefix("backend " + *name + ": ")
	log.SetFlags(log.Lmicroseconds)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)

	var served, slow, conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/conns", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, conns.Load()) })
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/slow-inflight", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, slow.Load()) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if ms, err := strconv.Atoi(r.URL.Query().Get("ms")); err == nil && r.URL.Path == "/slow" {
			slow.Add(1)
			defer slow.Add(-1)
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		n := served.Add(1)
		w.Header().Set("X-Backend", *name)
		if math.Floor(float64(n)**failRatio) > math.Floor(float64(n-1)**failRatio) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "%s failed\n", *name)
			return
		}
		fmt.Fprintf(w, "%s\n", *name)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				conns.Add(1)
			}
		}}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	cfg := api.DefaultConfig()
	cfg.Address = *agent
	client, err := api.NewClient(cfg)
	if err != nil {
		log.Fatal(err)
	}
	reg := &api.AgentServiceRegistration{
		ID: *name, Name: *service, Address: addr.IP.String(), Port: addr.Port,
		Tags: strings.FieldsFunc(*tags, func(r rune) bool { return r == ',' }),
		Check: &api.AgentServiceCheck{
			HTTP:                           fmt.Sprintf("http://%s/health", addr),
			Interval:                       "200ms",
			Timeout:                        "1s",
			DeregisterCriticalServiceAfter: "1m",
		},
	}
	if err := client.Agent().ServiceRegister(reg); err != nil {
		log.Fatalf("register: %v", err)
	}
	log.Printf("serving on %s, registered as %s/%s", addr, *service, *name)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Printf("%v: deregistering", s)
	case err := <-serveErr:
		log.Fatalf("serve: %v", err)
	}
	if err := client.Agent().ServiceDeregister(*name); err != nil {
		// Still drain: the check fails once the listener is gone.
		log.Printf("deregister: %v", err)
	}
	time.Sleep(*propagation)
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatalf("drain: %v", err)
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("serve: %v", err)
	}
	log.Printf("drained, %d requests served", served.Load())
}
