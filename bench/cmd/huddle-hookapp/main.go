// Command huddle-hookapp is the smallest application behind Huddle's /ws
// hooks (docs/hooks.md), for measuring what a hook costs: every connect,
// subscribe and publish is allowed, at once, and the publish hook keeps
// the data.
//
//	huddle-hookapp -addr 127.0.0.1:18096
//	huddle --secret ... --publish-hook http://127.0.0.1:18096/publish
//
// A connect is accepted as the user its token names ("anonymous" for
// none), with every op on every stream. It prints the calls it answered
// on SIGINT or SIGTERM.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18096", "address to listen on")
	flag.Parse()
	var connects, subscribes, publishes atomic.Int64
	allow := func(n *atomic.Int64) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"allow":true}`)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /connect", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token string `json:"token"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		connects.Add(1)
		user := req.Token
		if user == "" || len(user) > 64 {
			user = "anonymous"
		}
		b, _ := json.Marshal(map[string]any{"allow": true, "user": user, "streams": map[string][]string{"*": {"sub", "pub", "whisper", "presence", "history"}}})
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /subscribe", allow(&subscribes))
	mux.HandleFunc("POST /publish", allow(&publishes))
	go func() {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
		fmt.Printf("connects %d, subscribes %d, publishes %d\n", connects.Load(), subscribes.Load(), publishes.Load())
		os.Exit(0)
	}()
	log.Printf("huddle-hookapp listening on http://%s (/connect, /subscribe, /publish)", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
