package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/consul/api"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newKVCmd) }

// The kv commands follow `consul kv`: the same subcommands, flags, output and export
// format, so scripts and dumps move between Consul and wolke. Where wolke differs:
//
//   - errors come back through run() as one "error: ..." line, exit 1 for failures at
//     run time (missing key, agent unreachable, CAS failed) and 2 for usage errors;
//   - `get KEY` writes the value's bytes exactly, adding a newline only on a terminal;
//   - -base64 also applies to a plain `get KEY`;
//   - `put -cas -modify-index=0` writes only if the key does not exist yet;
//   - `import` checks the whole input before writing anything;
//   - `list` is wolke's own.
func newKVCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kv",
		Short: "Read and write the key/value store (like consul kv)",
		Long: `Read and write the key/value store of a wolke or Consul agent over its HTTP API.

The agent is found at -http-addr, else WOLKE_HTTP_ADDR, else CONSUL_HTTP_ADDR, else
127.0.0.1:8500; the ACL token is -token, else WOLKE_TOKEN, else the file named by
CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown kv subcommand %q: want get, put, delete, list, export or import", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newKVGetCmd(), newKVPutCmd(), newKVDeleteCmd(), newKVListCmd(), newKVExportCmd(), newKVImportCmd())
	return cmd
}

// kvArgs accepts between min and max positional arguments, naming the missing one.
func kvArgs(min, max int, missing string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usageErrorf("missing %s argument", missing)
		case len(args) > max:
			return usageErrorf("too many arguments (expected at most %d, got %d)", max, len(args))
		}
		return nil
	}
}

// kvKey returns the key or prefix argument, if any. Keys cannot begin with "/"; like
// consul, a leading "/" is dropped rather than refused.
func kvKey(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return strings.TrimPrefix(args[0], "/")
}

func queryOpts(ctx context.Context, stale bool) *api.QueryOptions {
	return (&api.QueryOptions{AllowStale: stale}).WithContext(ctx)
}

func writeOpts(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// queryError reports a failed read; transport errors already name the URL.
func queryError(err error) error { return fmt.Errorf("querying the agent: %w", err) }

func newKVGetCmd() *cobra.Command {
	var base64Out, detailed, keys, recurse, stale bool
	var separator string
	cmd := &cobra.Command{
		Use:   "get [flags] KEY_OR_PREFIX",
		Short: "Print a key's value, or the keys and values under a prefix",
		Long: `Print the value stored at KEY, byte for byte (followed by a newline only when the
output is a terminal). It is an error (exit 1) if KEY does not exist.

  -detailed   print the metadata too: CreateIndex, Flags, Key, LockIndex, ModifyIndex,
              Session, Value
  -recurse    print KEY:VALUE lines for every key that starts with the prefix
  -keys       print the keys that start with the prefix, up to the next -separator
  -base64     print values base64-encoded`,
		Example: `  wolke kv get config/redis/maxconns
  wolke kv get -recurse config/
  wolke kv get -keys -separator="" config/`,
		Args: kvArgs(0, 1, "KEY"),
	}
	f := cmd.Flags()
	f.BoolVar(&base64Out, "base64", false, "base64-encode the values")
	f.BoolVar(&detailed, "detailed", false, "print the key's metadata as well as its value")
	f.BoolVar(&keys, "keys", false, "list the keys under the prefix, not their values")
	f.BoolVar(&recurse, "recurse", false, "print all keys and values under the prefix")
	f.StringVar(&separator, "separator", "/", "with -keys: list keys only up to the next occurrence of this string (\"\" for all)")
	f.BoolVar(&stale, "stale", false, "let any server answer, possibly with stale data")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		key := kvKey(args)
		switch {
		case keys && (recurse || detailed || base64Out):
			return usageErrorf("-keys lists key names only; it cannot be combined with -recurse, -detailed or -base64")
		case cmd.Flags().Changed("separator") && !keys:
			return usageErrorf("-separator applies only with -keys")
		case key == "" && !recurse && !keys:
			return usageErrorf("missing KEY argument")
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		kv, q, out := c.KV(), queryOpts(cmd.Context(), stale), cmd.OutOrStdout()
		switch {
		case keys:
			ks, _, err := kv.Keys(key, separator, q)
			if err != nil {
				return queryError(err)
			}
			return writeLines(out, ks)
		case recurse:
			pairs, _, err := kv.List(key, q)
			if err != nil {
				return queryError(err)
			}
			var b bytes.Buffer
			for i, p := range pairs {
				if detailed {
					if i > 0 {
						b.WriteByte('\n')
					}
					writeDetailed(&b, p, base64Out)
					continue
				}
				b.WriteString(p.Key)
				b.WriteByte(':')
				writeValue(&b, p.Value, base64Out)
				b.WriteByte('\n')
			}
			_, err = out.Write(b.Bytes())
			return err
		default:
			p, _, err := kv.Get(key, q)
			if err != nil {
				return queryError(err)
			}
			if p == nil {
				return fmt.Errorf("no key exists at: %s", key)
			}
			var b bytes.Buffer
			switch {
			case detailed:
				writeDetailed(&b, p, base64Out)
			case base64Out:
				writeValue(&b, p.Value, true)
				b.WriteByte('\n')
			default:
				b.Write(p.Value)
				if isTerminalWriter(out) && !bytes.HasSuffix(p.Value, []byte("\n")) {
					b.WriteByte('\n')
				}
			}
			_, err = out.Write(b.Bytes())
			return err
		}
	}
	return cmd
}

func writeValue(b *bytes.Buffer, v []byte, base64Out bool) {
	if base64Out {
		b.WriteString(base64.StdEncoding.EncodeToString(v))
		return
	}
	b.Write(v)
}

// writeDetailed writes a pair in consul's `kv get -detailed` layout.
func writeDetailed(b *bytes.Buffer, p *api.KVPair, base64Out bool) {
	tw := tabwriter.NewWriter(b, 0, 2, 6, ' ', 0)
	fmt.Fprintf(tw, "CreateIndex\t%d\n", p.CreateIndex)
	fmt.Fprintf(tw, "Flags\t%d\n", p.Flags)
	fmt.Fprintf(tw, "Key\t%s\n", p.Key)
	fmt.Fprintf(tw, "LockIndex\t%d\n", p.LockIndex)
	fmt.Fprintf(tw, "ModifyIndex\t%d\n", p.ModifyIndex)
	session := p.Session
	if session == "" {
		session = "-"
	}
	fmt.Fprintf(tw, "Session\t%s\n", session)
	var v bytes.Buffer
	writeValue(&v, p.Value, base64Out)
	fmt.Fprintf(tw, "Value\t%s", v.Bytes())
	tw.Flush() // writes to a bytes.Buffer cannot fail
	b.WriteByte('\n')
}

func writeLines(w io.Writer, lines []string) error {
	var b bytes.Buffer
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// isTerminalWriter reports whether w is a terminal (a character device).
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// readData returns the data an argument names, as consul does: "-" is standard input,
// "@FILE" is the content of FILE, anything else is the data itself. (A value that
// starts with "-" must come after "--", or cobra takes it for a flag.)
func readData(arg string, stdin io.Reader) ([]byte, error) {
	switch {
	case arg == "-":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("reading standard input: %w", err)
		}
		return b, nil
	case strings.HasPrefix(arg, "@"):
		b, err := os.ReadFile(arg[1:])
		if err != nil {
			return nil, fmt.Errorf("reading the data file: %w", err)
		}
		return b, nil
	}
	return []byte(arg), nil
}

func newKVPutCmd() *cobra.Command {
	var cas, base64In, acquire, release bool
	var flags, modifyIndex uint64
	var session string
	cmd := &cobra.Command{
		Use:   "put [flags] KEY [DATA | - | @FILE]",
		Short: "Write a value to a key",
		Long: `Write DATA to KEY: the argument itself, standard input ("-") or the content of a
