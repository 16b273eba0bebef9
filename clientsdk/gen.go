package clientsdk

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/huddle-rt/huddle/protocol"
)

// Spec is what the generator reads: the message registries of both
// directions, the codes, and the documentation of the types.
type Spec struct {
	// Client and Server map each "t" to a constructor, as
	// protocol.ClientMessages and protocol.ServerMessages do.
	Client, Server map[string]func() protocol.Message
	// Codes are the close and error codes, in order.
	Codes []Code
	// Subprotocols maps a codec name ("msgpack", "json") to its
	// Sec-WebSocket-Protocol name.
	Subprotocols map[string]string
	// Docs holds the doc comments of the Go source, keyed by type name and
	// by "Type.Field".
	Docs map[string]string
}

// Code is one close or error code.
type Code struct {
	Name      string // e.g. "SlowConsumer"
	Value     int
	Text      string // e.g. "slow consumer"
	Reconnect bool   // whether a client should reconnect after it
	Doc       string
}

// Errors of the generator.
var (
	ErrUnsupported = errors.New("clientsdk: unsupported Go type")
	ErrConflict    = errors.New("clientsdk: conflicting definitions")
)

// ProtocolSpec returns the Spec of package protocol, with the doc comments
// and code names read from its source in dir.
func ProtocolSpec(dir string) (Spec, error) {
	return NewSpec(dir, protocol.ClientMessages, protocol.ServerMessages, map[string]string{
		"msgpack": protocol.SubprotocolMsgpack,
		"json":    protocol.SubprotocolJSON,
	})
}

// NewSpec returns the Spec of the registries client and server, whose
// types and Code constants (named Code*) are declared in the Go source in
// dir.
func NewSpec(dir string, client, server map[string]func() protocol.Message, subprotocols map[string]string) (Spec, error) {
	docs, consts, err := ReadSource(dir)
	if err != nil {
		return Spec{}, err
	}
	var codes []Code
	for _, c := range consts {
		if c.typ != "Code" || !strings.HasPrefix(c.name, "Code") {
			continue
		}
		code := protocol.Code(c.value)
		codes = append(codes, Code{
			Name:      strings.TrimPrefix(c.name, "Code"),
			Value:     c.value,
			Text:      code.String(),
			Reconnect: code.Reconnect(),
			Doc:       c.doc,
		})
	}
	if len(codes) == 0 {
		return Spec{}, fmt.Errorf("clientsdk: no Code constants in %s", dir)
	}
	return Spec{Client: client, Server: server, Codes: codes, Subprotocols: subprotocols, Docs: docs}, nil
}

type constDecl struct {
	name, typ, doc string
	value          int
}

