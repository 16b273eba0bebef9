package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/huddle-rt/huddle/internal/auth"
)

// command runs a subcommand (huddle token, huddle config, huddle version)
// when args name one; ok reports whether they did.
func command(args []string, stdout io.Writer) (ok bool, err error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return true, nil
	case "token":
		return true, tokenCommand(args[1:], stdout)
	case "health":
		return true, healthCommand(args[1:], stdout)
	case "config":
		_, fs, err := parseFlags(args[1:])
		if err != nil {
			return true, err
		}
		printConfig(fs, stdout)
		return true, nil
	}
	return false, nil
}

// version and commit may be set at build time (go build -ldflags "-X
// main.version=v1.2.3 -X main.commit=abc1234"), for builds without VCS
// stamping (-buildvcs=false, a source tarball, a container context).
var version, commit string

// versionLine is the binary's version and the commit it was built from,
// as the build recorded them.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "huddle " + cmp.Or(version, "(unknown)") + " (no build information)"
	}
	line := "huddle " + cmp.Or(version, bi.Main.Version)
	rev, at := commit, ""
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = cmp.Or(rev, s.Value)
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		line += " (commit " + rev
		if at != "" {
			line += ", " + at
		}
		if modified {
			line += ", with local changes"
		}
		line += ")"
	}
	return line + " " + bi.GoVersion
}

// streamGrants is a repeatable --stream PATTERN=OPS flag.
type streamGrants map[string][]string

func (g streamGrants) String() string { return fmt.Sprint(map[string][]string(g)) }
func (g streamGrants) Set(v string) error {
	pattern, ops, ok := strings.Cut(v, "=")
	if !ok || pattern == "" || ops == "" {
		return fmt.Errorf("want PATTERN=OPS, e.g. doc:*=sub,pub (got %q)", v)
	}
	for _, op := range strings.Split(ops, ",") {
		switch op {
		case "sub", "pub", "whisper", "presence", "history":
		default:
			return fmt.Errorf("unknown op %q (sub, pub, whisper, presence, history)", op)
		}
		g[pattern] = append(g[pattern], op)
	}
	return nil
}

// tokenCommand mints a client token: a Huddle JWT (HS256 with --secret)
// or, with --jid, an AnyCable "jid" token for /cable.
func tokenCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("huddle token", flag.ContinueOnError)
	secret := fs.String("secret", "", "HS256 secret the server verifies tokens with (--secret of the server; default $HUDDLE_SECRET)")
	user := fs.String("user", "", "the token's subject (connected.user)")
	info := fs.String("info", "", `the user's info, a JSON object shown to others in presence, e.g. '{"name":"Ann"}'`)
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid (0: no expiry)")
	jid := fs.String("jid", "", `mint an AnyCable jid token for /cable instead: the connection identifiers as JSON, e.g. '{"user_id":42}'`)
	streams := streamGrants{}
	fs.Var(streams, "stream", "a grant PATTERN=OPS (repeatable), e.g. 'doc:*=sub,pub'; ops: sub, pub, whisper, presence, history (default: none, so the server's rules decide)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: huddle token --secret S --user ID [--info JSON] [--stream PATTERN=OPS]... [--ttl D]\n       huddle token --secret S --jid JSON [--ttl D]\n\nPrints a signed client token.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		*secret = os.Getenv(envName("secret"))
	}
	if len(*secret) < minSecretLen {
		return fmt.Errorf("token: --secret (or HUDDLE_SECRET) of at least %d bytes is required", minSecretLen)
	}
	var exp time.Time
	if *ttl > 0 {
		exp = time.Now().Add(*ttl)
	}
	if *jid != "" {
		if !json.Valid([]byte(*jid)) {
			return errors.New("token: --jid must be JSON (the connection identifiers)")
		}
		claims := jwt.MapClaims{"ext": *jid}
		if !exp.IsZero() {
			claims["exp"] = exp.Unix()
		}
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(*secret))
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	}
	if *user == "" {
		return errors.New("token: --user is required (or --jid for /cable)")
	}
	var infoMap map[string]any
	if *info != "" {
		if err := json.Unmarshal([]byte(*info), &infoMap); err != nil {
			return fmt.Errorf("token: --info must be a JSON object: %w", err)
		}
	}
	var grants map[string][]string
	if len(streams) > 0 {
		grants = streams
	}
	tok, err := auth.SignHS256([]byte(*secret), *user, exp, infoMap, grants)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// healthCommand asks a running server's /healthz, for container health
// checks in an image that has nothing but this binary: exit 0 when it
// answers 200.
func healthCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("huddle health", flag.ContinueOnError)
	addr := fs.String("addr", cmp.Or(os.Getenv(envName("addr")), "127.0.0.1:8080"), "the server's --addr (default $HUDDLE_ADDR)")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("health: --addr %q: %w", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // listening everywhere: ask over loopback
	}
	c := &http.Client{Timeout: *timeout}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/healthz")
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: /healthz answered %s", resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
