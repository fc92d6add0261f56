package gossipsim

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// Params describes a gossip pool and its network. The zero value is not useful; start
// from [DefaultParams] so that only the fields under study differ from the agent.
type Params struct {
	// Nodes is the pool size, failed nodes included, since memberlist sizes its
	// retransmit limit by every member it has not yet declared dead.
	Nodes int

	// Interval is memberlist's GossipInterval: how often each node sends its queued
	// broadcasts. Default 200ms. Halving it halves every convergence time and doubles
	// the gossip bandwidth.
	Interval time.Duration

	// Fanout is memberlist's GossipNodes: distinct random peers per gossip tick.
	// Default 3. More peers converge in fewer ticks, at proportionally more bandwidth.
	Fanout int

	// RetransmitMult is memberlist's RetransmitMult: a node passes a broadcast on at
	// most RetransmitMult·⌈log10(n+1)⌉ times. Default 4. Too low leaves stragglers that
	// only the 30 s push/pull repairs; too high wastes packets after convergence.
	RetransmitMult int

	// Loss is the probability that one UDP packet is lost, in [0, 1).
	Loss float64

	// Failed is the share of nodes that have crashed but are not yet detected, in
	// [0, 1): peers still gossip to them, so every packet to them is wasted.
	Failed float64

	// PacketBytes is memberlist's UDPBufferSize, used for the bandwidth figures of the
	// model and the simulation (a full gossip packet). Default 1400.
	PacketBytes int
}

// DefaultParams returns the agent's gossip settings (memberlist's LAN defaults) for a
// pool of 50 nodes on a lossless network.
func DefaultParams() Params {
	return FromMemberlist(memberlist.DefaultLANConfig(), 50)
}

// FromMemberlist takes the gossip settings from a memberlist configuration, so that
// whatever the agent configures is what gets simulated.
func FromMemberlist(c *memberlist.Config, nodes int) Params {
	return Params{
		Nodes:          nodes,
		Interval:       c.GossipInterval,
		Fanout:         c.GossipNodes,
		RetransmitMult: c.RetransmitMult,
		PacketBytes:    c.UDPBufferSize,
	}
}

// ParamError reports one out-of-range parameter. Param is the parameter's name as the
// CLI spells its flag, so the CLI can point at what to fix.
type ParamError struct {
	Param  string
	Value  any
	Reason string
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("gossipsim: %s %v: %s", e.Param, e.Value, e.Reason)
}

// MaxNodes bounds Nodes so that a typo cannot ask for more memory than a machine has
// (the simulation needs about 30 bytes per node per worker).
const MaxNodes = 10_000_000

// Validate reports the first parameter out of range, as a *ParamError.
func (p Params) Validate() error {
	switch {
	case p.Nodes < 1 || p.Nodes > MaxNodes:
		return &ParamError{"nodes", p.Nodes, fmt.Sprintf("must be between 1 and %d", MaxNodes)}
	case p.Interval < time.Millisecond:
		return &ParamError{"interval", p.Interval, "must be at least 1ms"}
	case p.Fanout < 1:
		return &ParamError{"fanout", p.Fanout, "must be at least 1"}
	case p.RetransmitMult < 1:
		return &ParamError{"retransmit-mult", p.RetransmitMult, "must be at least 1"}
	case !(p.Loss >= 0 && p.Loss < 1): // also refuses NaN
		return &ParamError{"loss", p.Loss, "must be a fraction in [0, 1), e.g. 0.1 for 10 %"}
	case !(p.Failed >= 0 && p.Failed < 1):
		return &ParamError{"failed", p.Failed, "must be a fraction in [0, 1), e.g. 0.1 for 10 %"}
	case p.live() < 1:
		return &ParamError{"failed", p.Failed, fmt.Sprintf("leaves no live node out of %d", p.Nodes)}
	case p.PacketBytes < 1:
		return &ParamError{"packet-bytes", p.PacketBytes, "must be at least 1"}
	}
	return nil
}

// failedCount is the number of failed nodes: Failed·Nodes rounded to the nearest node.
func (p Params) failedCount() int {
	return int(math.Round(p.Failed * float64(p.Nodes)))
}

func (p Params) live() int { return p.Nodes - p.failedCount() }

// RetransmitLimit is how often one node passes a broadcast on, memberlist's
// retransmitLimit: RetransmitMult·⌈log10(n+1)⌉.
func (p Params) RetransmitLimit() int {
	return p.RetransmitMult * int(math.Ceil(math.Log10(float64(p.Nodes+1))))
}
