// Package twopc is a two-phase commit over HTTP between chassis services, with its
// decision log in the KV store: one outcome, commit or abort, applied by every
// participant of a transaction, whatever crashes in between.
//
// The shop's checkout uses it: orders coordinates, inventory reserves the stock,
// payments authorizes the amount, orders writes the pending order
// (examples/shop/README.md, "Checkout: a two-phase commit").
//
// # Pieces
//
//   - Coordinator.Run(ctx, txid, branches) runs one transaction and returns its
//     Outcome: committed, or aborted with the reason and every vote, so that a caller
//     can tell "out of stock" (a Refusal with its code and data) from "declined".
//   - Participant is what a service implements (Prepare, Commit, Abort, Prepared);
//     Ledger implements the bookkeeping for a participant whose state is in the KV
//     store, atomically with the participant's own keys.
//   - Server mounts a Participant's endpoints (POST <url>/prepare, /commit, /abort)
//     and resolves its in-doubt transactions (Resolve, Start).
//   - Coordinator.Recover finishes what crashed coordinators left; Coordinator.Start
//     runs it on the instance that holds the lock <prefix>leader (chassis Elect).
//   - Hooks inject a crash at each step, for tests.
//
// # The protocol
//
// The log is one KV key per transaction, <prefix><txid> (prefix "twopc/"), a JSON
// Record. Every change of it is a CAS on the key's ModifyIndex, so concurrent writers
// (a coordinator, a recovering leader, a participant in doubt) cannot both succeed:
//
//	(none) ──create──▶ preparing ──CAS──▶ commit ──CAS──▶ done (decision kept)
//	                        └─────CAS──▶ abort  ──CAS──▶ done
//
// Step by step:
//
//  1. The coordinator writes preparing with the participants, their URLs and the
//     SHA-256 of each one's payload, and a deadline (now + PrepareTimeout). Only then
//     does it ask them to prepare, in parallel.
//  2. A participant's Server accepts a prepare only for a transaction the log lists as
//     preparing, naming it, with that payload, before the deadline. The participant
//     persists its prepared state (the reservation, the authorization) and then votes
//     yes; a Refusal is a no with a reason; a failure or no answer within
//     PrepareTimeout counts as no.
//  3. All yes: the coordinator writes commit, else abort with the reason, by a CAS from
//     preparing. This write is the decision: before it, the transaction can only
//     abort; after it, nothing changes the outcome.
//  4. The coordinator sends the decision to the participants, one after the other (an
//     abort skips those that refused: they hold nothing). A participant's Server
//     applies a commit or abort only if the log holds that decision. When every
//     participant has acknowledged, the coordinator writes done.
//
// Recovery finishes what a crash interrupted:
//
//   - Coordinator.Recover (run by the leader, every second by default) re-sends every
//     decision older than ResendAfter and marks it done once all acknowledged, and
//     turns preparing records past their deadline into abort (presumed abort).
//   - Server.Resolve (run by every instance of a participant) looks up each
//     transaction it has held prepared for longer than InDoubtAfter: it applies the
//     logged decision; a preparing record past its deadline it first turns into abort
//     itself, by the same CAS; a missing record means abort.
//
// Both paths are needed only for liveness, and each suffices on its own for the
// participants: the Server's resolution does not need a live coordinator, Recover
// does not need the participant to ask.
//
// # Guarantees
//
// As long as the KV store is linearizable (a Raft majority) and participants keep
// their contract (persist before voting yes, idempotent Commit and Abort):
//
//   - One outcome: a transaction is decided once, by the CAS that takes the record
//     from preparing; every later writer reads the decision and follows it. A
//     coordinator that finds the record decided by someone else (a presumed abort)
//     reports that decision.
//   - Commit only with every yes: commit is written only after all participants voted
//     yes, so every participant holds a persisted prepared state it can commit.
//   - No decision applied that is not logged: the endpoints check the log, and the
//     recovery paths act only on it; so a stale, duplicated or forged message cannot
//     commit or abort anything by itself (the endpoints may be public).
//   - Every prepared participant resolves, once the log is reachable: within about
//     InDoubtAfter after the deadline through its own Resolve, or when the leader's
//     Recover re-sends the decision.
//
// Fencing needs no token: the lock only picks who spends the effort of recovering; a
// deposed leader that still acts does so by CAS on the log and by idempotent messages.
//
// # The blocking window, honestly
//
// Between a participant's yes and the moment the decision reaches it, its prepared
// state is held: the stock is reserved and nobody else can buy it, the amount is
// authorized. Normally that is one round trip. If the coordinator dies in between:
//
//   - after the decision was logged, the leader re-sends it within ResendAfter plus a
//     Recover interval (about 6 s with the defaults), or the participant finds it
//     after InDoubtAfter (10 s) on its own;
//   - before the decision, nobody may decide commit on the coordinator's behalf; the
//     transaction aborts once its deadline (PrepareTimeout, 5 s) has passed, by the
//     leader or by the participant itself. A new leader needs its election first: a
//     crashed leader's lock is free within a check interval plus the lock delay (1 s).
//
// If the KV store itself is unavailable (no Raft majority), nothing can be decided
// and prepared participants stay blocked until it returns: that is the cost of "one
// outcome, never oversold", consistency over availability (CAP's C). Checkouts fail
// meanwhile (Run returns an error: the outcome is not known to the caller, recovery
// settles it later), while the parts of a system that choose availability (catalog
// reads, cached pages) carry on. Two-phase commit is worth it where an inconsistent
// outcome costs more than a refused request: selling stock twice, charging without an
// order.
//
// What it does not do: a participant that loses its persisted state breaks the
// protocol (it must not vote yes before persisting); clocks are compared with
// deadlines (a participant whose clock runs far ahead presumes abort early, which is
// safe but refuses transactions that could have committed); the log grows unless
// Retention is set (a done record is no longer needed by anyone).
//
// # Costs
//
// A transaction of n participants writes the log three times (preparing, decision,
// done) and reads it twice per participant (at prepare and at the decision), plus the
// participants' own writes (with Ledger: one KV transaction to prepare and one to
// commit or abort). Messages: n prepares in parallel, then n decisions in sequence.
package twopc
