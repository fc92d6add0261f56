package benchkv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Workload names the mix of operations the workers issue.
type Workload string

const (
	// WorkloadPut writes values to random keys of the key space.
	WorkloadPut Workload = "put"
	// WorkloadGet reads random keys of the key space (preloaded unless told otherwise).
	WorkloadGet Workload = "get"
	// WorkloadMixed reads with probability Config.ReadShare and writes otherwise.
	WorkloadMixed Workload = "mixed"
)

func (w Workload) String() string { return string(w) }

// MarshalText and UnmarshalText let a Workload be a flag (flag.TextVar) and a JSON value.
func (w Workload) MarshalText() ([]byte, error) { return []byte(w), nil }

// UnmarshalText accepts put, get or mixed.
func (w *Workload) UnmarshalText(b []byte) error {
	switch v := Workload(strings.ToLower(string(b))); v {
	case WorkloadPut, WorkloadGet, WorkloadMixed:
		*w = v
		return nil
	}
	return fmt.Errorf("workload %q: want put, get or mixed", b)
}

// reads reports whether the workload issues Get calls.
func (w Workload) reads() bool { return w == WorkloadGet || w == WorkloadMixed }

// ReadMode is the consistency a read asks for, in Consul's terms.
type ReadMode string

const (
	// ReadDefault is Consul's default mode: the leader answers from its state. etcd has
	// no such middle ground; its drivers map this to a linearizable read.
	ReadDefault ReadMode = "default"
	// ReadConsistent confirms leadership with a quorum before answering (`?consistent`);
	// etcd: linearizable read.
	ReadConsistent ReadMode = "consistent"
	// ReadStale lets any server answer from local state (`?stale`); etcd: serializable.
	ReadStale ReadMode = "stale"
)

func (m ReadMode) String() string { return string(m) }

// MarshalText and UnmarshalText let a ReadMode be a flag (flag.TextVar) and a JSON value.
func (m ReadMode) MarshalText() ([]byte, error) { return []byte(m), nil }

// UnmarshalText accepts default, consistent or stale.
func (m *ReadMode) UnmarshalText(b []byte) error {
	switch v := ReadMode(strings.ToLower(string(b))); v {
	case ReadDefault, ReadConsistent, ReadStale:
		*m = v
		return nil
	}
	return fmt.Errorf("read mode %q: want default, consistent or stale", b)
}

// Limits that Validate enforces.
const (
	// MaxValueSize is Consul's limit on a KV value (512 KiB).
	MaxValueSize = 512 << 10
	// MaxKeyLen is Consul's limit on a key.
	MaxKeyLen = 512
	// MaxKeyCount bounds the key space; Run keeps every key in memory (about 40 B each).
	MaxKeyCount = 10_000_000
	// MaxConcurrency bounds the number of workers (and so of connections).
	MaxConcurrency = 10_000
)

// Config describes one benchmark run. Build it with DefaultConfig and change fields;
// Run validates it.
type Config struct {
	// Workload is put, get or mixed. Default get.
	Workload Workload
	// ReadShare is the probability that an operation of the mixed workload is a read,
	// in [0, 1]. Default 0.9 (a read-mostly configuration store). Ignored otherwise.
	ReadShare float64
	// Concurrency is the number of workers, each with one operation in flight (a closed
	// loop: throughput is what the store sustains at this many outstanding requests).
	// Default 16.
	Concurrency int
	// Duration is how long operations are measured, after Warmup. Default 10s.
	Duration time.Duration
	// Warmup runs the workload unmeasured first, so that connections are open and caches
	// warm when measuring starts. Default 1s; 0 disables it.
	Warmup time.Duration
	// ValueSize is the size in bytes of every written value, 0 to MaxValueSize. Default 256.
	ValueSize int
	// KeyCount is the size of the key space; operations pick keys uniformly at random.
	// A small key space makes writes contend on the same keys. Default 10000.
	KeyCount int
	// KeyPrefix is put in front of every key (keys are KeyPrefix + a zero-padded
	// decimal index), so a run stays in its own subtree. Must not start with "/".
	// Default "wolke-bench/".
	KeyPrefix string
	// ReadMode is the consistency of reads. Default ReadDefault.
	ReadMode ReadMode
	// Seed makes the key and operation sequence reproducible: worker i draws from a
	// generator seeded with (Seed, i). Default 1.
	Seed uint64
	// Preload writes every key of the key space once before a workload that reads,
	// so reads find values. Turn it off when an earlier run already wrote them. Default true.
	Preload bool
	// PreloadConcurrency is the number of writers used by Preload, independent of
	// Concurrency so that loading does not take long at Concurrency 1. Default 64.
	PreloadConcurrency int
	// ProgressInterval is how often Run reports a Snapshot to its progress callback.
	// Default 1s.
	ProgressInterval time.Duration
	// Label names the system under test in results and tables (for example "wolke" or
	// "etcd"); free text, may be empty.
	Label string
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		Workload:           WorkloadGet,
		ReadShare:          0.9,
		Concurrency:        16,
		Duration:           10 * time.Second,
		Warmup:             time.Second,
		ValueSize:          256,
		KeyCount:           10_000,
		KeyPrefix:          "wolke-bench/",
		ReadMode:           ReadDefault,
		Seed:               1,
		Preload:            true,
		PreloadConcurrency: 64,
		ProgressInterval:   time.Second,
	}
}