file ("@FILE"). Without DATA the key is written with an empty value.

With -cas the write happens only if the key's ModifyIndex still equals -modify-index
(0: only if the key does not exist); otherwise the command fails with exit 1.

With -acquire the write also takes the key's lock for -session (a session is created when
none is given, and its ID printed); with -release it drops the lock -session holds. Both
fail with exit 1 when the lock is held by another session, or not by this one.`,
		Example: `  wolke kv put config/redis/maxconns 5
  wolke kv put config/tls/cert @cert.pem
  echo -n hello | wolke kv put greeting -
  wolke kv put -cas -modify-index=17 config/redis/maxconns 6
  wolke kv put -acquire -session=$ID service/leader node-1`,
		Args: kvArgs(1, 2, "KEY"),
	}
	f := cmd.Flags()
	f.BoolVar(&cas, "cas", false, "check-and-set: write only if the key's ModifyIndex is -modify-index")
	f.Uint64Var(&modifyIndex, "modify-index", 0, "with -cas: the ModifyIndex the key must have (0: the key must not exist)")
	f.Uint64Var(&flags, "flags", 0, "opaque unsigned integer stored with the key")
	f.BoolVar(&base64In, "base64", false, "the data is base64-encoded; store it decoded")
	f.BoolVar(&acquire, "acquire", false, "take the key's lock for -session while writing")
	f.BoolVar(&release, "release", false, "drop the lock -session holds on the key while writing")
	f.StringVar(&session, "session", "", "session ID for -acquire and -release")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		key := kvKey(args)
		switch {
		case key == "":
			return usageErrorf("missing KEY argument")
		case acquire && release:
			return usageErrorf("-acquire and -release cannot be combined")
		case (acquire || release) && cas:
			return usageErrorf("-cas cannot be combined with -acquire or -release")
		case release && session == "":
			return usageErrorf("-release needs -session")
		case session != "" && !acquire && !release:
			return usageErrorf("-session applies only with -acquire or -release")
		case cas && !cmd.Flags().Changed("modify-index"):
			return usageErrorf("-cas needs -modify-index")
		case !cas && cmd.Flags().Changed("modify-index"):
			return usageErrorf("-modify-index applies only with -cas")
		}
		var value []byte
		if len(args) == 2 {
			var err error
			if value, err = readData(args[1], cmd.InOrStdin()); err != nil {
				return err
			}
		}
		if base64In {
			dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(value)))
			if err != nil {
				return fmt.Errorf("cannot base64-decode the data: %w", err)
			}
			value = dec
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		pair := &api.KVPair{Key: key, Flags: flags, Value: value, ModifyIndex: modifyIndex}
		w := writeOpts(cmd.Context())
		if acquire || release {
			if acquire && session == "" {
				id, _, err := c.Session().Create(&api.SessionEntry{Name: "wolke kv put -acquire"}, w)
				if err != nil {
					return fmt.Errorf("create a session for %s: %w", key, err)
				}
				session = id
				fmt.Fprintf(cmd.OutOrStdout(), "Session: %s\n", id)
			}
			pair.Session = session
			op, verb := c.KV().Acquire, "acquire"
			if release {
				op, verb = c.KV().Release, "release"
			}
			ok, _, err := op(pair, w)
			if err != nil {
				return fmt.Errorf("did not %s the lock on %s: %w", verb, key, err)
			}
			if !ok {
				return fmt.Errorf("did not %s the lock on %s: it is held by another session", verb, key)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Success! Lock %sd on: %s\n", verb, key)
			return nil
		}
		if cas {
			ok, _, err := c.KV().CAS(pair, w)
			if err != nil {
				return fmt.Errorf("did not write to %s: %w", key, err)
			}
			if !ok {
				return fmt.Errorf("did not write to %s: CAS failed", key)
			}
		} else if _, err := c.KV().Put(pair, w); err != nil {
			return fmt.Errorf("did not write to %s: %w", key, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Success! Data written to: %s\n", key)
		return nil
	}
	return cmd
}

func newKVDeleteCmd() *cobra.Command {
	var cas, recurse bool
	var modifyIndex uint64
	cmd := &cobra.Command{
		Use:   "delete [flags] KEY_OR_PREFIX",
		Short: "Delete a key, or every key under a prefix",
		Long: `Delete KEY; deleting a key that does not exist succeeds. With -recurse, delete every
