package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() {
	subcommands = append(subcommands, newMembersCmd, newJoinCmd, newLeaveCmd, newForceLeaveCmd, newOperatorCmd, newReloadCmd)
}

// memberStatus names Consul's member status numbers.
var memberStatus = map[int]string{0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}

func newMembersCmd() *cobra.Command {
	var detailed bool
	var status string
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the members of the gossip pool",
		Long: `Lists every agent this agent knows of through gossip, with its address, status
(alive, leaving, left, failed), role (server or client) and datacenter.`,
		Args: cobra.NoArgs,
	}
	cf := addClientFlags(cmd)
	cmd.Flags().BoolVar(&detailed, "detailed", false, "show every tag")
	cmd.Flags().StringVar(&status, "status", "", "only members whose status matches this regular-expression-free word (alive, failed, left, ...)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		members, err := c.Agent().Members(false)
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		sort.Slice(members, func(i, j int) bool { return members[i].Name < members[j].Name })
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		if detailed {
			fmt.Fprintln(w, "Node\tAddress\tStatus\tTags")
		} else {
			fmt.Fprintln(w, "Node\tAddress\tStatus\tType\tBuild\tDC")
		}
		for _, m := range members {
			st := memberStatus[m.Status]
			if status != "" && st != status {
				continue
			}
			addr := fmt.Sprintf("%s:%d", m.Addr, m.Port)
			if detailed {
				var tags []string
				for k, v := range m.Tags {
					tags = append(tags, k+"="+v)
				}
				sort.Strings(tags)
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", m.Name, addr, st, strings.Join(tags, ","))
				continue
			}
			typ := "client"
			if m.Tags["role"] == "consul" {
				typ = "server"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, addr, st, typ, m.Tags["build"], m.Tags["dc"])
		}
		return w.Flush()
	}
	return cmd
}

func newJoinCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join ADDR...",
		Short: "Tell the agent to join the gossip pool through other agents",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf("join needs at least one address")
			}
			return nil
		},
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		joined := 0
		var lastErr error
		for _, a := range args {
			if err := c.Agent().Join(a, false); err != nil {
				lastErr = err
				fmt.Fprintf(cmd.ErrOrStderr(), "could not join %s: %v\n", a, err)
				continue
			}
			joined++
		}
		if joined == 0 {
			return fmt.Errorf("joined none of %d addresses: %w", len(args), lastErr)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Successfully joined cluster by contacting %d nodes.\n", joined)
		return nil
	}
	return cmd
}

func newLeaveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Make the agent leave the cluster gracefully and stop",
		Long: `Asks the agent to leave: a server hands on leadership if it leads and is removed
from the Raft configuration; the agent's gossip peers see it as left, not failed; then it
stops.`,
		Args: cobra.NoArgs,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		if err := c.Agent().Leave(); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "Graceful leave complete")
		return nil
	}
	return cmd
}

func newForceLeaveCmd() *cobra.Command {
	var prune bool
	cmd := &cobra.Command{
		Use:   "force-leave NODE",
		Short: "Mark a failed member as left (a failed server is then removed from Raft)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("force-leave needs exactly one node name")
			}
			return nil
		},
	}
	cf := addClientFlags(cmd)
	cmd.Flags().BoolVar(&prune, "prune", false, "forget the member at once instead of keeping it as left")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		opts := &api.ForceLeaveOpts{Prune: prune}
		if err := c.Agent().ForceLeaveOpts(args[0], *opts); err != nil {
			return fmt.Errorf("force-leave %s: %w", args[0], err)
		}
		return nil
	}
	return cmd
}

func newOperatorCmd() *cobra.Command {
	op := &cobra.Command{Use: "operator", Short: "Cluster operations"}
	rf := &cobra.Command{Use: "raft", Short: "Inspect and change the Raft configuration"}
	op.AddCommand(rf)

	list := &cobra.Command{Use: "list-peers", Short: "Show the Raft servers, their roles and the leader", Args: cobra.NoArgs}
	lcf := addClientFlags(list)
	var stale bool
	list.Flags().BoolVar(&stale, "stale", false, "let any server answer from its own view")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := lcf.client()
		if err != nil {
			return err
		}
		conf, err := c.Operator().RaftGetConfiguration(&api.QueryOptions{AllowStale: stale})
		if err != nil {
			return fmt.Errorf("read Raft configuration: %w", err)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "Node\tID\tAddress\tState\tVoter\tRaftProtocol")
		for _, s := range conf.Servers {
			state := "follower"
			if s.Leader {
				state = "leader"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\n", s.Node, s.ID, s.Address, state, s.Voter, s.ProtocolVersion)
		}
		return w.Flush()
	}

	remove := &cobra.Command{Use: "remove-peer", Short: "Remove a server from the Raft configuration (by -id or -address)", Args: cobra.NoArgs}
	rcf := addClientFlags(remove)
	var id, address string
	remove.Flags().StringVar(&id, "id", "", "Raft ID of the server to remove")
	remove.Flags().StringVar(&address, "address", "", "Raft address (IP:port) of the server to remove")
	remove.RunE = func(cmd *cobra.Command, _ []string) error {
		if (id == "") == (address == "") {
			return usageErrorf("give exactly one of -id or -address")
		}
		c, err := rcf.client()
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
		defer cancel()
		q := (&api.WriteOptions{}).WithContext(ctx)
		if id != "" {
			err = c.Operator().RaftRemovePeerByID(id, q)
		} else {
			err = c.Operator().RaftRemovePeerByAddress(address, q)
		}
		if err != nil {
			return fmt.Errorf("remove peer: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Removed peer %s%s\n", id, address)
		return nil
	}
	rf.AddCommand(list, remove)
	return op
}

func newReloadCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the agent re-read its -config-dir (services and checks)",
		Args:  cobra.NoArgs,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		if err := c.Agent().Reload(); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), "Configuration reload triggered")
		return nil
	}
	return cmd
}
