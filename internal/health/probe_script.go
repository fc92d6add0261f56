package health

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"
)

// scriptProbe is a script check (Nagios plugin convention): exit 0 passing,
// 1 warning, anything else (or failure to start) critical; stdout and stderr
// are captured together, keeping the last OutputMaxSize bytes. At the
// timeout the process and everything it started are killed.
type scriptProbe struct {
	argv      []string
	timeout   time.Duration
	maxOutput int
}

var _ prober = (*scriptProbe)(nil)

func newScriptProbe(def Definition) *scriptProbe {
	argv := def.Args
	if len(argv) == 0 {
		shell := def.Shell
		if shell == "" {
			shell = DefaultShell
		}
		argv = []string{shell, "-c", def.Script}
	}
	return &scriptProbe{argv: append([]string(nil), argv...), timeout: def.effectiveTimeout(), maxOutput: def.outputMaxSize()}
}

// waitDelay bounds how long Wait waits for output pipes held open by
// background grandchildren after the script itself has exited or been killed.
const waitDelay = time.Second

func (p *scriptProbe) probe(ctx context.Context) result {
	cmd := exec.CommandContext(ctx, p.argv[0], p.argv[1:]...)
	out := &tailBuffer{max: p.maxOutput}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = waitDelay
	killProcessGroup(cmd)
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		msg := fmt.Sprintf("Timed out (%s) running check", p.timeout)
		if s := out.String(); s != "" {
			msg += "\n\n" + s
		}
		return critical(msg)
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return passing(out.String())
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 1:
		return warning(out.String())
	case errors.As(err, &exitErr):
		return critical(out.String())
	default: // could not start, or I/O trouble
		s := out.String()
		if s != "" {
			s = "\n\n" + s
		}
		return critical(truncate(err.Error(), p.maxOutput) + s)
	}
}
