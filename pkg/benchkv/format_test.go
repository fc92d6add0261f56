package benchkv

import "testing"

func TestMedianRounds(t *testing.T) {
	r := func(label string, w Workload, c int, ops float64) Result {
		return Result{Label: label, Workload: w, ReadMode: ReadDefault, Concurrency: c, OpStats: OpStats{OpsPerSec: ops}}
	}
	in := []Result{
		r("wolke", WorkloadPut, 64, 300), r("etcd", WorkloadPut, 64, 10),
		r("wolke", WorkloadPut, 64, 100), r("etcd", WorkloadPut, 64, 30),
		r("wolke", WorkloadPut, 64, 200), r("etcd", WorkloadPut, 64, 20),
		r("wolke", WorkloadGet, 64, 5), r("wolke", WorkloadPut, 256, 7), r("wolke", WorkloadPut, 256, 9),
	}
	got := MedianRounds(in)
	want := []struct {
		label string
		w     Workload
		c     int
		ops   float64
	}{{"wolke", WorkloadPut, 64, 200}, {"etcd", WorkloadPut, 64, 20}, {"wolke", WorkloadGet, 64, 5}, {"wolke", WorkloadPut, 256, 7}}
	if len(got) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Label != w.label || got[i].Workload != w.w || got[i].Concurrency != w.c || got[i].OpsPerSec != w.ops {
			t.Errorf("row %d = %s %s c=%d %.0f, want %s %s c=%d %.0f", i, got[i].Label, got[i].Workload, got[i].Concurrency, got[i].OpsPerSec, w.label, w.w, w.c, w.ops)
		}
	}
}
