//go:build !linux

package redistest

import "os/exec"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal; cleanups still stop the server after every test that ends
// normally.
func setParentDeathSignal(*exec.Cmd) {}
