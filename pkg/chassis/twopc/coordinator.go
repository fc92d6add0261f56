package twopc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/wolke-platform/wolke/pkg/chassis"
)

// Branch is one participant's part in a transaction: who, where, and what to prepare.
type Branch struct {
	// Name is the participant's name: its Server's Name.
	Name string
	// URL is the base URL of the participant's endpoints ("http://inventory/twopc"):
	// the coordinator posts to URL+"/prepare", "/commit" and "/abort".
	URL string
	// Payload is what the participant prepares, sent as JSON (a json.RawMessage as it is).
	Payload any
}

// Vote is a participant's answer to prepare.
type Vote struct {
	Participant string
	Yes         bool
	Refusal     *Refusal // a reasoned no (out of stock, declined)
	Err         error    // no usable answer: a timeout, a transport error, a 5xx
}

// Outcome is how a transaction ended.
type Outcome struct {
	TxID      string
	Committed bool
	// Reason says why it aborted: the first refusal or failure in the order of the
	// branches, or the presumed abort of someone who found no decision in time.
	Reason string
	// Votes are the participants' answers, in the order of the branches.
	Votes []Vote
	// Done: every participant acknowledged the decision and the log says done. When
	// false, the decision stands and recovery delivers it.
	Done bool
}

// Refused returns the refusal of the named participant, or with name "" the first
// refusal of any; nil if there is none.
func (o *Outcome) Refused(name string) *Refusal {
	for _, v := range o.Votes {
		if v.Refusal != nil && (name == "" || v.Participant == name) {
			return v.Refusal
		}
	}
	return nil
}

// Coordinator runs transactions and recovers the unfinished ones of the log. Set the
// fields before first use and do not change them afterwards. All methods are safe for
// concurrent use, by several coordinators on the same log too.
type Coordinator struct {
	// Consul reaches the KV store holding the decision log. Required (Start takes the
	// instance's when nil).
	Consul *api.Client
	// Client sends the messages to the participants: a chassis client, so that
	// http://<service>/ URLs find instances. Default http.DefaultClient (Start takes
	// the instance's).
	Client *http.Client
	// Prefix is the log's KV prefix; default DefaultPrefix ("twopc/").
	Prefix string
	// PrepareTimeout bounds the prepare phase: votes not in by then count as no, and a
	// record still preparing after it may be aborted by anyone (presumed abort).
	// Default 5s.
	PrepareTimeout time.Duration
	// ResendAfter: Recover re-sends a decision once it is this old (younger ones are
	// still being delivered by their coordinator). Default PrepareTimeout.
	ResendAfter time.Duration
	// Retention: Recover removes done records this long after their decision; 0 keeps
	// them.
	Retention time.Duration
	// Name is recorded in the log as the coordinator of the transactions it begins.
	Name string
	// Hooks inject faults (tests).
	Hooks *Hooks
	// Now is the clock of the log's times (created, deadline, decided); default
	// time.Now. Tests move it forward instead of waiting for a deadline.
	Now func() time.Time
	// Logger; default slog.Default() (Start takes the instance's when nil).
	Logger *slog.Logger

	once sync.Once
	log  *kvLog
}

func (c *Coordinator) init() {
	c.once.Do(func() {
		if c.Consul == nil {
			panic("twopc: Coordinator needs Consul")
		}
		c.log = newLog(c.Consul, c.Prefix)
		if c.Client == nil {
			c.Client = http.DefaultClient
		}
		if c.PrepareTimeout <= 0 {
			c.PrepareTimeout = 5 * time.Second
		}
		if c.ResendAfter <= 0 {
			c.ResendAfter = c.PrepareTimeout
		}
		if c.Logger == nil {
			c.Logger = slog.Default()
		}
		if c.Now == nil {
			c.Now = time.Now
		}
	})
}

