//go:build unix

package health

import (
	"os/exec"
	"syscall"
)

// killProcessGroup runs the command in its own process group and makes
// context cancellation kill the whole group, so that a timed-out script
// does not leave its children behind (Consul's KillCommandSubtree).
func killProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
