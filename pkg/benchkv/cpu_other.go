//go:build !unix

package benchkv

// processCPU is not measured on this platform; results then show no client CPU.
func processCPU() cpuTime { return cpuTime{} }
