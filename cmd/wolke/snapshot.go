package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/fsm"
	"github.com/wolke-platform/wolke/internal/snapshot"
	"github.com/wolke-platform/wolke/internal/state"
)

func init() { subcommands = append(subcommands, newSnapshotCmd) }

// The snapshot commands follow `consul snapshot save|restore|inspect`. A snapshot file
// is a gzip'd tar of meta.json, state.bin and SHA256SUMS (see internal/snapshot). Every
// command checks a file completely (archive, checksums, and that the state parses)
// before it trusts it: save before it keeps what it received, restore before it sends
// anything, inspect before it prints.
func newSnapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, restore and inspect snapshots of the replicated state (like consul snapshot)",
		Long: `Save a point-in-time snapshot of the whole replicated state to a file, restore one
into a running cluster, or inspect a file offline.

The agent is found at -http-addr, else WOLKE_HTTP_ADDR, else CONSUL_HTTP_ADDR, else
127.0.0.1:8500; the ACL token is -token, else WOLKE_TOKEN, else the file named by
CONSUL_HTTP_TOKEN_FILE, else CONSUL_HTTP_TOKEN.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown snapshot subcommand %q: want save, restore or inspect", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newSnapshotSaveCmd(), newSnapshotRestoreCmd(), newSnapshotInspectCmd())
	return cmd
}

// fileArg accepts exactly one FILE argument.
func fileArg(_ *cobra.Command, args []string) error {
	switch {
	case len(args) == 0 || args[0] == "":
		return usageErrorf("missing FILE argument")
	case len(args) > 1:
		return usageErrorf("too many arguments (expected 1, got %d)", len(args))
	}
	return nil
}

func newSnapshotSaveCmd() *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "save [flags] FILE",
		Short: "Save a snapshot of the replicated state to FILE",
		Long: `Save a point-in-time snapshot of the whole replicated state to FILE. The leader takes
it, unless -stale lets the agent's own server answer from its possibly stale state. The
download goes to FILE.tmp and is checked completely; only then is it renamed to FILE,
so FILE is never a partial snapshot.`,
		Example: `  wolke snapshot save backup.snap
  wolke snapshot save -stale -http-addr=10.0.0.3:8500 backup.snap`,
		Args: fileArg,
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "let any server answer, possibly with stale data")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		file := args[0]
		c, err := cf.client()
		if err != nil {
			return err
		}
		body, _, err := c.Snapshot().Save(queryOpts(cmd.Context(), stale))
		if err != nil {
			return fmt.Errorf("saving a snapshot: %w", err)
		}
		defer body.Close()
		tmp := file + ".tmp"
		info, err := download(body, tmp)
		if err != nil {
			os.Remove(tmp)
			return err
		}
		if err := os.Rename(tmp, file); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("saving a snapshot: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Saved and verified snapshot to index %d\n", info.meta.Index)
		return nil
	}
	return cmd
}

// download writes body to path, durably, and checks what arrived.
func download(body io.Reader, path string) (snapshotInfo, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return snapshotInfo{}, fmt.Errorf("saving a snapshot: %w", err)
	}
	_, err = io.Copy(f, body)
	if err != nil {
		err = fmt.Errorf("downloading the snapshot: %w", err)
	} else if err = f.Sync(); err != nil {
		err = fmt.Errorf("saving a snapshot: %w", err)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("saving a snapshot: %w", cerr)
	}
	if err != nil {
		return snapshotInfo{}, err
	}
	info, err := inspectSnapshot(path)
	if err != nil {
		return snapshotInfo{}, fmt.Errorf("the agent sent an invalid snapshot: %w", err)
	}
	return info, nil
}

func newSnapshotRestoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restore [flags] FILE",
		Short: "Replace the replicated state with the snapshot in FILE",
		Long: `Restore the snapshot in FILE into the running cluster: every key, on every server, is
replaced by the snapshot's contents. FILE is checked completely first; a corrupt or
truncated file is refused (exit 1) and nothing is sent. The agent checks it again and
the leader restores it through Raft, so every server gets it.`,
		Example: `  wolke snapshot restore backup.snap`,
		Args:    fileArg,
	}
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		file := args[0]
		info, err := inspectSnapshot(file)
		if err != nil {
			return err
		}
		c, err := cf.client()
		if err != nil {
			return err
		}
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := c.Snapshot().Restore(writeOpts(cmd.Context()), f); err != nil {
			return fmt.Errorf("restoring the snapshot: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "Restored snapshot %s (index %d)\n", info.meta.ID, info.meta.Index)
		return nil
	}
	return cmd
}

func newSnapshotInspectCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Check a snapshot file and describe it (offline)",
		Long: `Check the snapshot in FILE completely and print its metadata and contents: ID, state
size in bytes, Raft index and term, format version, the wolke build that wrote it, when
it was taken, the number of KV entries and tombstones, and the file's size. No agent is
needed. A corrupt or truncated file is an error (exit 1).`,
		Example: `  wolke snapshot inspect backup.snap`,
		Args:    fileArg,
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		info, err := inspectSnapshot(args[0])
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
		m := info.meta
		fmt.Fprintf(tw, "ID\t%s\n", m.ID)
		fmt.Fprintf(tw, "Size\t%d\n", m.Size)
		fmt.Fprintf(tw, "Index\t%d\n", m.Index)
		fmt.Fprintf(tw, "Term\t%d\n", m.Term)
		fmt.Fprintf(tw, "Version\t%d\n", m.Version)
		fmt.Fprintf(tw, "Build\t%s\n", m.Build)
		fmt.Fprintf(tw, "Created\t%s\n", m.Created.Format(time.RFC3339))
		fmt.Fprintf(tw, "KV entries\t%d\n", info.kvs)
		fmt.Fprintf(tw, "Tombstones\t%d\n", info.tombstones)
		fmt.Fprintf(tw, "File size\t%d\n", info.fileSize)
		return tw.Flush()
	}
	return cmd
}

// snapshotInfo is what a complete check of a snapshot file found.
type snapshotInfo struct {
	meta            snapshot.Meta
	kvs, tombstones int
	fileSize        int64
}

// inspectSnapshot checks the file at path the way the agent checks a restore (archive,
// checksums, then the state parsed into a scratch store) and counts what it holds.
func inspectSnapshot(path string) (snapshotInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshotInfo{}, err
	}
	defer f.Close()
	var info snapshotInfo
	if st, err := f.Stat(); err == nil {
		info.fileSize = st.Size()
	}
	arc, err := snapshot.Read(f, snapshot.Options{})
	if err != nil {
		return info, fmt.Errorf("%s is not a valid snapshot: %w", path, err)
	}
	defer arc.Close()
	info.meta = arc.Meta
	store, err := state.New()
	if err != nil {
		return info, err
	}
	if err := fsm.ReadSnapshot(arc.State(), store); err != nil {
		return info, fmt.Errorf("%s is not a valid snapshot: %s: %w", path, snapshot.StateFile, err)
	}
	view := store.Snapshot()
	defer view.Close()
	view.KVs(func(*state.KVEntry) error { info.kvs++; return nil })
	view.Tombstones(func(state.Tombstone) error { info.tombstones++; return nil })
	return info, nil
}
