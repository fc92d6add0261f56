// Package state is wolke's replicated state: a go-memdb database that only the Raft FSM
// writes to. Every write carries the Raft log index that produced it, which becomes the
// CreateIndex/ModifyIndex of the objects it touches and the X-Consul-Index of reads.
//
// The package is pure: no network, no clock reads, no logging, so the same sequence of
// writes always produces the same state on every server, and tests drive it directly.
//
// Reads take an optional memdb.WatchSet; the channels added to it close when the data the
// read depended on changes, which is what blocking queries wait on. Watches are as narrow
// as the radix tree allows (a key, a prefix), so a write under "a/" does not wake readers
// of "b/".
package state
