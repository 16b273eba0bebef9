package main

import (
	"embed"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
	"github.com/huddle-rt/huddle/internal/server"
)

//go:embed web
var webFS embed.FS

// devStreams are the grants of tokens minted in --dev mode: everything.
var devStreams = map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}

// devDocument is the stream of the demo's shared text editor, and devRule
// makes it a document stream (a snapshot plus every update, so that a
// joiner gets the whole text however old it is). It goes before the
// --rule flags, so a --rule with the same prefix overrides it.
const (
	devDocument = "demo:doc"
	devRule     = devDocument + "=;document=on"
)

type devMode struct {
	secret []byte
	addr   net.Addr
	apiKey string
}

// setupDev fills in what --dev needs (a secret, an API key, devRule) and
// refuses a non-loopback address, because dev mode hands tokens to anyone
// who asks.
func setupDev(o *options, addr net.Addr) (*devMode, error) {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return nil, fmt.Errorf("--dev serves tokens to anyone and only runs on a loopback --addr (got %s); use e.g. --addr 127.0.0.1:8080", addr)
	}
	if o.secret == "" {
		o.secret = randomHex(32)
	}
	if o.apiKey == "" {
		o.apiKey = "dev-" + randomHex(8)
	}
	o.rules = append(listFlag{devRule}, o.rules...)
	return &devMode{secret: []byte(o.secret), addr: addr, apiKey: o.apiKey}, nil
}

func (d *devMode) token(user string, info map[string]any) (string, error) {
	return auth.SignHS256(d.secret, user, time.Now().Add(24*time.Hour), info, devStreams)
}

// pages serves the demo and /dev/token, which mints a token for ?user=, to
// requests for a loopback Host only (see loopbackOnly).
func (d *devMode) pages() http.Handler {
	return loopbackOnly(d.mux())
}

// loopbackOnly answers 421 Misdirected Request to requests whose Host is not
// a loopback name or address. Listening on loopback alone does not keep web
// pages out: a page on a foreign site can point its own DNS name at
// 127.0.0.1 (DNS rebinding) and then read /dev/token as same-origin. Its
// requests still carry that foreign name as Host, which this refuses.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !server.LoopbackHost(r.Host) {
			http.Error(w, "--dev pages answer only to a loopback host such as localhost or 127.0.0.1", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (d *devMode) mux() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(webFS, "web")
	mux.Handle("GET /", http.FileServerFS(sub))
	mux.HandleFunc("GET /dev/token", func(w http.ResponseWriter, r *http.Request) {
		user := r.URL.Query().Get("user")
		if user == "" || len(user) > 64 {
			http.Error(w, "want ?user=<name> (1-64 bytes)", http.StatusBadRequest)
			return
		}
		tok, err := d.token(user, map[string]any{"name": user})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, tok)
	})
	return mux
}

func (d *devMode) announce(w io.Writer) {
	tok, _ := d.token("dev", map[string]any{"name": "dev"})
	fmt.Fprintf(w, `
  Huddle dev mode (loopback only; do not use in production)
    demo:     http://%[1]s/
    document: %[4]s (the demo's shared text) is a document stream: --rule '%[5]s'
    ws:       ws://%[1]s/ws
    token:    %[2]s
    api key:  %[3]s
    listen:   curl -N 'http://%[1]s/events?stream=demo:room&token=%[2]s'
    try:      curl -H 'Authorization: Bearer %[3]s' -d '{"stream":"demo:room","data":{"text":"hi"}}' http://%[1]s/api/publish

`, d.addr, tok, d.apiKey, devDocument, devRule)
}
