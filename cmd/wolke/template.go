package main

import (
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/wolke-platform/wolke/internal/confsync"
)

// newTemplateCmd is registered in watch.go's init.
func newTemplateCmd() *cobra.Command {
	var (
		specs    []string
		waitSpec string
		once     bool
		waitTime time.Duration
		cmdTO    time.Duration
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "template -template SOURCE:DESTINATION[:COMMAND]... [flags]",
		Short: "Render files from the key/value store and the catalog, and reload on change (like consul-template)",
		Long: `Render Go text/template files with data from the agent, keep them up to date, and run a
reload command when a file changed: what consul-template and confd do.

-template SOURCE:DESTINATION[:COMMAND] (repeatable) renders the template file SOURCE to
DESTINATION. DESTINATION is replaced atomically (a temporary file renamed over it) and
keeps its permission bits (0644 when new). COMMAND runs through "sh -c" after a render
changed DESTINATION, once per render (a render that leaves the file as it was runs
nothing); a failing command is logged, not fatal.

Template functions (consul-template's):
  key "K"                  the value of key K; the template is not written until K exists
  keyOrDefault "K" "DEF"   the value of K, or DEF when K does not exist
  keyExists "K"            whether K exists
  ls "PREFIX"              the keys directly under PREFIX: .Key (relative), .Path, .Value, ...
  tree "PREFIX"            every key under PREFIX, sub-folders included
  service "[TAG.]NAME[@DC]" ["any" | "passing,warning"]
                           instances of a service, passing ones by default: .Node,
                           .Address, .Port, .ID, .Name, .Tags, .ServiceMeta, .Status, ...
  services ["@DC"]         the catalog's services: .Name, .Tags
  env "NAME"               an environment variable of this process

Each template reads what its functions ask for; every key, prefix and service read gets
one blocking query, and a change renders the templates that read it again. With
-wait MIN[:MAX] a change is rendered once no other change came for MIN, but at the latest
MAX after the first change of the burst (MAX defaults to 4 × MIN); the first render is
never delayed. -once renders every template once, runs the commands and exits.

A template that does not parse is a usage error (exit 2, naming the file and line).`,
		Example: `  wolke template -template "haproxy.ctmpl:/etc/haproxy/haproxy.cfg:systemctl reload haproxy"
  wolke template -wait 2s:10s -template app.tmpl:/etc/app/app.conf:'kill -HUP $(cat /run/app.pid)'
  wolke template -once -template motd.tmpl:/etc/motd`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unexpected argument %q: templates are given with -template", args[0])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&specs, "template", nil, "SOURCE:DESTINATION[:COMMAND] to render (repeatable)")
	f.StringVar(&waitSpec, "wait", "", "MIN[:MAX]: render after MIN without changes, at most MAX after the first (default: at once)")
	f.BoolVar(&once, "once", false, "render every template once and exit")
	f.DurationVar(&waitTime, "wait-time", confsync.DefaultWaitTime, "how long one blocking query waits for a change")
	f.DurationVar(&cmdTO, "command-timeout", 30*time.Second, "kill a reload command that runs longer than this")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cf := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if len(specs) == 0 {
			return usageErrorf("missing -template SOURCE:DESTINATION[:COMMAND]")
		}
		cfg := confsync.Config{
			WaitTime:       waitTime,
			CommandTimeout: cmdTO,
			Stdout:         cmd.OutOrStdout(),
			Stderr:         cmd.ErrOrStderr(),
		}
		for _, s := range specs {
			tc, err := confsync.ParseTemplateSpec(s)
			if err != nil {
				return usageErrorf("-template: %v", err)
			}
			cfg.Templates = append(cfg.Templates, tc)
		}
		if waitSpec != "" {
			w, err := confsync.ParseWait(waitSpec)
			if err != nil {
				return usageErrorf("-wait: %v", err)
			}
			cfg.Wait = w
		}
		if waitTime <= 0 || cmdTO <= 0 {
			return usageErrorf("-wait-time and -command-timeout must be positive")
		}
		var level slog.Level
		if err := level.UnmarshalText([]byte(logLevel)); err != nil {
			return usageErrorf("-log-level %q: want debug, info, warn or error", logLevel)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
		c, closeIdle, err := longPollClient(cf)
		if err != nil {
			return err
		}
		defer closeIdle()
		cfg.Client = c
		r, err := confsync.New(cfg)
		switch {
		case errors.Is(err, confsync.ErrParse) || errors.Is(err, confsync.ErrConfig):
			return usageErrorf("%s", strings.TrimPrefix(err.Error(), "confsync: "))
		case err != nil:
			return err
		}
		if once {
			return r.Once(cmd.Context())
		}
		return r.Run(cmd.Context())
	}
	return cmd
}