key that starts with the prefix (all keys if the prefix is empty). With -cas, delete only
if the key's ModifyIndex still equals -modify-index; otherwise fail with exit 1.`,
		Example: `  wolke kv delete config/redis/maxconns
  wolke kv delete -recurse config/
  wolke kv delete -cas -modify-index=18 config/redis/maxconns`,
		Args: kvArgs(0, 1, "KEY"),
	}
	f := cmd.Flags()
	f.BoolVar(&cas, "cas", false, "check-and-set: delete only if the key's ModifyIndex is -modify-index")
	f.Uint64Var(&modifyIndex, "modify-index", 0, "with -cas: the ModifyIndex the key must have")
	f.BoolVar(&recurse, "recurse", false, "delete every key that starts with the prefix")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		key := kvKey(args)
		switch {
		case key == "" && !recurse:
			return usageErrorf("missing KEY argument")
		case cas && recurse:
			return usageErrorf("-cas and -recurse cannot be combined")
		case cas && modifyIndex == 0:
			return usageErrorf("-cas needs a -modify-index greater than 0 (a key that does not exist cannot be deleted)")
		case !cas && cmd.Flags().Changed("modify-index"):
			return usageErrorf("-modify-index applies only with -cas")
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		w, out := writeOpts(cmd.Context()), cmd.OutOrStdout()
		switch {
		case recurse:
			if _, err := c.KV().DeleteTree(key, w); err != nil {
				return fmt.Errorf("did not delete prefix %s: %w", key, err)
			}
			fmt.Fprintf(out, "Success! Deleted keys with prefix: %s\n", key)
		case cas:
			ok, _, err := c.KV().DeleteCAS(&api.KVPair{Key: key, ModifyIndex: modifyIndex}, w)
			if err != nil {
				return fmt.Errorf("did not delete key %s: %w", key, err)
			}
			if !ok {
				return fmt.Errorf("did not delete key %s: CAS failed", key)
			}
			fmt.Fprintf(out, "Success! Deleted key: %s\n", key)
		default:
			if _, err := c.KV().Delete(key, w); err != nil {
				return fmt.Errorf("did not delete key %s: %w", key, err)
			}
			fmt.Fprintf(out, "Success! Deleted key: %s\n", key)
		}
		return nil
	}
	return cmd
}

func newKVListCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "list [flags] [PREFIX]",
		Short: "List the keys under a prefix, one per line",
		Long: `List every key that starts with PREFIX (all keys without one), one per line, in
order. The same as "get -keys -separator= PREFIX"; an empty result is not an error.`,
		Example: `  wolke kv list config/`,
		Args:    kvArgs(0, 1, "PREFIX"),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "let any server answer, possibly with stale data")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		keys, _, err := c.KV().Keys(kvKey(args), "", queryOpts(cmd.Context(), stale))
		if err != nil {
			return queryError(err)
		}
		return writeLines(cmd.OutOrStdout(), keys)
	}
	return cmd
}

// kvExportEntry is one key in the format of `consul kv export` and `consul kv import`:
// a JSON array of these, values base64-encoded. Namespace and Partition come from Consul
// Enterprise; wolke writes neither and imports only the default ones.
type kvExportEntry struct {
	Key       string `json:"key"`
	Flags     uint64 `json:"flags"`
	Value     string `json:"value"`
	Namespace string `json:"namespace,omitempty"`
	Partition string `json:"partition,omitempty"`
}

func newKVExportCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "export [flags] [PREFIX]",
		Short: "Print the keys under a prefix as JSON, for kv import",
		Long: `Print every key that starts with PREFIX (all keys without one) as the JSON array
"consul kv export" prints: [{"key": ..., "flags": ..., "value": BASE64}, ...]. The output
imports into wolke or Consul with "kv import".`,
		Example: `  wolke kv export config/ > config.json`,
		Args:    kvArgs(0, 1, "PREFIX"),
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "let any server answer, possibly with stale data")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := cf.client()
		if err != nil {
			return err
		}
		pairs, _, err := c.KV().List(kvKey(args), queryOpts(cmd.Context(), stale))
		if err != nil {
			return queryError(err)
		}
		entries := make([]kvExportEntry, len(pairs))
		for i, p := range pairs {
			entries[i] = kvExportEntry{Key: p.Key, Flags: p.Flags, Value: base64.StdEncoding.EncodeToString(p.Value)}
		}
		b, err := json.MarshalIndent(entries, "", "\t")
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(append(b, '\n'))
		return err
	}
	return cmd
}

func newKVImportCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "import [flags] (@FILE | - | DATA)",
		Short: "Write the keys of a kv export",
		Long: `Write every key of a JSON array in the format of "kv export" (wolke's or Consul's):
from a file ("@FILE"), standard input ("-") or the argument itself. The whole input is
checked before the first write; a failed write stops the import (exit 1) with the keys
before it written. With -prefix, every key is written under that prefix.`,
		Example: `  wolke kv import @config.json
  wolke kv export config/ | wolke kv import -http-addr=10.0.0.2:8500 -
  wolke kv import -prefix=staging @config.json`,
		Args: kvArgs(1, 1, "DATA"),
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", "write every key under this prefix (joined with \"/\")")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if args[0] == "" {
			return usageErrorf("empty DATA argument")
		}
		data, err := readData(args[0], cmd.InOrStdin())
		if err != nil {
			return err
		}
		pairs, err := parseKVExport(data, strings.TrimPrefix(prefix, "/"))
		if err != nil {
			return err
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		out, w := cmd.OutOrStdout(), writeOpts(cmd.Context())
		for i, p := range pairs {
			if _, err := c.KV().Put(p, w); err != nil {
				return fmt.Errorf("failed writing data for key %s (%d of %d keys imported): %w", p.Key, i, len(pairs), err)
			}
			fmt.Fprintf(out, "Imported: %s\n", p.Key)
		}
		return nil
	}
	return cmd
}

// parseKVExport decodes a kv export into the pairs to write, with prefix put in front of
// every key.
func parseKVExport(data []byte, prefix string) ([]*api.KVPair, error) {
	var entries []kvExportEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("cannot parse the import data (want a JSON array as kv export prints): %w", err)
	}
	pairs := make([]*api.KVPair, 0, len(entries))
	for i, e := range entries {
		value, err := base64.StdEncoding.DecodeString(e.Value)
		if err != nil {
			return nil, fmt.Errorf("entry %d (key %q): cannot base64-decode the value: %w", i, e.Key, err)
		}
		if e.Namespace != "" && e.Namespace != "default" || e.Partition != "" && e.Partition != "default" {
			return nil, fmt.Errorf("entry %d (key %q) is in namespace %q, partition %q: wolke has only the default ones", i, e.Key, e.Namespace, e.Partition)
		}
		key := strings.TrimPrefix(e.Key, "/")
		if prefix != "" {
			// path.Join would drop the trailing "/" of a folder key.
			key = strings.TrimRight(prefix, "/") + "/" + key
		}
		if key == "" {
			return nil, fmt.Errorf("entry %d has an empty key", i)
		}
		pairs = append(pairs, &api.KVPair{Key: key, Flags: e.Flags, Value: value})
	}
	return pairs, nil
}
