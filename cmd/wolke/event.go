package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newEventCmd) }

// The event commands: `fire` follows `consul event` (same flags, same "Event ID: ..."
// output); `list` and `watch` are wolke's own and print one JSON object per event and
// line, in the UserEvent shape of /v1/event/list (Payload base64), for jq and scripts.
// `consul watch -type event` prints the whole list on every change instead.
func newEventCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "event",
		Short: "Fire, list and watch user events (like consul event)",
		Long: `Fire custom user events, which gossip carries to every agent of the cluster, and read
the events an agent has received. Each agent keeps its last 256 events; delivery is
best effort, as in Consul.

The agent is found at -http-addr, else WOLKE_HTTP_ADDR, else CONSUL_HTTP_ADDR, else
127.0.0.1:8500; the ACL token is -token, else WOLKE_TOKEN, else the file named by
CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown event subcommand %q: want fire, list or watch", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEventFireCmd(), newEventListCmd(), newEventWatchCmd())
	return cmd
}

func newEventFireCmd() *cobra.Command {
	var node, service, tag string
	cmd := &cobra.Command{
		Use:   "fire [flags] NAME [PAYLOAD | - | @FILE]",
		Short: "Fire a user event",
		Long: `Fire the user event NAME with an optional payload: the argument itself, standard input
("-") or the content of a file ("@FILE"). Name, filters and payload must fit into one
512-byte gossip message (a few hundred bytes of payload).

-node, -service and -tag are regular expressions: only agents whose node name matches,
and that run a matching service with a matching tag, keep the event. (wolke does not
apply -service and -tag yet: agents have no local services until service registration
exists.)`,
		Example: `  wolke event fire deploy v1.2.3
  wolke event fire -node '^web-' restart
  git rev-parse HEAD | wolke event fire deploy -`,
		Args: kvArgs(1, 2, "NAME"),
	}
	f := cmd.Flags()
	f.StringVar(&node, "node", "", "regular expression: only nodes whose name matches keep the event")
	f.StringVar(&service, "service", "", "regular expression: only nodes running a matching service keep the event")
	f.StringVar(&tag, "tag", "", "regular expression on the tags of the -service services (needs -service)")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if tag != "" && service == "" {
			return usageErrorf("-tag needs -service")
		}
		ev := &api.UserEvent{Name: args[0], NodeFilter: node, ServiceFilter: service, TagFilter: tag}
		if len(args) == 2 {
			p, err := readData(args[1], cmd.InOrStdin())
			if err != nil {
				return err
			}
			ev.Payload = p
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		id, _, err := c.Event().Fire(ev, writeOpts(cmd.Context()))
		if err != nil {
			return fmt.Errorf("firing event %q: %w", ev.Name, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Event ID: %s\n", id)
		return nil
	}
	return cmd
}

func newEventListCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "Print the events the agent holds, oldest first, one JSON object per line",
		Example: `  wolke event list
  wolke event list -name deploy | jq -r .Payload | base64 -d`,
		Args: kvArgs(0, 0, ""),
	}
	cmd.Flags().StringVar(&name, "name", "", "only events of this name")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		evs, _, err := c.Event().List(name, queryOpts(cmd.Context(), false))
		if err != nil {
			return queryError(err)
		}
		return writeEvents(cmd.OutOrStdout(), evs)
	}
	return cmd
}

func newEventWatchCmd() *cobra.Command {
	var name string
	var existing bool
	cmd := &cobra.Command{
		Use:   "watch [flags]",
		Short: "Print events as they arrive at the agent, one JSON object per line, until interrupted",
		Long: `Print each new event the agent receives as one JSON object per line, until interrupted.
With -existing, first print the events the agent already holds. Errors (the agent
restarting, say) are retried with backoff; events that arrive meanwhile are printed
once the agent answers again, as long as it still holds them.`,
		Example: `  wolke event watch -name deploy`,
		Args:    kvArgs(0, 0, ""),
	}
	cmd.Flags().StringVar(&name, "name", "", "only events of this name")
	cmd.Flags().BoolVar(&existing, "existing", false, "first print the events the agent already holds")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		w := eventWatcher{
			list: func(ctx context.Context, index uint64) ([]*api.UserEvent, uint64, error) {
				q := (&api.QueryOptions{WaitIndex: index, WaitTime: 5 * time.Minute}).WithContext(ctx)
				evs, meta, err := c.Event().List(name, q)
				if err != nil {
					return nil, 0, err
				}
				return evs, meta.LastIndex, nil
			},
			out:      cmd.OutOrStdout(),
			errOut:   cmd.ErrOrStderr(),
			existing: existing,
		}
		return w.run(cmd.Context())
	}
	return cmd
}

// eventWatcher follows an agent's event list with blocking queries and prints the
// events it has not printed yet.
type eventWatcher struct {
	// list is one (blocking, when index > 0) list query: events and the new index.
	list     func(ctx context.Context, index uint64) ([]*api.UserEvent, uint64, error)
	out      io.Writer
	errOut   io.Writer
	existing bool
	// minBackoff and maxBackoff bound the wait after a failed query (default 250 ms, 10 s).
	minBackoff, maxBackoff time.Duration
}

// run watches until ctx ends, which is a normal end (nil).
func (w *eventWatcher) run(ctx context.Context) error {
	minB, maxB := w.minBackoff, w.maxBackoff
	if minB == 0 {
		minB = 250 * time.Millisecond
	}
	if maxB == 0 {
		maxB = 10 * time.Second
	}
	var (
		index   uint64
		printed map[string]bool // IDs in the last answer: printed, or held before we started
		backoff = minB
	)
	for {
		evs, idx, err := w.list(ctx, index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			fmt.Fprintf(w.errOut, "error: querying the agent (retrying in %v): %v\n", backoff, err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxB)
			// The agent may have restarted with other events: ask without blocking.
			index = 0
			continue
		}
		backoff = minB
		var fresh []*api.UserEvent
		for _, e := range evs {
			if !printed[e.ID] && (printed != nil || w.existing) {
				fresh = append(fresh, e)
			}
		}
		if err := writeEvents(w.out, fresh); err != nil {
			return err
		}
		printed = make(map[string]bool, len(evs))
		for _, e := range evs {
			printed[e.ID] = true
		}
		// The index hashes the newest event's ID: it is opaque and not monotonic.
		// Consul's watches start over from 0 when it goes backwards; the ID set above
		// keeps that from printing anything twice.
		switch {
		case idx < index:
			index = 0
		default:
			index = max(idx, 1) // never 0 in a row: that would poll without blocking
		}
	}
}

// writeEvents prints events as JSON lines.
func writeEvents(w io.Writer, evs []*api.UserEvent) error {
	enc := json.NewEncoder(w)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}
