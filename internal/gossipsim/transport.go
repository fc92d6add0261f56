package gossipsim

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// errSilenced is what a crashed node's streams get: a dial that cannot connect.
var errSilenced = errors.New("gossipsim: node is silenced (simulated crash)")

// lossyNet is the switchboard shared by a pool's transports: the loss rate, which nodes
// are silenced, and who is at which address.
type lossyNet struct {
	lossCut atomic.Uint64 // a packet is lost when a uniform uint64 falls below lossCut

	mu     sync.RWMutex
	byAddr map[string]*lossyTransport
}

func newLossyNet() *lossyNet {
	return &lossyNet{byAddr: make(map[string]*lossyTransport)}
}

func (n *lossyNet) setLoss(p float64) { n.lossCut.Store(uint64(p * (1 << 64))) }

func (n *lossyNet) add(t *lossyTransport) {
	n.mu.Lock()
	n.byAddr[t.addr] = t
	n.mu.Unlock()
}

func (n *lossyNet) lookup(addr string) *lossyTransport {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.byAddr[addr]
}

// lossyTransport is memberlist's NetTransport with a loss model on the packet path:
// each UDP packet is dropped with the pool's loss probability, and a silenced node
// neither sends nor receives, on packets or streams. Streams are otherwise reliable,
// as TCP is. It counts the bytes that leave and arrive, for the bandwidth figure.
type lossyTransport struct {
	*memberlist.NetTransport
	net      *lossyNet
	addr     string
	silenced atomic.Bool
	sent     atomic.Uint64 // bytes
	received atomic.Uint64
	packets  atomic.Uint64 // sent plus received
}

var _ memberlist.NodeAwareTransport = (*lossyTransport)(nil)

// deliver reports whether a packet of size bytes to addr gets through, and counts it.
func (t *lossyTransport) deliver(addr string, size int) bool {
	if t.silenced.Load() {
		return false
	}
	t.sent.Add(uint64(size))
	t.packets.Add(1)
	dst := t.net.lookup(addr)
	if dst == nil || dst.silenced.Load() || rand.Uint64() < t.net.lossCut.Load() {
		return false
	}
	dst.received.Add(uint64(size))
	dst.packets.Add(1)
	return true
}

// A dropped packet still reports success: UDP gives the sender no sign of loss.

func (t *lossyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if !t.deliver(addr, len(b)) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *lossyTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if !t.deliver(a.Addr, len(b)) {
		return time.Now(), nil
	}
	return t.NetTransport.WriteToAddress(b, a)
}

func (t *lossyTransport) reachable(addr string) bool {
	if t.silenced.Load() {
		return false
	}
	dst := t.net.lookup(addr)
	return dst == nil || !dst.silenced.Load()
}

func (t *lossyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if !t.reachable(addr) {
		return nil, errSilenced
	}
	return t.NetTransport.DialTimeout(addr, timeout)
}

func (t *lossyTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if !t.reachable(a.Addr) {
		return nil, errSilenced
	}
	return t.NetTransport.DialAddressTimeout(a, timeout)
}
