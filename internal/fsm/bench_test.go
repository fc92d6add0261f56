package fsm

import (
	"strconv"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/wolke-platform/wolke/internal/command"
)

// BenchmarkApplyBatch applies puts of 256-byte values over 10,000 keys in batches of
// 64, as the leader's FSM sees them under load; one op is one entry.
func BenchmarkApplyBatch(b *testing.B) {
	f := newFSM(b)
	value := string(make([]byte, 256))
	const batch, keys = 64, 10000
	logs := make([][]*raft.Log, keys/batch)
	idx := uint64(0)
	for i := range logs {
		for j := 0; j < batch; j++ {
			idx++
			logs[i] = append(logs[i], logOf(b, idx, command.KVS,
				kv(command.KVSet, "bench/key-"+strconv.Itoa(i*batch+j), value, 0)))
		}
	}
	for _, l := range logs { // every key exists: puts overwrite, as in a steady load
		f.ApplyBatch(l)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		l := logs[(n/batch)%len(logs)]
		for _, e := range l {
			idx++
			e.Index = idx
		}
		f.ApplyBatch(l)
	}
}
