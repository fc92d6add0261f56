//go:build race

package proxy

// raceEnabled loosens timing bounds: the race detector slows every request.
const raceEnabled = true