// ReadSource parses the Go files of dir (tests excluded) and returns the
// doc comments of types and fields, and the integer constants declared
// with an explicit type and a literal value.
func ReadSource(dir string) (map[string]string, []constDecl, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("clientsdk: read %s: %w", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, e := range entries { // sorted by name
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
		if err != nil {
			return nil, nil, fmt.Errorf("clientsdk: parse %s: %w", n, err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, nil, fmt.Errorf("clientsdk: no Go files in %s", dir)
	}
	docs := map[string]string{}
	var consts []constDecl
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, spec := range gd.Specs {
				switch s := spec.(type) {
				case *ast.TypeSpec:
					doc := s.Doc
					if doc == nil && len(gd.Specs) == 1 {
						doc = gd.Doc
					}
					docs[s.Name.Name] = text(doc)
					if st, ok := s.Type.(*ast.StructType); ok {
						for _, fld := range st.Fields.List {
							d := text(fld.Doc)
							if d == "" {
								d = text(fld.Comment)
							}
							for _, n := range fld.Names {
								docs[s.Name.Name+"."+n.Name] = d
							}
						}
					}
				case *ast.ValueSpec:
					var typ string
					switch t := s.Type.(type) {
					case *ast.Ident:
						typ = t.Name
					case *ast.SelectorExpr:
						typ = t.Sel.Name
					}
					if typ == "" || len(s.Values) != len(s.Names) {
						continue
					}
					for i, n := range s.Names {
						lit, ok := s.Values[i].(*ast.BasicLit)
						if !ok || lit.Kind != token.INT {
							continue
						}
						v, err := strconv.Atoi(lit.Value)
						if err != nil {
							continue
						}
						consts = append(consts, constDecl{name: n.Name, typ: typ, doc: text(s.Comment), value: v})
					}
				}
			}
		}
	}
	return docs, consts, nil
}

func text(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	return strings.TrimSpace(g.Text())
}

// Generate returns the TypeScript files of spec by name.
func Generate(spec Spec) (map[string][]byte, error) {
	g := &gen{spec: spec, structs: map[string]reflect.Type{}}
	client, err := g.messages(spec.Client)
	if err != nil {
		return nil, err
	}
	server, err := g.messages(spec.Server)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{
		"messages.ts": g.messagesFile(client, server),
		"codes.ts":    g.codesFile(),
		"validate.ts": g.validateFile(client, server),
		"codec.ts":    g.codecFile(),
		"index.ts":    []byte(header + "export * from \"./messages.js\";\nexport * from \"./codes.js\";\nexport * from \"./validate.js\";\nexport * from \"./codec.js\";\n"),
	}
	return files, nil
}

const header = "// Code generated by clientsdk/gen from package protocol; DO NOT EDIT.\n\n"

type gen struct {
	spec    Spec
	structs map[string]reflect.Type // every struct type reached, by name
}

// message is one entry of a registry.
type message struct {
	t    string
	name string // Go type name
}

var (
	rawType  = reflect.TypeOf(protocol.Raw(nil))
	codeType = reflect.TypeOf(protocol.Code(0))
)

// messages resolves a registry into sorted entries and collects the struct
// types they reach.
func (g *gen) messages(reg map[string]func() protocol.Message) ([]message, error) {
	var out []message
	for t, mk := range reg {
		rt := reflect.TypeOf(mk())
		for rt.Kind() == reflect.Pointer {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct {
			return nil, fmt.Errorf("%w: message %q is %s", ErrUnsupported, t, rt)
		}
		if err := g.collect(rt); err != nil {
			return nil, fmt.Errorf("message %q: %w", t, err)
		}
		out = append(out, message{t: t, name: rt.Name()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].t < out[j].t })
	return out, nil
}

func (g *gen) collect(rt reflect.Type) error {
	if prev, ok := g.structs[rt.Name()]; ok {
		if prev != rt {
			return fmt.Errorf("%w: two struct types named %s", ErrConflict, rt.Name())
		}
		return nil
	}
	g.structs[rt.Name()] = rt
	for _, f := range fields(rt) {
		if _, err := g.tsType(f.typ); err != nil {
			return fmt.Errorf("%s.%s: %w", rt.Name(), f.goName, err)
		}
		if st := structOf(f.typ); st != nil {
			if err := g.collect(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// field is one wire field of a struct.
type field struct {
	goName, key string
	typ         reflect.Type
	optional    bool
}

func fields(rt reflect.Type) []field {
	var out []field
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		tag := f.Tag.Get("msgpack")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, field{
			goName:   f.Name,
			key:      name,
			typ:      f.Type,
			optional: strings.Contains(","+opts+",", ",omitempty,") || f.Type.Kind() == reflect.Pointer,
		})
	}
	return out
}

// structOf returns the struct type under pointers and slices, or nil.
func structOf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice && t != rawType {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct {
		return t
	}
	return nil
}

func (g *gen) tsType(t reflect.Type) (string, error) {
	switch {
	case t == rawType:
		return "unknown", nil
	case t == codeType:
		return "number", nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.tsType(t.Elem())
	case reflect.String:
		return "string", nil
	case reflect.Bool:
		return "boolean", nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number", nil
	case reflect.Slice:
		el, err := g.tsType(t.Elem())
		if err != nil {
			return "", err
		}
		return el + "[]", nil
	case reflect.Struct:
		if t.Name() == "" {
			return "", fmt.Errorf("%w: anonymous struct", ErrUnsupported)
		}
		return t.Name(), nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnsupported, t)
}

func (g *gen) sortedStructs() []reflect.Type {
	out := make([]reflect.Type, 0, len(g.structs))
	for _, t := range g.structs {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// msgName is the TypeScript name of a message: its fields plus "t".
func msgName(m message) string { return m.name + "Msg" }

func docComment(b *bytes.Buffer, indent, doc string) {
	if doc == "" {
		return
	}
	lines := strings.Split(doc, "\n")
	if len(lines) == 1 {
		fmt.Fprintf(b, "%s/** %s */\n", indent, lines[0])
		return
	}
	fmt.Fprintf(b, "%s/**\n", indent)
	for _, l := range lines {
		fmt.Fprintf(b, "%s * %s\n", indent, l)
	}
	fmt.Fprintf(b, "%s */\n", indent)
}

func (g *gen) messagesFile(client, server []message) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("// Field shapes of every protocol type. Payload fields (data, state, info)\n// are unknown: any msgpack or JSON value.\n\n")
	for _, t := range g.sortedStructs() {
		docComment(&b, "", g.spec.Docs[t.Name()])
		fmt.Fprintf(&b, "export interface %s {\n", t.Name())
		for _, f := range fields(t) {
			docComment(&b, "  ", g.spec.Docs[t.Name()+"."+f.goName])
			ts, _ := g.tsType(f.typ)
			opt := ""
			if f.optional {
				opt = "?"
			}
			fmt.Fprintf(&b, "  %s%s: %s;\n", f.key, opt, ts)
		}
		b.WriteString("}\n\n")
	}
	written := map[string]bool{}
	writeMsgs := func(side string, ms []message) {
		fmt.Fprintf(&b, "// ---- %s messages ----\n\n", side)
		for _, m := range ms {
			if written[msgName(m)] {
				continue
			}
			written[msgName(m)] = true
			fmt.Fprintf(&b, "/** The %q message; see {@link %s}. */\n", m.t, m.name)
			fmt.Fprintf(&b, "export interface %s extends %s {\n  t: %q;\n}\n\n", msgName(m), m.name, m.t)
		}
	}
	writeMsgs("client -> server", client)
	writeMsgs("server -> client", server)
	union := func(name, doc string, ms []message) {
		fmt.Fprintf(&b, "/** %s */\nexport type %s =", doc, name)
		for _, m := range ms {
			fmt.Fprintf(&b, "\n  | %s", msgName(m))
		}
		b.WriteString(";\n\n")
		fmt.Fprintf(&b, "/** The \"t\" values of %s. */\nexport type %sType = %s[\"t\"];\n\n", name, name, name)
	}
	union("ClientMessage", "Every message a client sends.", client)
	union("ServerMessage", "Every message the server sends.", server)
	return trimEnd(b.Bytes())
}

func (g *gen) codesFile() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("/** Close and error codes of protocol v1, by name. */\nexport const Code = {\n")
	for _, c := range g.spec.Codes {
		docComment(&b, "  ", c.Doc)
		fmt.Fprintf(&b, "  %s: %d,\n", c.Name, c.Value)
	}
	b.WriteString("} as const;\n\n/** A code's name, e.g. \"SlowConsumer\". */\nexport type CodeName = keyof typeof Code;\n\n")
	b.WriteString("/** A code's short text, e.g. \"slow consumer\". */\nexport const codeText: Readonly<Record<number, string>> = {\n")
	for _, c := range g.spec.Codes {
		fmt.Fprintf(&b, "  %d: %q,\n", c.Value, c.Text)
	}
	b.WriteString("};\n\n/** Codes after which a client should reconnect (the others end the session). */\nconst reconnectCodes: ReadonlySet<number> = new Set([")
	first := true
	for _, c := range g.spec.Codes {
		if c.Reconnect {
			if !first {
				b.WriteString(", ")
			}
			first = false
			fmt.Fprintf(&b, "%d", c.Value)
		}
	}
	b.WriteString("]);\n\n")
	b.WriteString(`/**
 * codeReconnects reports whether a client closed with code should reconnect.
 * WebSocket close codes below 4000 (network trouble, abnormal closes) do.
 */
export function codeReconnects(code: number): boolean {
  return code < 4000 || reconnectCodes.has(code);
}
`)
	return b.Bytes()
}

// check returns a TypeScript expression that is true when expr has type t.
func (g *gen) check(expr string, t reflect.Type) string {
	switch {
	case t == rawType:
		return "true"
	case t == codeType:
		return "typeof " + expr + " === \"number\""
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.check(expr, t.Elem())
	case reflect.String:
		return "typeof " + expr + " === \"string\""
	case reflect.Bool:
		return "typeof " + expr + " === \"boolean\""
	case reflect.Slice:
		return "Array.isArray(" + expr + ") && (" + expr + " as unknown[]).every((e) => " + g.check("e", t.Elem()) + ")"
	case reflect.Struct:
		return "valid" + t.Name() + "(" + expr + ")"
	}
	return "typeof " + expr + " === \"number\""
}

func (g *gen) validateFile(client, server []message) []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString(`import type * as m from "./messages.js";

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// Each validator checks the fields it knows and ignores the others (forward
// compatibility). It also normalizes what Go's encoders produce for empty
// values: null in an optional field is removed, null in a list becomes [].

`)
	for _, t := range g.sortedStructs() {
		fmt.Fprintf(&b, "/** valid%[1]s reports whether v is a well-formed {@link m.%[1]s}. */\n", t.Name())
		fmt.Fprintf(&b, "export function valid%s(v: unknown): v is m.%s {\n  if (!isObj(v)) return false;\n", t.Name(), t.Name())
		for _, f := range fields(t) {
			acc := "v[" + strconv.Quote(f.key) + "]"
			if f.optional {
				fmt.Fprintf(&b, "  if (%s === null) delete %s;\n", acc, acc)
				if f.typ != rawType {
					fmt.Fprintf(&b, "  if (%s !== undefined && !(%s)) return false;\n", acc, g.check(acc, f.typ))
				}
				continue
			}
			if f.typ.Kind() == reflect.Slice && f.typ != rawType {
				fmt.Fprintf(&b, "  if (%s === null || %s === undefined) %s = [];\n", acc, acc, acc)
			}
			if f.typ != rawType {
				fmt.Fprintf(&b, "  if (!(%s)) return false;\n", g.check(acc, f.typ))
			}
		}
		b.WriteString("  return true;\n}\n\n")
	}
	table := func(name string, ms []message) {
		fmt.Fprintf(&b, "const %s: Readonly<Record<string, (v: unknown) => boolean>> = {\n", name)
		for _, msg := range ms {
			fmt.Fprintf(&b, "  %q: valid%s,\n", msg.t, msg.name)
		}
		b.WriteString("};\n\n")
	}
	table("serverValidators", server)
	table("clientValidators", client)
	b.WriteString(`/** isServerType reports whether t is a message type the server sends. */
export function isServerType(t: string): t is m.ServerMessageType {
  return Object.prototype.hasOwnProperty.call(serverValidators, t);
}

/**
 * validServerMessage reports whether v is a well-formed message the server
 * sends. A message of an unknown type is not (see isServerType).
 */
export function validServerMessage(v: unknown): v is m.ServerMessage {
  if (!isObj(v) || typeof v.t !== "string" || !isServerType(v.t)) return false;
  return serverValidators[v.t]!(v);
}

/** validClientMessage reports whether v is a well-formed message a client sends. */
export function validClientMessage(v: unknown): v is m.ClientMessage {
  if (!isObj(v) || typeof v.t !== "string") return false;
  const f = clientValidators[v.t];
  return f !== undefined && f(v);
}

// Type guards narrow a decoded message by its "t".

`)
	guards := func(side string, ms []message, other map[string]bool) {
		for _, msg := range ms {
			param := "m." + side + "Message"
			if other[msg.t] {
				if side == "Client" {
					continue // written with the server side
				}
				param = "{ t: string }"
			}
			fmt.Fprintf(&b, "export function is%[1]s(x: %[2]s): x is m.%[3]s {\n  return x.t === %[4]q;\n}\n\n", msg.name, param, msgName(msg), msg.t)
		}
	}
	shared := map[string]bool{}
	cn := map[string]string{}
	for _, c := range client {
		cn[c.t] = c.name
	}
	for _, s := range server {
		if cn[s.t] == s.name {
			shared[s.t] = true
		}
	}
	guards("Server", server, shared)
	guards("Client", client, shared)
	return trimEnd(b.Bytes())
}

func (g *gen) codecFile() []byte {
	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString(`import { Encoder, decodeMulti } from "@msgpack/msgpack";
import type { ClientMessage, ServerMessage } from "./messages.js";
import { validServerMessage, validClientMessage, isServerType } from "./validate.js";

/** A wire format: binary msgpack frames or text JSON frames. */
export type Codec = "msgpack" | "json";

/** The Sec-WebSocket-Protocol name of each codec. */
export const subprotocols: Readonly<Record<Codec, string>> = {
`)
	keys := make([]string, 0, len(g.spec.Subprotocols))
	for k := range g.spec.Subprotocols {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %q,\n", k, g.spec.Subprotocols[k])
	}
	b.WriteString(`};

/** FrameError is thrown for a frame that cannot be decoded at all. */
export class FrameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FrameError";
  }
}

/** DecodedFrame is the outcome of decoding one frame. */
export interface DecodedFrame<M> {
  /** Well-formed messages of known types, in frame order. */
  messages: M[];
  /** Messages of a type this side does not know (ignored by the runtime). */
  unknown: Record<string, unknown>[];
  /** Messages of a known type whose fields are wrong. */
  invalid: unknown[];
}

// TextDecoder exists in browsers, Node and React Native (Hermes); declared
// here because the package compiles without the DOM library.
declare const TextDecoder: new () => { decode(input: Uint8Array | ArrayBuffer): string };

const encoder = new Encoder({ ignoreUndefined: true });
const utf8 = new TextDecoder();

/**
 * encodeFrame batches messages into one frame: msgpack maps back to back
 * (binary) or JSON objects separated by "\n" (text). In JSON, binary data
 * (a Uint8Array) becomes a base64 string, as the server writes msgpack
 * binary for JSON clients, so an app may send bytes over any transport.
 */
export function encodeFrame(codec: Codec, messages: readonly ClientMessage[]): Uint8Array | string {
  if (codec === "json") return messages.map((msg) => JSON.stringify(msg, binaryAsBase64)).join("\n");
  const parts = messages.map((msg) => encoder.encode(msg));
  if (parts.length === 1) return parts[0]!;
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// binaryAsBase64 is JSON.stringify's replacer for Uint8Array values.
function binaryAsBase64(_key: string, v: unknown): unknown {
  if (!(v instanceof Uint8Array)) return v;
  let out = "";
  let i = 0;
  for (; i + 2 < v.length; i += 3) {
    const n = (v[i]! << 16) | (v[i + 1]! << 8) | v[i + 2]!;
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i < v.length) {
    const n = (v[i]! << 16) | ((v[i + 1] ?? 0) << 8);
    out += B64[n >> 18]! + B64[(n >> 12) & 63]! + (i + 1 < v.length ? B64[(n >> 6) & 63]! : "=") + "=";
  }
  return out;
}

function split(codec: Codec, frame: Uint8Array | ArrayBuffer | string): unknown[] {
  if (codec === "json") {
    const s = typeof frame === "string" ? frame : utf8.decode(frame);
    const out: unknown[] = [];
    for (const line of s.split("\n")) {
      if (line.trim() === "") continue;
      try {
        out.push(JSON.parse(line));
      } catch (err) {
        throw new FrameError("malformed JSON frame: " + String(err));
      }
    }
    return out;
  }
  if (typeof frame === "string") throw new FrameError("text frame on the msgpack codec");
  try {
    return Array.from(decodeMulti(frame instanceof Uint8Array ? frame : new Uint8Array(frame)));
  } catch (err) {
    throw new FrameError("malformed msgpack frame: " + String(err));
  }
}

function sort<M>(values: unknown[], valid: (v: unknown) => v is M, known: (t: string) => boolean): DecodedFrame<M> {
  const out: DecodedFrame<M> = { messages: [], unknown: [], invalid: [] };
  for (const v of values) {
    if (valid(v)) out.messages.push(v);
    else if (typeof v === "object" && v !== null && typeof (v as { t?: unknown }).t === "string" && !known((v as { t: string }).t))
      out.unknown.push(v as Record<string, unknown>);
    else out.invalid.push(v);
  }
  return out;
}

/**
 * decodeServerFrame decodes a frame from the server. It throws FrameError
 * when the frame itself is malformed; bad or unknown messages inside a good
 * frame are set aside and do not affect the others.
 */
export function decodeServerFrame(codec: Codec, frame: Uint8Array | ArrayBuffer | string): DecodedFrame<ServerMessage> {
  return sort(split(codec, frame), validServerMessage, isServerType);
}

/** decodeClientFrame decodes a frame a client sent (for servers and tests). */
export function decodeClientFrame(codec: Codec, frame: Uint8Array | ArrayBuffer | string): DecodedFrame<ClientMessage> {
  return sort(split(codec, frame), validClientMessage, (t) => Object.prototype.hasOwnProperty.call(clientTypes, t));
}

const clientTypes: Readonly<Record<string, true>> = {
`)
	for _, m := range sortedTypes(g.spec.Client) {
		fmt.Fprintf(&b, "  %q: true,\n", m)
	}
	b.WriteString("};\n")
	return b.Bytes()
}

func sortedTypes(reg map[string]func() protocol.Message) []string {
	out := make([]string, 0, len(reg))
	for t := range reg {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func trimEnd(b []byte) []byte { return append(bytes.TrimRight(b, "\n"), '\n') }
