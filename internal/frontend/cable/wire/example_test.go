package wire_test

import (
	"fmt"

	"github.com/huddle-rt/huddle/internal/frontend/cable/wire"
)

func Example() {
	// At the handshake: pick the dialect.
	d, sub := wire.Negotiate([]string{"actioncable-v1-ext-json"})
	fmt.Println(d, sub)

	// A client subscribes.
	cmd, err := wire.DecodeCommand(d, []byte(`{"command":"subscribe","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"room-1\"}"}`))
	if err != nil {
		panic(err)
	}
	id, _ := wire.ParseIdentifier(cmd.Identifier)
	fmt.Println(cmd.Kind, id.Channel, id.StreamName)
	fmt.Printf("%s\n", wire.AppendReply(nil, d, wire.ConfirmSubscription, cmd.Identifier))

	// The prefix is built once per subscription, the body once per
	// publication and dialect.
	prefix := wire.NewPrefix(d, cmd.Identifier)
	body := wire.NewBroadcastBody(d, wire.Publication{Data: []byte(`{"seq":1}`), Stream: "room-1", Epoch: "jF19", Offset: 2})
	fmt.Printf("%s\n", wire.AppendFrame(nil, &prefix, &body))
	// Output:
	// actioncable-v1-ext-json actioncable-v1-ext-json
	// subscribe $pubsub room-1
	// {"type":"confirm_subscription","identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"room-1\"}"}
	// {"identifier":"{\"channel\":\"$pubsub\",\"stream_name\":\"room-1\"}","message":{"seq":1},"stream_id":"room-1","epoch":"jF19","offset":2}
}

func ExampleSignStream() {
	secret := []byte("s3cЯeT")
	signed := wire.SignStream(secret, "chat/2024")
	fmt.Println(signed)
	stream, err := wire.VerifyStream(secret, signed)
	fmt.Println(stream, err)
	// Output:
	// ImNoYXQvMjAyNCI=--48fe56af993b3eaefd21a2d77f414a443ee3f63fafaae7085aa7d01d56529f15
	// chat/2024 <nil>
}
