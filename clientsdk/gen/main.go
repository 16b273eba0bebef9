// Command gen writes the generated part of the TypeScript SDK from package
// protocol. It runs from `go generate ./clientsdk`.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/huddle-rt/huddle/clientsdk"
)

func main() {
	protoDir := flag.String("protocol", "../protocol", "directory of package protocol's source")
	out := flag.String("out", "ts/src/gen", "output directory")
	flag.Parse()
	if err := run(*protoDir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(protoDir, out string) error {
	spec, err := clientsdk.ProtocolSpec(protoDir)
	if err != nil {
		return err
	}
	files, err := clientsdk.Generate(spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// Files that are no longer generated would go stale silently.
	old, _ := filepath.Glob(filepath.Join(out, "*.ts"))
	for _, f := range old {
		if _, ok := files[filepath.Base(f)]; !ok {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(out, n), files[n], 0o644); err != nil {
			return err
		}
	}
	return nil
}
