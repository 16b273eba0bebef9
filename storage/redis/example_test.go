package redis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/redis/rueidis"

	"github.com/huddle-rt/huddle/storage"
	"github.com/huddle-rt/huddle/storage/redis"
)

// A broker stores a publication and publishes it in one step; every node
// subscribed to the channel decodes the envelope to learn the offset.
func ExampleLog_AppendPublish() {
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	l := redis.New(client, redis.Config{})

	// On every node: receive on a dedicated connection.
	go func() {
		err := client.Receive(ctx, client.B().Subscribe().Channel("huddle:pub:{doc:1}").Build(), func(m rueidis.PubSubMessage) {
			env, err := redis.DecodeEnvelope([]byte(m.Message))
			if err != nil {
				log.Print(err)
				return
			}
			fmt.Printf("offset %d in epoch %s: %q\n", env.Position.Offset, env.Position.Epoch, env.Payload)
		})
		if err != nil {
			log.Print(err)
		}
	}()

	// On the publishing node.
	pub := storage.Publication{Data: []byte("\x81\xa1k\x01"), User: "alice"}
	opts := storage.Options{Size: 100}
	if _, _, err := l.AppendPublish(ctx, "doc:1", pub, opts, "huddle:pub:{doc:1}", pub.Data); err != nil {
		log.Fatal(err)
	}
}
