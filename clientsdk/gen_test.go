package clientsdk

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/huddle-rt/huddle/clientsdk/internal/fixture"
	"github.com/huddle-rt/huddle/protocol"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func fixtureSpec(t *testing.T) Spec {
	t.Helper()
	spec, err := NewSpec("internal/fixture", fixture.Client, fixture.Server, map[string]string{"msgpack": "fx.msgpack", "json": "fx.json"})
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TestGenerate_Golden generates from the fixture types, which cover every
// supported field kind, and compares with testdata/fixture/*.golden
// (go test ./clientsdk -update rewrites them).
func TestGenerate_Golden(t *testing.T) {
	files, err := Generate(fixtureSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fixture")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range sortedNames(files) {
		golden := filepath.Join(dir, name+".golden")
		if *update {
			if err := os.WriteFile(golden, files[name], 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test ./clientsdk -update)", err)
		}
		if !bytes.Equal(files[name], want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, firstDiff(string(want), string(files[name])))
		}
	}
}

// TestGenerate_FixtureShapes checks the mapping rules on the fixture's
// output directly, so a wrong -update cannot bless a wrong mapping.
func TestGenerate_FixtureShapes(t *testing.T) {
	files, err := Generate(fixtureSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	msgs, val, codes, codec := string(files["messages.ts"]), string(files["validate.ts"]), string(files["codes.ts"]), string(files["codec.ts"])
	for _, want := range []string{
		"/** Hello is a client message with every scalar kind. */\nexport interface Hello {",
		"  id: number;\n  name: string;\n  ratio?: number;\n  ok: boolean;\n  maybe?: boolean;\n  data: unknown;\n  extra?: unknown;\n  at?: Point;\n  code: number;\n}",
		"  /** required list: null becomes [] */\n  points: Point[];\n  tags?: string[];\n  origin: Point;",
		"export interface HelloMsg extends Hello {\n  t: \"hello\";\n}",
		"export interface BeatMsg extends Beat {\n  t: \"beat\";\n}",
		"export type ClientMessage =\n  | BeatMsg\n  | HelloMsg;",
		"export type ServerMessage =\n  | BeatMsg\n  | WelcomeMsg;",
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("messages.ts lacks:\n%s", want)
		}
	}
	if strings.Contains(msgs, "hidden") || strings.Contains(msgs, "Skip") || strings.Count(msgs, "export interface BeatMsg") != 1 {
		t.Error("unexported or skipped fields generated, or a shared message twice")
	}
	for _, want := range []string{
		`if (v["points"] === null || v["points"] === undefined) v["points"] = [];`,
		`if (!(validPoint(v["origin"]))) return false;`,
		`if (v["at"] !== undefined && !(validPoint(v["at"]))) return false;`,
		`if (!(typeof v["ok"] === "boolean")) return false;`,
		"export function isBeat(x: { t: string }): x is m.BeatMsg",
		"export function isWelcome(x: m.ServerMessage): x is m.WelcomeMsg",
		"export function isHello(x: m.ClientMessage): x is m.HelloMsg",
	} {
		if !strings.Contains(val, want) {
			t.Errorf("validate.ts lacks:\n%s", want)
		}
	}
	if strings.Contains(val, `v["data"]) return false`) {
		t.Error("a required payload (unknown) must accept any value")
	}
	for _, want := range []string{"  /** all good */\n  Fine: 4000,", "Broken: 4500", "new Set([4500])"} {
		if !strings.Contains(codes, want) {
			t.Errorf("codes.ts lacks %q", want)
		}
	}
	if !strings.Contains(codec, `json: "fx.json",`) || !strings.Contains(codec, `"hello": true,`) {
		t.Error("codec.ts lacks the subprotocols or the client types")
	}
}

// TestGenerate_UpToDate fails while the committed clientsdk/ts/src/gen is
// not what package protocol generates today.
func TestGenerate_UpToDate(t *testing.T) {
	spec, err := ProtocolSpec("../protocol")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("ts", "src", "gen")
	on, _ := filepath.Glob(filepath.Join(dir, "*.ts"))
	if len(on) != len(files) {
		t.Errorf("%s has %d files, the generator writes %d: run go generate ./clientsdk", dir, len(on), len(files))
	}
	for _, name := range sortedNames(files) {
		have, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%v: run go generate ./clientsdk", err)
			continue
		}
		if !bytes.Equal(have, files[name]) {
			t.Errorf("%s is stale: run go generate ./clientsdk\n%s", name, firstDiff(string(have), string(files[name])))
		}
	}
}

// TestProtocolSpec_Complete checks that every message and every code of
// package protocol reaches the SDK, with its documentation.
func TestProtocolSpec_Complete(t *testing.T) {
	spec, err := ProtocolSpec("../protocol")
	if err != nil {
		t.Fatal(err)
	}
	files, err := Generate(spec)
	if err != nil {
		t.Fatal(err)
	}
	msgs := string(files["messages.ts"])
	for side, reg := range map[string]map[string]func() protocol.Message{"client": protocol.ClientMessages, "server": protocol.ServerMessages} {
		for typ, mk := range reg {
			if !strings.Contains(msgs, "  t: \""+typ+"\";") {
				t.Errorf("%s message %q missing", side, typ)
			}
			name := strings.TrimPrefix(strings.TrimPrefix(typeName(mk()), "*"), "protocol.")
			if spec.Docs[name] == "" {
				t.Errorf("type %s has no doc comment", name)
			}
		}
	}
	codes := string(files["codes.ts"])
	for _, c := range []protocol.Code{protocol.CodeNormal, protocol.CodeSlowConsumer, protocol.CodeInsufficientState, protocol.CodeNoPong, protocol.CodeInternal} {
		if !strings.Contains(codes, ": "+itoa(int(c))+",") {
			t.Errorf("code %d missing", c)
		}
	}
	if n := len(spec.Codes); n != 12 {
		t.Errorf("%d codes, want the 12 of protocol v1", n)
	}
}

func TestGenerate_Errors(t *testing.T) {
	type withMap struct {
		M map[string]int `msgpack:"m"`
	}
	type withFunc struct {
		F func() `msgpack:"f"`
	}
	for name, reg := range map[string]map[string]func() protocol.Message{
		"map field":  {"x": func() protocol.Message { return msg[withMap]{} }},
		"func field": {"x": func() protocol.Message { return msg[withFunc]{} }},
		"not struct": {"n": func() protocol.Message { return notStruct(1) }},
	} {
		_, err := Generate(Spec{Client: reg, Server: reg})
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", name, err)
		}
	}
}

type msg[T any] struct {
	V T `msgpack:"v"`
}

func (msg[T]) Type() string { return "x" }

type notStruct int

func (notStruct) Type() string { return "n" }

func typeName(v any) string { return reflect.TypeOf(v).String() }

func itoa(i int) string { return strconv.Itoa(i) }

// firstDiff shows the first differing line of two texts.
func firstDiff(want, have string) string {
	w, h := strings.Split(want, "\n"), strings.Split(have, "\n")
	for i := 0; i < len(w) || i < len(h); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(h) {
			b = h[i]
		}
		if a != b {
			return "line " + itoa(i+1) + ":\n  want: " + a + "\n  have: " + b
		}
	}
	return "(no line differs)"
}