// Run executes the transaction txid over the branches and returns its outcome:
//
//  1. it writes the record preparing, with the participants and their payloads'
//     digests (ErrExists if txid is taken);
//  2. it asks every participant to prepare, in parallel, within PrepareTimeout;
//  3. all yes: it writes commit, else abort with the reason, by a CAS from preparing
//     (if someone presumed abort first, that decision is the outcome);
//  4. it sends the decision to the participants one after the other (an abort skips
//     those that refused: they hold nothing) and, if every one acknowledged, writes
//     done.
//
// An error means the outcome is not known to the caller: the log could not be
// written, or a hook simulated a crash. The transaction is then finished by recovery
// (Recover, or the participants' Resolve), to commit if the commit was logged,
// otherwise to abort. Once the votes are in, the decision is written and delivered
// even if ctx ends (within PrepareTimeout more).
func (c *Coordinator) Run(ctx context.Context, txid string, branches []Branch) (*Outcome, error) {
	c.init()
	if err := validTxID(txid); err != nil {
		return nil, err
	}
	if len(branches) == 0 {
		return nil, errors.New("twopc: a transaction needs participants")
	}
	members := make([]Member, len(branches))
	bodies := make([][]byte, len(branches))
	seen := map[string]bool{}
	for i, b := range branches {
		if b.Name == "" || b.URL == "" || seen[b.Name] {
			return nil, fmt.Errorf("twopc: branch %d: a unique name and a URL are required", i)
		}
		seen[b.Name] = true
		payload, err := json.Marshal(b.Payload)
		if err != nil {
			return nil, fmt.Errorf("twopc: payload of %s: %w", b.Name, err)
		}
		body, err := json.Marshal(prepareRequest{TxID: txid, Participant: b.Name, Payload: payload})
		if err != nil {
			return nil, err
		}
		members[i] = Member{Name: b.Name, URL: strings.TrimSuffix(b.URL, "/"), Digest: digest(payload)}
		bodies[i] = body
	}
	now := c.Now()
	e, err := c.log.create(ctx, Record{
		TxID: txid, State: Preparing, Participants: members, Coordinator: c.Name,
		Created: now, Deadline: now.Add(c.PrepareTimeout),
	})
	if err != nil {
		return nil, err
	}
	if err := c.Hooks.afterBegin(txid); err != nil {
		return nil, crashed("after begin", err)
	}

	votes := c.prepareAll(ctx, e.Record, bodies)
	decision, reason := Commit, ""
	for _, v := range votes {
		if v.Yes {
			continue
		}
		decision = Abort
		if v.Refusal != nil {
			reason = v.Refusal.Error()
		} else {
			reason = fmt.Sprintf("%s did not vote: %v", v.Participant, v.Err)
		}
		break
	}
	if err := c.Hooks.beforeDecision(txid, decision); err != nil {
		return nil, crashed("before decision", err)
	}
	// The decision and its delivery no longer depend on the caller waiting.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.PrepareTimeout)
	defer cancel()
	e, _, err = c.log.transition(ctx, e, decision, reason, c.Now())
	if err != nil {
		return nil, fmt.Errorf("twopc: %s: writing the decision %s (the outcome is in doubt; recovery settles it): %w", txid, decision, err)
	}
	if e.Decision != decision {
		c.Logger.InfoContext(ctx, "twopc: decided by someone else", "txid", txid, "ours", string(decision), "logged", string(e.Decision), "reason", e.Reason)
	}
	out := &Outcome{TxID: txid, Committed: e.Decision == Commit, Reason: e.Reason, Votes: votes, Done: e.State == Done}
	if err := c.Hooks.afterDecision(txid, e.Decision); err != nil {
		return nil, crashed("after decision", err)
	}
	if out.Done {
		return out, nil // someone else decided and finished it
	}
	skip := map[string]bool{}
	if e.Decision == Abort {
		for _, v := range votes {
			skip[v.Participant] = v.Refusal != nil
		}
	}
	acked, err := c.deliver(ctx, e.Record, skip, true)
	if err != nil {
		return nil, err
	}
	if acked {
		if _, _, err := c.log.transition(ctx, e, Done, "", c.Now()); err == nil {
			out.Done = true
		} else {
			c.Logger.WarnContext(ctx, "twopc: marking done", "txid", txid, "error", err.Error())
		}
	}
	return out, nil
}

// crashed wraps a hook's error.
func crashed(step string, err error) error {
	return fmt.Errorf("twopc: crash injected %s: %w", step, err)
}

// prepareAll asks every participant to prepare, in parallel, within PrepareTimeout.
func (c *Coordinator) prepareAll(ctx context.Context, r Record, bodies [][]byte) []Vote {
	ctx, cancel := context.WithTimeout(ctx, c.PrepareTimeout)
	defer cancel()
	votes := make([]Vote, len(r.Participants))
	var wg sync.WaitGroup
	for i, m := range r.Participants {
		wg.Go(func() {
			votes[i] = c.prepare(ctx, r.TxID, m, bodies[i])
		})
	}
	wg.Wait()
	return votes
}

func (c *Coordinator) prepare(ctx context.Context, txid string, m Member, body []byte) Vote {
	v := Vote{Participant: m.Name}
	var resp voteResponse
	if err := c.post(ctx, m.URL+"/prepare", txid+"/"+m.Name+"/prepare", body, &resp); err != nil {
		v.Err = err
		return v
	}
	switch resp.Vote {
	case "yes":
		v.Yes = true
	case "no":
		v.Refusal = resp.Refusal
		if v.Refusal == nil {
			v.Refusal = &Refusal{Code: "refused", Reason: "no reason given"}
		}
		v.Refusal.Participant = m.Name
	default:
		v.Err = fmt.Errorf("%s: unknown vote %q", m.Name, resp.Vote)
	}
	return v
}

