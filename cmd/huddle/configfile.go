package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// configFlag is the flag (and HUDDLE_CONFIG) naming the configuration file.
const configFlag = "config"

// applyFile sets every flag in set=false from the TOML file at path: each
// key is a flag's name (api-key = "…", rule = ["…", "…"]). Flags the
// command line or the environment set keep their value. An unknown key, a
// table, or a value a flag refuses is an error naming the file and key.
func applyFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	var m map[string]any
	if _, err := toml.DecodeFile(path, &m); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, table := m[k].(map[string]any); table {
			return fmt.Errorf("--config %s: [%s]: tables are not keys: write every flag at the top level", path, k)
		}
		f := fs.Lookup(k)
		if f == nil || k == configFlag {
			return fmt.Errorf("--config %s: unknown key %q (keys are the flags' names, see huddle --help)", path, k)
		}
		if set[k] {
			continue // the environment or the command line wins
		}
		vals, err := tomlValues(m[k])
		if err != nil {
			return fmt.Errorf("--config %s: %s: %w", path, k, err)
		}
		if _, isList := f.Value.(*listFlag); !isList && len(vals) != 1 {
			return fmt.Errorf("--config %s: %s takes one value, not a list", path, k)
		}
		for _, v := range vals {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("--config %s: %s = %q: %w", path, k, v, err)
			}
		}
	}
	return nil
}

// tomlValues turns a TOML value into the strings a flag is Set with.
func tomlValues(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case bool:
		return []string{strconv.FormatBool(v)}, nil
	case int64:
		return []string{strconv.FormatInt(v, 10)}, nil
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, err := tomlValues(e)
			if err != nil || len(s) != 1 {
				return nil, errors.New("a list must hold plain values")
			}
			out = append(out, s[0])
		}
		return out, nil
	case map[string]any:
		return nil, errors.New("tables are not keys: write every flag at the top level")
	}
	return nil, fmt.Errorf("unsupported value %v", v)
}

// secretFlags are masked by `huddle config`.
func secretFlag(name string) bool {
	return strings.Contains(name, "secret") || name == "api-key" || strings.Contains(name, "password")
}

// printConfig writes the effective configuration as a TOML file that
// --config takes back, secrets masked, one commented line per flag.
func printConfig(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintln(w, "# huddle: the effective configuration (defaults, then --config, then the")
	fmt.Fprintln(w, "# environment, then the command line); secrets are masked.")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == configFlag {
			return
		}
		var val string
		switch v := f.Value.(type) {
		case *listFlag:
			parts := make([]string, len(*v))
			for i, s := range *v {
				parts[i] = strconv.Quote(s)
			}
			val = "[" + strings.Join(parts, ", ") + "]"
		default:
			s := f.Value.String()
			switch {
			case secretFlag(f.Name) && s != "":
				val = strconv.Quote("****")
			case isBoolFlag(f):
				val = s
			default:
				val = strconv.Quote(s)
			}
		}
		fmt.Fprintf(w, "\n# %s\n%s = %s\n", f.Usage, f.Name, val)
	})
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}
