package benchkv

import (
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, like HdrHistogram: values below 2^subBucketBits ns are
// counted exactly; above that, every power-of-two range is split into 2^subBucketBits
// equal buckets, so a bucket is never wider than 1/256 of the values in it (0.4%).
// That is exact enough for p99.9 and costs one array increment per sample, which keeps
// recording cheap enough to run on the same cores as the server under test.
const (
	subBucketBits  = 8
	subBucketCount = 1 << subBucketBits
	// maxValueBits bounds the trackable latency at 2^40 ns (about 18 minutes); longer
	// samples land in the last bucket, and Max still reports them exactly.
	maxValueBits = 40
	bucketCount  = (maxValueBits-subBucketBits)*subBucketCount + subBucketCount
)

// Histogram records latencies with bounded relative error. The zero value is not usable:
// create one with NewHistogram. A Histogram is not safe for concurrent use; give each
// goroutine its own and Merge them at the end.
type Histogram struct {
	counts []uint64
	total  uint64
	sum    int64
	min    int64
	max    int64
}

// NewHistogram returns an empty histogram (about 66 KiB).
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, bucketCount), min: math.MaxInt64}
}

func bucketIndex(v int64) int {
	if v < subBucketCount {
		return int(v)
	}
	if v >= 1<<maxValueBits {
		v = 1<<maxValueBits - 1
	}
	shift := bits.Len64(uint64(v)) - subBucketBits - 1
	return shift*subBucketCount + int(v>>shift)
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < subBucketCount {
		return int64(i)
	}
	shift := i/subBucketCount - 1
	mant := int64(i - shift*subBucketCount)
	return (mant+1)<<shift - 1
}

// Record adds one sample; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketIndex(v)]++
	h.total++
	h.sum += v
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds all samples of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset empties the histogram without giving back its memory.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.total, h.sum, h.min, h.max = 0, 0, math.MaxInt64, 0
}

// Count is the number of samples recorded.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the exact largest sample, 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the exact smallest sample, 0 when empty.
func (h *Histogram) Min() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.min)
}

// Mean is the exact mean of the samples, 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / int64(h.total))
}

// Quantile returns the sample at rank ceil(q·n) in sorted order, to within the bucket
// width. It reports the top of the bucket (clamped to the exact min and max), so a
// percentile is never understated. q is clamped to [0, 1]; an empty histogram gives 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank && i < bucketCount-1 {
			return time.Duration(min(max(bucketHigh(i), h.min), h.max))
		}
	}
	// The last bucket also holds every sample beyond the tracked range.
	return time.Duration(h.max)
}
