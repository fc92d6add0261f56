package benchkv

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistogramQuantilesMatchSortedSamples(t *testing.T) {
	tests := []struct {
		name   string
		sample func(r *rand.Rand) time.Duration
		n      int
	}{
		{"small exact values", func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(256)) }, 1000},
		{"uniform 0-10ms", func(r *rand.Rand) time.Duration { return time.Duration(r.Int64N(int64(10 * time.Millisecond))) }, 100_000},
		{"log-normal around 1ms", func(r *rand.Rand) time.Duration {
			return time.Duration(math.Exp(r.NormFloat64()*1.5) * float64(time.Millisecond))
		}, 200_000},
		{"bimodal with rare 1s outliers", func(r *rand.Rand) time.Duration {
			if r.IntN(2000) == 0 {
				return time.Second + time.Duration(r.IntN(1e6))
			}
			return 50*time.Microsecond + time.Duration(r.IntN(20_000))
		}, 100_000},
		{"single sample", func(*rand.Rand) time.Duration { return 1234567 * time.Nanosecond }, 1},
		{"beyond the tracked range", func(r *rand.Rand) time.Duration { return time.Hour + time.Duration(r.IntN(1000)) }, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			h := NewHistogram()
			samples := make([]time.Duration, tt.n)
			for i := range samples {
				samples[i] = tt.sample(r)
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.001, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := max(int(math.Ceil(q*float64(len(samples)))), 1)
				want := samples[rank-1]
				got := h.Quantile(q)
				tolerance := time.Duration(float64(want) / subBucketCount)
				if want >= 1<<maxValueBits {
					tolerance = want // only Max is exact out there
				}
				if got < want || got > want+tolerance {
					t.Errorf("Quantile(%v) = %v, want %v (+%v)", q, got, want, tolerance)
				}
			}
			if h.Count() != uint64(tt.n) || h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
				t.Errorf("count/min/max = %d/%v/%v, want %d/%v/%v", h.Count(), h.Min(), h.Max(), tt.n, samples[0], samples[len(samples)-1])
			}
			var sum time.Duration
			for _, s := range samples {
				sum += s
			}
			if want := sum / time.Duration(len(samples)); h.Mean() != want {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
		})
	}
}

func TestHistogramMergeEqualsOneHistogram(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	whole := NewHistogram()
	parts := []*Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	for i := range 30_000 {
		d := time.Duration(r.Int64N(int64(time.Second)))
		whole.Record(d)
		parts[i%len(parts)].Record(d)
	}
	merged := NewHistogram()
	merged.Merge(NewHistogram()) // an empty part must not disturb min
	for _, p := range parts {
		merged.Merge(p)
	}
	for _, q := range []float64{0, 0.5, 0.99, 0.999, 1} {
		if merged.Quantile(q) != whole.Quantile(q) {
			t.Errorf("Quantile(%v): merged %v, whole %v", q, merged.Quantile(q), whole.Quantile(q))
		}
	}
	if merged.Count() != whole.Count() || merged.Min() != whole.Min() || merged.Max() != whole.Max() || merged.Mean() != whole.Mean() {
		t.Errorf("merged count/min/max/mean differ from the whole")
	}
	merged.Reset()
	if merged.Count() != 0 || merged.Quantile(0.5) != 0 || merged.Min() != 0 || merged.Max() != 0 {
		t.Errorf("Reset left samples behind")
	}
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	// Every value must fall into a bucket whose upper bound is at least the value and
	// whose predecessor ends just below it.
	for v := int64(0); v < 1<<22; v += 1 + v/1000 {
		i := bucketIndex(v)
		if bucketHigh(i) < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, i, bucketHigh(i-1)+1, bucketHigh(i))
		}
	}
	if got := bucketIndex(1<<maxValueBits - 1); got != bucketCount-1 {
		t.Fatalf("largest tracked value in bucket %d, want the last, %d", got, bucketCount-1)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	for i := range b.N {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}
