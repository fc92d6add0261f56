package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/authn"
)

func init() { proxySubcommands = append(proxySubcommands, newProxyAPIKeyCmd) }

// proxySubcommands holds the constructors of the subcommands of `wolke proxy`; each
// subcommand's file adds itself in an init function, and newProxyCmd adds them all.
var proxySubcommands []func() *cobra.Command

// apiKeyHashShown is how much of a key's hash list prints and revoke accepts as a
// prefix at least.
const (
	apiKeyHashShown     = 12
	apiKeyMinHashPrefix = 6
)

func newProxyAPIKeyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apikey",
		Short: "Create, list and revoke the gateway's API keys",
		Long: `Manage the API keys that routes with an "api_key" auth policy accept. A key is
stored only as its SHA-256 under ` + authn.APIKeyPrefix + `<hash>, with its name
(the identity the upstream sees), creation time and optional services; gateways
follow that prefix, so a created or revoked key takes effect within moments.

The agent is found at -http-addr, else WOLKE_HTTP_ADDR, else CONSUL_HTTP_ADDR, else
127.0.0.1:8500; the ACL token is -token, else WOLKE_TOKEN, else the file named by
CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown apikey subcommand %q: want create, list or revoke", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newAPIKeyCreateCmd(), newAPIKeyListCmd(), newAPIKeyRevokeCmd())
	return cmd
}

// storedAPIKey is one API key as the KV store holds it.
type storedAPIKey struct {
	hash string
	key  authn.APIKey
	ok   bool // the value parsed
}

// listAPIKeys reads every API key, sorted by name, then hash.
func listAPIKeys(ctx context.Context, c *api.Client) ([]storedAPIKey, error) {
	pairs, _, err := c.KV().List(authn.APIKeyPrefix, queryOpts(ctx, false))
	if err != nil {
		return nil, queryError(err)
	}
	out := make([]storedAPIKey, 0, len(pairs))
	for _, p := range pairs {
		s := storedAPIKey{hash: strings.TrimPrefix(p.Key, authn.APIKeyPrefix)}
		s.ok = json.Unmarshal(p.Value, &s.key) == nil && s.key.Name != ""
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b storedAPIKey) int {
		if c := strings.Compare(a.key.Name, b.key.Name); c != 0 {
			return c
		}
		return strings.Compare(a.hash, b.hash)
	})
	return out, nil
}

// validAPIKeyName: the name becomes the identity header's value, so it stays plain.
func validAPIKeyName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("API key name must be 1 to 128 characters")
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.@:", c)) {
			return fmt.Errorf("API key name %q: use letters, digits and - _ . @ :", s)
		}
	}
	return nil
}

func newAPIKeyCreateCmd() *cobra.Command {
	var services []string
	cmd := &cobra.Command{
		Use:   "create [flags] NAME",
		Short: "Create an API key and print it (the only time it is shown)",
		Long: `Create a random API key ("wk_" and 32 random bytes, base64url) named NAME and print