// Validate reports every invalid field, one line each, or nil.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var w Workload
	if err := w.UnmarshalText([]byte(c.Workload)); err != nil || w != c.Workload {
		bad("workload %q: want put, get or mixed", c.Workload)
	}
	if c.Workload == WorkloadMixed && !(c.ReadShare >= 0 && c.ReadShare <= 1) {
		bad("read share %v: want a fraction between 0 and 1", c.ReadShare)
	}
	if c.Concurrency < 1 || c.Concurrency > MaxConcurrency {
		bad("concurrency %d: want 1 to %d", c.Concurrency, MaxConcurrency)
	}
	if c.Duration <= 0 {
		bad("duration %v: want more than 0", c.Duration)
	}
	if c.Warmup < 0 {
		bad("warm-up %v: want 0 or more", c.Warmup)
	}
	if c.ValueSize < 0 || c.ValueSize > MaxValueSize {
		bad("value size %d: want 0 to %d bytes", c.ValueSize, MaxValueSize)
	}
	if c.KeyCount < 1 || c.KeyCount > MaxKeyCount {
		bad("key count %d: want 1 to %d", c.KeyCount, MaxKeyCount)
	}
	if strings.HasPrefix(c.KeyPrefix, "/") {
		bad("key prefix %q: must not start with /", c.KeyPrefix)
	}
	if n := len(c.KeyPrefix) + keyDigits(c.KeyCount); n > MaxKeyLen {
		bad("key prefix of %d bytes: keys would be %d bytes, over the limit of %d", len(c.KeyPrefix), n, MaxKeyLen)
	}
	var m ReadMode
	if err := m.UnmarshalText([]byte(c.ReadMode)); err != nil || m != c.ReadMode {
		bad("read mode %q: want default, consistent or stale", c.ReadMode)
	}
	if c.Preload && c.Workload.reads() && (c.PreloadConcurrency < 1 || c.PreloadConcurrency > MaxConcurrency) {
		bad("preload concurrency %d: want 1 to %d", c.PreloadConcurrency, MaxConcurrency)
	}
	if c.ProgressInterval <= 0 {
		bad("progress interval %v: want more than 0", c.ProgressInterval)
	}
	return errors.Join(errs...)
}

// keyDigits is the width of the zero-padded key index.
func keyDigits(n int) int {
	return len(strconv.Itoa(max(n-1, 0)))
}

// Keys returns the key space of c in index order.
func (c Config) Keys() []string {
	width := keyDigits(c.KeyCount)
	keys := make([]string, c.KeyCount)
	buf := make([]byte, 0, len(c.KeyPrefix)+width)
	for i := range keys {
		buf = append(buf[:0], c.KeyPrefix...)
		n := strconv.Itoa(i)
		for range width - len(n) {
			buf = append(buf, '0')
		}
		buf = append(buf, n...)
		keys[i] = string(buf)
	}
	return keys
}
