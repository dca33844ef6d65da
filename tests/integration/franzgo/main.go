// Command franzgo produces N records with franz-go's defaults (idempotent,
// acks=all) and then consumes them back in a consumer group, committing after
// processing. Used by tests/integration/test_idempotence.py.
//
// usage: franzgo BOOTSTRAP TOPIC GROUP N
// prints "produced N consumed M" on success.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: franzgo BOOTSTRAP TOPIC GROUP N")
		os.Exit(2)
	}
	bootstrap, topic, group := os.Args[1], os.Args[2], os.Args[3]
	n, err := strconv.Atoi(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "N:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()

	producer, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic))
	if err != nil {
		fail("producer:", err)
	}
	for i := 0; i < n; i++ {
		value := fmt.Sprintf("%d|key-%d|franz", i, i%50)
		producer.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("key-%d", i%50)), Value: []byte(value)}, func(_ *kgo.Record, err error) {
			if err != nil {
				fail("produce:", err)
			}
		})
	}
	if err := producer.Flush(ctx); err != nil {
		fail("flush:", err)
	}
	producer.Close()

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap),
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)
	if err != nil {
		fail("consumer:", err)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		fetches := consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			fail("consume: timed out with", len(seen), "of", n)
		}
		fetches.EachError(func(t string, p int32, err error) { fail("fetch", t, p, err) })
		fetches.EachRecord(func(r *kgo.Record) { seen[string(r.Value)] = true })
		if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
			fail("commit:", err)
		}
	}
	consumer.Close()
	fmt.Printf("produced %d consumed %d\n", n, len(seen))
}

func fail(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}
