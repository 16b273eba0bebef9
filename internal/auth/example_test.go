package auth_test

import (
	"fmt"
	"time"

	"github.com/huddle-rt/huddle/internal/auth"
)

func ExampleParseRule() {
	r, err := auth.ParseRule("chat:*=sub,pub,history;history=500;ttl=10m;whisper=off")
	if err != nil {
		panic(err)
	}
	fmt.Printf("prefix %q allows %s, keeps %d for %v\n", r.Prefix, r.Allow, r.HistorySize, r.HistoryTTL)
	fmt.Println(r)
	// Output:
	// prefix "chat:" allows sub,pub,history, keeps 500 for 10m0s
	// chat:*=sub,pub,history;history=500;ttl=10m0s;whisper=off
}

func ExampleAuthenticator_Allowed() {
	secret := []byte("0123456789abcdef0123456789abcdef")
	a, err := auth.New(auth.Config{
		Secret: secret,
		Rules: []auth.Rule{
			{Prefix: "public:", Allow: auth.OpsOf(auth.OpSub, auth.OpHistory)},
			{Prefix: "public:announce", Deny: auth.OpsOf(auth.OpPub)},
		},
	})
	if err != nil {
		panic(err)
	}
	token, err := auth.SignHS256(secret, "alice", time.Now().Add(time.Hour), map[string]any{"name": "Alice"},
		map[string][]string{"doc:42": {"sub", "pub"}, "public:*": {"pub"}})
	if err != nil {
		panic(err)
	}
	id, err := a.Verify(token)
	if err != nil {
		panic(err)
	}
	fmt.Println(id.User, string(id.Info))
	fmt.Println(a.Allowed(id, auth.OpPub, "doc:42"))          // token grant
	fmt.Println(a.Allowed(id, auth.OpHistory, "public:chat")) // rule grant
	fmt.Println(a.Allowed(id, auth.OpPub, "public:announce")) // denial wins
	fmt.Println(a.Allowed(id, auth.OpSub, "doc:43"))          // nothing matches
	// Output:
	// alice {"name":"Alice"}
	// true
	// true
	// false
	// false
}
