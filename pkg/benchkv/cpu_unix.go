//go:build unix

package benchkv

import (
	"syscall"
	"time"
)

// processCPU is the user and system CPU time this process has used so far. The bench
// client usually shares the machine with the server it measures, so what the client
// itself costs per operation belongs in the result.
func processCPU() cpuTime {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuTime{}
	}
	return cpuTime{
		user: time.Duration(ru.Utime.Nano()),
		sys:  time.Duration(ru.Stime.Nano()),
		ok:   true,
	}
}
