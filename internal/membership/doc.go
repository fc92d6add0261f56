// Package membership is the LAN gossip pool every wolke agent joins: a thin wrapper
// around hashicorp/serf (itself on memberlist: SWIM failure detection with the Lifeguard
// extensions, using memberlist.DefaultLANConfig timing unless told otherwise).
//
// Serf gives Consul's member model unchanged: statuses alive, leaving, left and failed
// with Consul's numbers (see Status), free-form tags (the agent puts role, datacenter,
// Raft ID and RPC port there; see the Tag constants), Lamport-clocked user events,
// force-leave, periodic reconnection to failed members and a snapshot file that lets a
// restarted agent rejoin its old peers without -join.
//
// # Lifecycle
//
// New listens and starts gossip at once; Join (or Config.RetryJoin in the background)
// contacts a member of the pool. Leave broadcasts a graceful departure (others then see
// StatusLeft); Shutdown stops everything without telling anyone (others then see
// StatusFailed, as after a crash). The usual stop is Leave then Shutdown.
//
// # Events and reconciliation
//
// Events delivers one Event per member change (join, leave, failed, update, reap, in the
// order serf saw them) and user events. The channel is bounded (Config.EventBuffer) and
// never blocks gossip: when the consumer falls behind, further events are dropped and
// counted in Stats()["events_dropped"]. Events are therefore hints, not a log. A consumer
// that maintains derived state (the agent adding and removing Raft servers, the catalog
// registering and deregistering nodes) must reconcile from Members() — on every event
// and on a periodic timer, as Consul's leader does every 60 seconds — and treat each
// event only as a reason to reconcile sooner. Members() is always complete: it includes
// failed and left members until serf reaps them (Config.ReconnectTimeout and
// Config.TombstoneTimeout).
//
// # Unique names
//
// Member names are unique. A node that joins a pool where an alive member already uses
// its name gets an error wrapping ErrNameConflict from Join (checked during the join's
// state exchange, before anything is merged). If two pools that each hold the name merge
// later, serf's conflict resolution asks the pool which address owns the name; the
// losing node stops gossiping, logs why, and closes its Events channel.
package membership
