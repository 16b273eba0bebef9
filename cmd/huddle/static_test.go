package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestStaticBinary: built as the Dockerfile builds it (CGO_ENABLED=0), the
// binary has no dynamic loader and no shared libraries, and runs in an
// empty root directory (no libc, no /etc, nothing): what the image's
// scratch base gives it. No container runtime is needed for that, and none
// is assumed here.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("checks a Linux ELF binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	root := t.TempDir()
	bin := filepath.Join(root, "huddle")
	cmd := exec.Command(goTool, "build", "-trimpath", "-buildvcs=false", "-ldflags", "-s -w -X main.commit=static-test", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary asks for a dynamic loader (PT_INTERP): it is not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("the binary needs shared libraries: %v", libs)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the run in an empty root directory (chroot) is skipped")
		return
	}
	out, err := exec.Command("chroot", root, "/huddle", "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "huddle ") || !strings.Contains(string(out), "static-test") {
		t.Fatalf("huddle version in an empty root: %v: %s", err, out)
	}
}
