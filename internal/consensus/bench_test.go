package consensus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wolke-platform/wolke/internal/command"
	"github.com/wolke-platform/wolke/internal/state"
)

// BenchmarkApplyConcurrent measures replicated writes on a durable single server
// without HTTP in front: 64 concurrent writers, so Raft batches their fsyncs.
func BenchmarkApplyConcurrent(b *testing.B) {
	for _, batch := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("batch-%d", batch), func(b *testing.B) {
			s := startServer(b, b.TempDir(), func(c *Config) { c.MaxAppendEntries = batch })
			defer s.node.Shutdown()
			val := make([]byte, 256)
			var n atomic.Int64
			var wg sync.WaitGroup
			const writers = 256
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; n.Add(1) <= int64(b.N); i++ {
						cmd, _ := command.Encode(command.KVS, &command.KVSRequest{Op: command.KVSet,
							Entry: state.KVEntry{Key: fmt.Sprintf("w%d/%d", w, i%1000), Value: val}})
						if _, _, err := s.node.Apply(context.Background(), cmd); err != nil {
							b.Error(err)
							return
						}
					}
				}(w)
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
		})
	}
}
