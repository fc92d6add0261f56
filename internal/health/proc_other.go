//go:build !unix

package health

import "os/exec"

// killProcessGroup: elsewhere only the script process itself is killed
// (exec.CommandContext's default).
func killProcessGroup(*exec.Cmd) {}
