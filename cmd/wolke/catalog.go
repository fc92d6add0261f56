package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newServicesCmd, newCatalogCmd) }

func newServicesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "services", Short: "Register and deregister services with the local agent"}
	reg := &cobra.Command{
		Use:   "register FILE",
		Short: "Register the service(s) defined in a JSON file (Consul's service definition)",
		Long: `Registers services with the agent from a JSON file: one service definition
({"Name": "web", "Port": 8080, "Check": {...}}), a {"Service": {...}} or {"Services": [...]}
document as Consul's config files have, or a list of definitions. "-" reads stdin.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("services register needs exactly one FILE")
			}
			return nil
		},
	}
	rcf := addClientFlags(reg)
	reg.RunE = func(cmd *cobra.Command, args []string) error {
		data, err := readArgFile(cmd, args[0])
		if err != nil {
			return err
		}
		defs, err := parseServiceDefinitions(data)
		if err != nil {
			return usageErrorf("%s: %v", args[0], err)
		}
		c, err := rcf.client()
		if err != nil {
			return err
		}
		for _, d := range defs {
			if err := c.Agent().ServiceRegister(d); err != nil {
				return fmt.Errorf("register %s: %w", d.Name, err)
			}
			id := d.ID
			if id == "" {
				id = d.Name
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Registered service: %s\n", id)
		}
		return nil
	}
	dereg := &cobra.Command{
		Use:   "deregister ID",
		Short: "Deregister a service from the local agent",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("services deregister needs exactly one service ID")
			}
			return nil
		},
	}
	dcf := addClientFlags(dereg)
	dereg.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := dcf.client()
		if err != nil {
			return err
		}
		if err := c.Agent().ServiceDeregister(args[0]); err != nil {
			return fmt.Errorf("deregister %s: %w", args[0], err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Deregistered service: %s\n", args[0])
		return nil
	}
	cmd.AddCommand(reg, dereg)
	return cmd
}

func readArgFile(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// parseServiceDefinitions accepts one definition, {"Service": def}, {"Services": [defs]}
// or [defs].
func parseServiceDefinitions(data []byte) ([]*api.AgentServiceRegistration, error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "[") {
		var list []*api.AgentServiceRegistration
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, err
		}
		return list, nil
	}
	var wrapper struct {
		Service  *api.AgentServiceRegistration
		Services []*api.AgentServiceRegistration
	}
	if err := json.Unmarshal(data, &wrapper); err != nil {
		return nil, err
	}
	switch {
	case wrapper.Service != nil:
		return []*api.AgentServiceRegistration{wrapper.Service}, nil
	case wrapper.Services != nil:
		return wrapper.Services, nil
	}
	var one api.AgentServiceRegistration
	if err := json.Unmarshal(data, &one); err != nil {
		return nil, err
	}
	if one.Name == "" {
		return nil, fmt.Errorf("no service definition found (a definition needs a Name)")
	}
	return []*api.AgentServiceRegistration{&one}, nil
}

func newCatalogCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "catalog", Short: "Read the service catalog"}
	services := &cobra.Command{Use: "services", Short: "List the services and their tags", Args: cobra.NoArgs}
	scf := addClientFlags(services)
	var tags bool
	services.Flags().BoolVar(&tags, "tags", false, "show each service's tags")
	services.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := scf.client()
		if err != nil {
			return err
		}
		m, _, err := c.Catalog().Services(nil)
		if err != nil {
			return fmt.Errorf("list services: %w", err)
		}
		names := make([]string, 0, len(m))
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		for _, n := range names {
			if tags {
				fmt.Fprintf(w, "%s\t%s\n", n, strings.Join(m[n], ","))
			} else {
				fmt.Fprintln(w, n)
			}
		}
		return w.Flush()
	}
	nodes := &cobra.Command{Use: "nodes", Short: "List the nodes", Args: cobra.NoArgs}
	ncf := addClientFlags(nodes)
	nodes.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := ncf.client()
		if err != nil {
			return err
		}
		list, _, err := c.Catalog().Nodes(nil)
		if err != nil {
			return fmt.Errorf("list nodes: %w", err)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "Node\tID\tAddress\tDC")
		for _, n := range list {
			id := n.ID
			if len(id) > 8 {
				id = id[:8]
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", n.Node, id, n.Address, n.Datacenter)
		}
		return w.Flush()
	}
	service := &cobra.Command{
		Use:   "service NAME",
		Short: "List the instances of a service with their health",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("catalog service needs exactly one service name")
			}
			return nil
		},
	}
	svcf := addClientFlags(service)
	var tag string
	var passing bool
	service.Flags().StringVar(&tag, "tag", "", "only instances with this tag")
	service.Flags().BoolVar(&passing, "passing", false, "only instances whose checks all pass")
	service.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := svcf.client()
		if err != nil {
			return err
		}
		entries, _, err := c.Health().Service(args[0], tag, passing, nil)
		if err != nil {
			return fmt.Errorf("list %s: %w", args[0], err)
		}
		w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "Node\tServiceID\tAddress\tPort\tTags\tHealth")
		for _, e := range entries {
			addr := e.Service.Address
			if addr == "" {
				addr = e.Node.Address
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", e.Node.Node, e.Service.ID, addr, e.Service.Port,
				strings.Join(e.Service.Tags, ","), e.Checks.AggregatedStatus())
		}
		return w.Flush()
	}
	cmd.AddCommand(services, nodes, service)
	return cmd
}