// deliver sends the record's decision to every participant not in skip, one after the
// other, and reports whether all acknowledged. With hooks, AfterApply runs after each
// acknowledgement and its error (a crash) is returned.
func (c *Coordinator) deliver(ctx context.Context, r Record, skip map[string]bool, hooks bool) (bool, error) {
	d := r.Decision
	acked := true
	for _, m := range r.Participants {
		if skip[m.Name] {
			continue
		}
		body, _ := json.Marshal(decisionRequest{TxID: r.TxID, Participant: m.Name})
		var resp decisionResponse
		if err := c.post(ctx, m.URL+"/"+string(d), r.TxID+"/"+m.Name+"/"+string(d), body, &resp); err != nil {
			acked = false
			c.Logger.WarnContext(ctx, "twopc: decision not delivered", "txid", r.TxID, "participant", m.Name, "decision", string(d), "error", err.Error())
			continue
		}
		if hooks {
			if err := c.Hooks.afterApply(r.TxID, m.Name, d); err != nil {
				return false, crashed("after "+m.Name+" applied "+string(d), err)
			}
		}
	}
	return acked, nil
}

// post sends a JSON body and decodes a 200 answer into out. The request carries an
// Idempotency-Key (every message of the protocol is idempotent), so the chassis
// client may retry it on another instance.
func (c *Coordinator) post(ctx context.Context, url, key string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		var eb errorBody
		if json.Unmarshal(b, &eb) == nil && eb.Error != "" {
			return fmt.Errorf("POST %s: %d: %s", url, resp.StatusCode, eb.Error)
		}
		return fmt.Errorf("POST %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// RecoverStats counts what one Recover pass did.
type RecoverStats struct {
	Finished        int // decisions delivered to every participant and marked done
	PresumedAborted int // records aborted because they were still preparing after their deadline
	Open            int // records not done after the pass (young, or a participant did not answer)
	Removed         int // done records older than Retention removed
}

// Recover finishes every transaction of the log that is not done: a decision older
// than ResendAfter is sent again to every participant and, once all acknowledged,
// marked done; a record still preparing after its deadline is aborted first (presumed
// abort; a CAS, so a coordinator committing at the same moment cannot also win). Done
// records older than Retention are removed. Run it on one instance (Start does, under
// the leader lock); several at once are safe, only wasteful.
func (c *Coordinator) Recover(ctx context.Context) (RecoverStats, error) {
	c.init()
	var st RecoverStats
	entries, err := c.log.list(ctx)
	if err != nil {
		return st, err
	}
	var errs []error
	for _, e := range entries {
		now := c.Now()
		switch {
		case e.State == Done:
			if c.Retention > 0 && now.Sub(e.Decided) > c.Retention {
				if err := c.log.remove(ctx, e); err == nil {
					st.Removed++
				}
			}
			continue
		case e.State == Preparing && e.Outcome(now) == Abort:
			var won bool
			e, won, err = c.log.transition(ctx, e, Abort, "presumed abort: no decision before the deadline", now)
			if err != nil {
				errs = append(errs, err)
				st.Open++
				continue
			}
			if won {
				st.PresumedAborted++
				c.Logger.InfoContext(ctx, "twopc: presumed abort", "txid", e.TxID)
			}
		case e.State == Preparing, now.Sub(e.Decided) < c.ResendAfter:
			st.Open++
			continue
		}
		if e.State == Done {
			continue
		}
		acked, _ := c.deliver(ctx, e.Record, nil, false)
		if !acked {
			st.Open++
			continue
		}
		if _, _, err := c.log.transition(ctx, e, Done, "", c.Now()); err != nil {
			errs = append(errs, err)
			st.Open++
			continue
		}
		st.Finished++
	}
	return st, errors.Join(errs...)
}

// Start runs recovery on the instance for as long as it runs: it campaigns for the
// lock <prefix>leader (chassis Elect) and, while it holds it, calls Recover every
// interval (default 1s). The lock only spares the other instances the work: every
// change Recover makes to the log is a CAS, so a leader that lost its lock without
// noticing cannot make a transaction end twice.
func (c *Coordinator) Start(in *chassis.Instance, every time.Duration) {
	if c.Consul == nil {
		c.Consul = in.Consul()
	}
	if c.Client == nil {
		c.Client = in.Client()
	}
	if c.Logger == nil {
		c.Logger = in.Logger()
	}
	c.init()
	if every <= 0 {
		every = time.Second
	}
	in.Go(func(ctx context.Context) {
		_ = in.ElectWith(ctx, c.log.prefix+LeaderKey, chassis.LockOptions{LockDelay: time.Second}, func(ctx context.Context) {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				if _, err := c.Recover(ctx); err != nil && ctx.Err() == nil {
					c.Logger.Warn("twopc: recovery", "error", err.Error())
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	})
}
