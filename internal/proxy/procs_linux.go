//go:build linux

package proxy

import (
	"os"
	"runtime"
	"sync"
)

// A busy loop waits for events in a system call the runtime does not know of, so
// it keeps its P (the runtime's right to run Go code) while the thread sleeps in
// the kernel. Told of the call, the runtime's monitor would take the P away within
// 20 µs of the thread sleeping and wake another thread to look for work; on a
// gateway at 50,000 requests a second that churn was half of the process's context
// switches and a sixth of its CPU. The loops' Ps are added to GOMAXPROCS
// for as long as the loops live, so that the rest of the program keeps as many as
// it had.
var loopProcs struct {
	sync.Mutex
	held int // Ps added for live loops
}

// holdProcs adds a P for each of the loops an engine starts, and returns how many
// loops to start: one per P the program had without any loops.
func holdProcs() int {
	loopProcs.Lock()
	defer loopProcs.Unlock()
	cur := runtime.GOMAXPROCS(0)
	n := max(cur-loopProcs.held, 1)
	loopProcs.held += n
	runtime.GOMAXPROCS(cur + n)
	return n
}

// releaseProcs gives back the Ps of n loops that have ended.
func releaseProcs(n int) {
	loopProcs.Lock()
	defer loopProcs.Unlock()
	loopProcs.held -= n
	if loopProcs.held == 0 && os.Getenv("GOMAXPROCS") == "" {
		// Back to the runtime's own choice, which follows the CPU limit.
		runtime.SetDefaultGOMAXPROCS()
		return
	}
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0)-n, 1))
}
