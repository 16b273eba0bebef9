package redistest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel kill the server if the test binary
// dies without running its cleanups (a panic, a -timeout). Strictly the
// signal follows the OS thread that started the child, which the Go
// runtime keeps alive for the life of an ordinary test.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