it on stdout; only its SHA-256 is stored, so it cannot be shown again. NAME is the
identity the upstream services see, and must be unused. With -service, the key is
accepted only on routes to those services.`,
		Example: `  wolke proxy apikey create ci-bot
  KEY=$(wolke proxy apikey create billing-job -service billing -service invoices)`,
		Args: kvArgs(1, 1, "NAME"),
	}
	cmd.Flags().StringArrayVar(&services, "service", nil, "limit the key to this service (repeatable)")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := validAPIKeyName(name); err != nil {
			return usageErrorf("%v", err)
		}
		for _, s := range services {
			if s == "" || strings.ContainsAny(s, " \t\r\n") {
				return usageErrorf("-service %q: want a service name", s)
			}
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		existing, err := listAPIKeys(cmd.Context(), c)
		if err != nil {
			return err
		}
		for _, e := range existing {
			if e.key.Name == name {
				return fmt.Errorf("an API key named %q exists (hash %s); revoke it first", name, e.hash[:min(len(e.hash), apiKeyHashShown)])
			}
		}
		key, err := authn.NewAPIKey()
		if err != nil {
			return err
		}
		hash := authn.HashAPIKey(key)
		value, err := json.Marshal(authn.APIKey{Name: name, Created: time.Now().UTC().Truncate(time.Second), Services: services})
		if err != nil {
			return err
		}
		// Create only: ModifyIndex 0 fails if the key exists.
		ok, _, err := c.KV().CAS(&api.KVPair{Key: authn.APIKeyPrefix + hash, Value: value}, writeOpts(cmd.Context()))
		if err != nil {
			return fmt.Errorf("storing the API key: %w", err)
		}
		if !ok {
			return fmt.Errorf("an API key with hash %s exists already", hash[:apiKeyHashShown])
		}
		fmt.Fprintln(cmd.OutOrStdout(), key)
		fmt.Fprintf(cmd.ErrOrStderr(), "Created API key %s (hash %s). It is shown only this once.\n", name, hash[:apiKeyHashShown])
		return nil
	}
	return cmd
}

func newAPIKeyListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the API keys: name, hash prefix, creation time, services",
		Long: `List the API keys by name, with the first characters of each key's SHA-256 (enough
for revoke), when it was created, and the services it is limited to ("*": all).
An empty list is not an error.`,
		Args: kvArgs(0, 0, ""),
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		keys, err := listAPIKeys(cmd.Context(), c)
		if err != nil || len(keys) == 0 {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tHASH\tCREATED\tSERVICES")
		for _, k := range keys {
			if !k.ok {
				fmt.Fprintf(tw, "?\t%s\t?\t(unreadable value)\n", k.hash[:min(len(k.hash), apiKeyHashShown)])
				continue
			}
			svcs := "*"
			if len(k.key.Services) > 0 {
				svcs = strings.Join(k.key.Services, ",")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.key.Name, k.hash[:min(len(k.hash), apiKeyHashShown)], k.key.Created.UTC().Format(time.RFC3339), svcs)
		}
		return tw.Flush()
	}
	return cmd
}

func newAPIKeyRevokeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke [flags] NAME|HASH-PREFIX",
		Short: "Revoke an API key, by name or by the start of its hash",
		Long: `Delete the API key named NAME, or whose SHA-256 starts with HASH-PREFIX (at least
6 hex digits, as list shows them). Gateways refuse the key within moments. It is an
error if nothing matches, or more than one key does.`,
		Example: `  wolke proxy apikey revoke ci-bot
  wolke proxy apikey revoke 3f9a1c`,
		Args: kvArgs(1, 1, "NAME or HASH-PREFIX"),
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		arg := args[0]
		c, err := cf.client()
		if err != nil {
			return err
		}
		keys, err := listAPIKeys(cmd.Context(), c)
		if err != nil {
			return err
		}
		isPrefix := len(arg) >= apiKeyMinHashPrefix && strings.Trim(strings.ToLower(arg), "0123456789abcdef") == ""
		var match []storedAPIKey
		for _, k := range keys {
			if k.ok && k.key.Name == arg || isPrefix && strings.HasPrefix(k.hash, strings.ToLower(arg)) {
				match = append(match, k)
			}
		}
		switch len(match) {
		case 0:
			return fmt.Errorf("no API key named %q or with a hash starting with it", arg)
		case 1:
		default:
			var names []string
			for _, m := range match {
				names = append(names, m.key.Name+" ("+m.hash[:min(len(m.hash), apiKeyHashShown)]+")")
			}
			return fmt.Errorf("%q matches %d API keys: %s; give more of the hash", arg, len(match), strings.Join(names, ", "))
		}
		m := match[0]
		if _, err := c.KV().Delete(authn.APIKeyPrefix+m.hash, writeOpts(cmd.Context())); err != nil {
			return fmt.Errorf("deleting the API key: %w", err)
		}
		name := m.key.Name
		if !m.ok {
			name = "?"
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Revoked API key %s (hash %s)\n", name, m.hash[:min(len(m.hash), apiKeyHashShown)])
		return nil
	}
	return cmd
}
