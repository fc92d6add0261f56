// Package dnsbench generates DNS query load against one server and measures it: queries
// per second and a latency distribution exact enough for p99.9 (pkg/benchkv's
// histogram). It is the core of `wolke bench dns`. It stays lean, as it shares the
// machine with the server it measures: each worker packs its query once, changes only
// the ID, and reads just the header of the response.
package dnsbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/wolke-platform/wolke/pkg/benchkv"
)

// Config describes a run.
type Config struct {
	// Server is the host:port queried. Default 127.0.0.1:8600.
	Server string
	// Name is the name asked, made fully qualified. Default web.service.wolke.
	Name string
	// Type is the question type, such as dns.TypeA or dns.TypeSRV. Default SRV.
	Type uint16
	// Net is udp or tcp (each worker keeps one connection). Default udp.
	Net string
	// EDNS, when not 0, adds an OPT record with this UDP buffer size.
	EDNS uint16
	// Concurrency is the number of workers, each with one query in flight. Default 16.
	Concurrency int
	// Duration is how long to measure, after Warmup (unmeasured). Defaults 10s and 1s.
	Duration time.Duration
	Warmup   time.Duration
	// Timeout bounds one query; a query that times out counts as an error. Default 2s.
	Timeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Server: "127.0.0.1:8600", Name: "web.service.wolke.", Type: dns.TypeSRV, Net: "udp",
		Concurrency: 16, Duration: 10 * time.Second, Warmup: time.Second, Timeout: 2 * time.Second,
	}
}

// Validate reports every problem of the configuration, one per line.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		errs = append(errs, fmt.Errorf("server %q: %w", c.Server, err))
	}
	if _, ok := dns.IsDomainName(c.Name); !ok || c.Name == "" {
		errs = append(errs, fmt.Errorf("name %q is not a domain name", c.Name))
	}
	if c.Net != "udp" && c.Net != "tcp" {
		errs = append(errs, fmt.Errorf("net %q: want udp or tcp", c.Net))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency %d: want at least 1", c.Concurrency))
	}
	if c.Duration <= 0 || c.Warmup < 0 || c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("duration %v, warmup %v, timeout %v: want positive durations (warmup may be 0)", c.Duration, c.Warmup, c.Timeout))
	}
	return errors.Join(errs...)
}

// Result is what a run measured: queries that started after the warm-up.
type Result struct {
	Server      string        `json:"server"`
	Name        string        `json:"name"`
	Type        string        `json:"type"`
	Net         string        `json:"net"`
	Concurrency int           `json:"concurrency"`
	Duration    time.Duration `json:"duration_ns"`
	// Queries counts answered queries (any rcode); QPS is Queries per second.
	Queries uint64  `json:"queries"`
	QPS     float64 `json:"qps"`
	// Rcodes counts the answers by response code.
	Rcodes map[string]uint64 `json:"rcodes"`
	// Truncated counts answers with the TC bit.
	Truncated uint64 `json:"truncated"`
	// AnswersPerResponse is the mean size of the answer section.
	AnswersPerResponse float64 `json:"answers_per_response"`
	// Errors counts queries without an answer (timeouts, network errors); they are not
	// in the latency figures. ErrorSamples holds the first few messages.
	Errors       uint64          `json:"errors"`
	ErrorSamples []string        `json:"error_samples,omitempty"`
	Latency      benchkv.Latency `json:"latency"`
}

// Text renders the result for a terminal.
func (r Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "dns %s %s @%s over %s, %d workers, %.1fs\n", r.Type, r.Name, r.Server, r.Net, r.Concurrency, r.Duration.Seconds())
	fmt.Fprintf(&b, "queries:  %d (%.0f/s), %d errors, %d truncated, %.1f answers per response\n",
		r.Queries, r.QPS, r.Errors, r.Truncated, r.AnswersPerResponse)
	var rc []string
	for code, n := range r.Rcodes {
		rc = append(rc, fmt.Sprintf("%s %d", code, n))
	}
	if len(rc) > 0 {
		slices.Sort(rc)
		fmt.Fprintf(&b, "rcodes:   %s\n", strings.Join(rc, ", "))
	}
	l := r.Latency
	fmt.Fprintf(&b, "latency:  p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n",
		benchkv.FormatLatency(l.P50), benchkv.FormatLatency(l.P90), benchkv.FormatLatency(l.P99),
		benchkv.FormatLatency(l.P999), benchkv.FormatLatency(l.Max))
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(&b, "error:    %s\n", e)
	}
	return b.String()
}

// Write writes the result as text or json.
func (r Result) Write(w io.Writer, format string) error {
	if format == "json" {
		return json.NewEncoder(w).Encode(r)
	}
	_, err := io.WriteString(w, r.Text())
	return err
}

const maxErrorSamples = 5

// worker is one closed-loop client with its own connection and statistics.
type worker struct {
	cfg     Config
	query   []byte // packed query; the ID is rewritten for each send
	buf     []byte
	conn    net.Conn
	br      *bufio.Reader // TCP only
	id      uint16
	hist    *benchkv.Histogram
	rcodes  [16]uint64
	answers uint64
	tc      uint64
	errors  uint64
	samples []string
}

