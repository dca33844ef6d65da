// Command franzbench is BenchTool's multi-produce with a second client: franz-go with its
// defaults (idempotent, acks=all, no linger, 1 MB batches, 10,000 buffered records) except
// compression, which is off as in the Java producer's defaults. Scenario 6
// runs it beside the Java producer because the Java producer's own sender thread scans every
// partition on each of its loops, so its throughput falls with the partition count whatever
// the broker does; a client that does not degrade that way shows what the broker does.
//
// usage: franzbench [--warmup-records N] [--batch-bytes B] BOOTSTRAP RECORDS SIZE TOPIC...
//
// Records go to the topics in runs of 16 (one Java batch), as BenchTool does. Prints
// ProducerPerformance's summary line for the whole run and, with a warm-up, its steady-state
// line (records after the first N, clock from the send of record N to the last ack).
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func main() {
	args := os.Args[1:]
	warmup, batchBytes := 0, 0
	for len(args) > 1 && strings.HasPrefix(args[0], "--") {
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 0 {
			usage(args[0] + ": not a count: " + args[1])
		}
		switch args[0] {
		case "--warmup-records":
			warmup = n
		case "--batch-bytes":
			batchBytes = n
		default:
			usage("unknown flag " + args[0])
		}
		args = args[2:]
	}
	if len(args) < 4 {
		usage("missing arguments")
	}
	bootstrap := args[0]
	records, err := strconv.Atoi(args[1])
	if err != nil || records <= 0 || warmup >= records {
		usage("RECORDS: a count above the warm-up: " + args[1])
	}
	size, err := strconv.Atoi(args[2])
	if err != nil || size <= 0 {
		usage("SIZE: not a size: " + args[2])
	}
	topics := args[3:]

	opts := []kgo.Opt{kgo.SeedBrokers(bootstrap), kgo.ProducerBatchCompression(kgo.NoCompression())}
	if batchBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(int32(batchBytes)))
	}
	client, err := kgo.NewClient(opts...)
	if err != nil {
		fail("client:", err)
	}
	ctx := context.Background()
	// Random capital letters, as ProducerPerformance and BenchTool send.
	value := make([]byte, size)
	rng := rand.New(rand.NewPCG(0, 0))
	for i := range value {
		value[i] = byte('A' + rng.IntN(26))
	}
	run := max(1, 16384/size)
	latencies := make([]int64, records) // microseconds
	var mu sync.Mutex
	var firstErr error

	start := time.Now()
	var steadyStart time.Time
	for i := 0; i < records; i++ {
		sent := time.Now()
		if warmup > 0 && i == warmup {
			steadyStart = sent
		}
		idx := i
		r := &kgo.Record{Topic: topics[(i/run)%len(topics)], Value: value}
		client.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			latencies[idx] = time.Since(sent).Microseconds()
		})
	}
	if err := client.Flush(ctx); err != nil {
		fail("flush:", err)
	}
	end := time.Now()
	client.Close()
	if firstErr != nil {
		fail("produce:", firstErr)
	}
	summary("", latencies, end.Sub(start), size)
	if warmup > 0 {
		summary("steady state ", latencies[warmup:], end.Sub(steadyStart), size)
	}
}

// summary prints ProducerPerformance's line (whole milliseconds, as that tool reports them).
func summary(prefix string, lat []int64, elapsed time.Duration, size int) {
	s := append([]int64(nil), lat...)
	sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
	var sum int64
	for _, v := range s {
		sum += v
	}
	n := len(s)
	pct := func(q float64) int64 { return s[min(n-1, int(float64(n)*q))] / 1000 }
	rps := float64(n) / max(elapsed.Seconds(), 1e-3)
	fmt.Printf("%d %srecords sent, %f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, "+
		"%d ms 50th, %d ms 95th, %d ms 99th, %d ms 99.9th.\n",
		n, prefix, rps, rps*float64(size)/(1024*1024), float64(sum)/float64(n)/1000, float64(s[n-1])/1000,
		pct(0.5), pct(0.95), pct(0.99), pct(0.999))
}

func usage(why string) {
	fmt.Fprintln(os.Stderr, "franzbench:", why)
	fmt.Fprintln(os.Stderr, "usage: franzbench [--warmup-records N] [--batch-bytes B] BOOTSTRAP RECORDS SIZE TOPIC...")
	os.Exit(2)
}

func fail(args ...any) {
	fmt.Fprintln(os.Stderr, args...)
	os.Exit(1)
}
