// Package gossipsim answers "how long until every node has heard it?" for memberlist's
// gossip, in three ways that check each other:
//
//   - Model: Serf's closed-form mean-field curve, I(x) = n / (1 + (n+1)·e^(−c·x)) with
//     c = ½·fanout·(1−loss)·(1−failed). Instant, but blind to the retransmit limit and to
//     stragglers.
//   - Simulate: a seeded Monte-Carlo of memberlist's own dissemination: unsynchronised
//     gossip ticks, fanout distinct random peers per tick, a per-node transmit budget of
//     RetransmitMult·⌈log10(n+1)⌉, packet loss and crashed-but-undetected nodes.
//   - Measure: a pool of real memberlist instances on loopback behind a lossy transport,
//     timing one user broadcast to every node.
//
// All three report the time until 50 %, 90 %, 99 %, 99.99 % and 100 % of the live nodes
// have the broadcast, a convergence curve and a bandwidth figure, as a [Result].
package gossipsim