// errShortAnswer: a datagram too short to be a DNS message.
var errShortAnswer = errors.New("answer shorter than a DNS header")

func (w *worker) dial() error {
	if w.conn != nil {
		w.conn.Close()
	}
	c, err := net.DialTimeout(w.cfg.Net, w.cfg.Server, w.cfg.Timeout)
	if err != nil {
		w.conn = nil
		return err
	}
	w.conn = c
	if w.cfg.Net == "tcp" {
		w.br = bufio.NewReaderSize(c, 4096)
	}
	return nil
}

// exchange sends the query with a new ID and waits for the answer with that ID; it
// returns the answer's header fields.
func (w *worker) exchange() (rcode int, tc bool, ancount int, err error) {
	if w.conn == nil {
		if err := w.dial(); err != nil {
			return 0, false, 0, err
		}
	}
	w.id++
	binary.BigEndian.PutUint16(w.query[0:2], w.id)
	deadline := time.Now().Add(w.cfg.Timeout)
	w.conn.SetDeadline(deadline)
	if w.cfg.Net == "tcp" {
		frame := binary.BigEndian.AppendUint16(w.buf[:0], uint16(len(w.query)))
		frame = append(frame, w.query...)
		if _, err := w.conn.Write(frame); err != nil {
			w.dial()
			return 0, false, 0, err
		}
	} else if _, err := w.conn.Write(w.query); err != nil {
		return 0, false, 0, err
	}
	for {
		msg, err := w.read()
		if err != nil {
			if w.cfg.Net == "tcp" {
				w.dial()
			}
			return 0, false, 0, err
		}
		if len(msg) < 12 {
			return 0, false, 0, errShortAnswer
		}
		if binary.BigEndian.Uint16(msg[0:2]) != w.id || msg[2]&0x80 == 0 {
			continue // a late answer to a query that timed out
		}
		return int(msg[3] & 0x0F), msg[2]&0x02 != 0, int(binary.BigEndian.Uint16(msg[6:8])), nil
	}
}

func (w *worker) read() ([]byte, error) {
	if w.cfg.Net != "tcp" {
		n, err := w.conn.Read(w.buf)
		return w.buf[:n], err
	}
	var l [2]byte
	if _, err := io.ReadFull(w.br, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(w.br, w.buf[:n]); err != nil {
		return nil, err
	}
	return w.buf[:n], nil
}

func (w *worker) noteError(err error) {
	w.errors++
	if len(w.samples) < maxErrorSamples {
		w.samples = append(w.samples, err.Error())
	}
}

// Run runs the load and returns what it measured. It returns early, with what it
// measured so far and ctx's error, when ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(cfg.Name), cfg.Type)
	if cfg.EDNS > 0 {
		m.SetEdns0(cfg.EDNS, false)
	}
	packed, err := m.Pack()
	if err != nil {
		return Result{}, fmt.Errorf("packing the query: %w", err)
	}

	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	workers := make([]*worker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{
			cfg: cfg, query: append([]byte(nil), packed...), buf: make([]byte, dns.MaxMsgSize+2),
			id: uint16(i * 4099), hist: benchkv.NewHistogram(),
		}
		workers[i] = w
		wg.Go(func() {
			defer func() {
				if w.conn != nil {
					w.conn.Close()
				}
			}()
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				rcode, tc, an, err := w.exchange()
				if t0.Before(measureFrom) {
					if err != nil {
						time.Sleep(10 * time.Millisecond)
					}
					continue
				}
				if err != nil {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						time.Sleep(10 * time.Millisecond) // refused or failed: do not spin
					}
					w.noteError(err)
					continue
				}
				w.hist.Record(time.Since(t0))
				w.rcodes[rcode]++
				w.answers += uint64(an)
				if tc {
					w.tc++
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(measureFrom)

	r := Result{
		Server: cfg.Server, Name: dns.Fqdn(cfg.Name), Type: dns.TypeToString[cfg.Type], Net: cfg.Net,
		Concurrency: cfg.Concurrency, Duration: max(elapsed, 0), Rcodes: map[string]uint64{},
	}
	h := benchkv.NewHistogram()
	var answers uint64
	for _, w := range workers {
		h.Merge(w.hist)
		for code, n := range w.rcodes {
			if n > 0 {
				r.Rcodes[dns.RcodeToString[code]] += n
			}
		}
		answers += w.answers
		r.Truncated += w.tc
		r.Errors += w.errors
		for _, s := range w.samples {
			if len(r.ErrorSamples) < maxErrorSamples {
				r.ErrorSamples = append(r.ErrorSamples, s)
			}
		}
	}
	r.Queries = h.Count()
	if r.Queries > 0 {
		r.AnswersPerResponse = float64(answers) / float64(r.Queries)
	}
	if elapsed > 0 {
		r.QPS = float64(r.Queries) / elapsed.Seconds()
	}
	r.Latency = benchkv.LatencyOf(h)
	if err := ctx.Err(); err != nil {
		return r, err
	}
	if r.Queries == 0 && r.Errors > 0 {
		return r, fmt.Errorf("no query was answered; first error: %s", r.ErrorSamples[0])
	}
	return r, nil
}
