// Load-tool helpers for tests/bench that Kafka's own tools do not cover. Runs on the
// kafka-clients jar of the cached Kafka distribution; compiled once by bench.py (javac) and
// used unchanged against both brokers.
//
//   create-topics [--replication-factor N] [--config KEY=VALUE]... BOOTSTRAP PARTITIONS TOPIC...
//                                                      create topics (RF 1 unless given), wait
//                                                      until every partition has a leader and
//                                                      its full ISR, and has taken one record
//   multi-produce [--warmup-records N] BOOTSTRAP RECORDS SIZE ACKS TOPIC...
//                                                      ProducerPerformance's loop (same payload,
//                                                      same defaults, callback latency, same
//                                                      warm-up) spread over several topics, one
//                                                      batch-sized run of records per topic in
//                                                      turn; prints ProducerPerformance's summary
//                                                      line (and its steady-state line)
//   fixed-rate-e2e BOOTSTRAP TOPIC RATE SECONDS SIZE WARMUP_SECONDS
//                                                      produce at a fixed rate and consume the
//                                                      same records; latency = receive time -
//                                                      intended send time (so a stalled broker
//                                                      is not hidden by coordinated omission)
import java.nio.ByteBuffer;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class BenchTool {
    public static void main(String[] args) throws Exception {
        if (args.length == 0) usage();
        String[] rest = Arrays.copyOfRange(args, 1, args.length);
        switch (args[0]) {
            case "create-topics" -> createTopics(rest);
            case "multi-produce" -> multiProduce(rest);
            case "fixed-rate-e2e" -> fixedRateE2e(rest);
            default -> usage();
        }
    }

    static void usage() {
        System.err.println("usage: BenchTool create-topics|multi-produce|fixed-rate-e2e ... (see the source)");
        System.exit(2);
    }

    static void createTopics(String[] a) throws Exception {
        short replicationFactor = 1;
        Map<String, String> configs = new HashMap<>();
        int i0 = 0;
        for (; i0 < a.length && a[i0].startsWith("--"); i0 += 2) {
            switch (a[i0]) {
                case "--replication-factor" -> replicationFactor = Short.parseShort(a[i0 + 1]);
                case "--config" -> {
                    String[] kv = a[i0 + 1].split("=", 2);
                    configs.put(kv[0], kv[1]);
                }
                default -> usage();
            }
        }
        a = Arrays.copyOfRange(a, i0, a.length);
        String bootstrap = a[0];
        int partitions = Integer.parseInt(a[1]);
        List<String> topics = Arrays.asList(a).subList(2, a.length);
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            List<NewTopic> news = new ArrayList<>();
            for (String t : topics) news.add(new NewTopic(t, partitions, replicationFactor).configs(configs));
            admin.createTopics(news).all().get(120, TimeUnit.SECONDS);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
            while (true) {
                boolean ready = true;
                try {
                    var descs = admin.describeTopics(topics).allTopicNames().get(30, TimeUnit.SECONDS);
                    for (var d : descs.values()) {
                        if (d.partitions().size() != partitions) ready = false;
                        for (var pi : d.partitions()) {
                            if (pi.leader() == null || pi.leader().id() < 0) ready = false;
                            // Replicated topics: every replica in sync before anything is measured.
                            if (pi.isr().size() < pi.replicas().size()) ready = false;
                        }
                    }
                } catch (ExecutionException e) {
                    ready = false;
                }
                if (ready) break;
                if (System.nanoTime() > deadline) throw new RuntimeException("topics not ready after 120 s");
                Thread.sleep(100);
            }
        }
        // A leader in the metadata does not mean the partition serves yet (Kafka creates the
        // logs of a new topic in the background, ~40 partitions/s on a loaded 2-core machine):
        // write one small record to every partition and wait for all the acks.
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "300000");
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "60000");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (String t : topics)
                for (int i = 0; i < partitions; i++)
                    acks.add(producer.send(new ProducerRecord<>(t, i, null, "warm".getBytes())));
            for (Future<RecordMetadata> f : acks) f.get();
        }
        System.out.println("created " + topics.size() + " topics x " + partitions + " partitions");
    }

    /** Same payload as ProducerPerformance --record-size: random uppercase letters, one buffer reused. */
    static byte[] payload(int size) {
        byte[] b = new byte[size];
        Random r = new Random(0);
        for (int i = 0; i < size; i++) b[i] = (byte) (r.nextInt(26) + 65);
        return b;
    }

    static void multiProduce(String[] a) throws Exception {
        long warmup = 0;
        int i0 = 0;
        for (; i0 < a.length && a[i0].startsWith("--"); i0 += 2) {
            if (!a[i0].equals("--warmup-records")) usage();
            warmup = Long.parseLong(a[i0 + 1]);
        }
        a = Arrays.copyOfRange(a, i0, a.length);
        String bootstrap = a[0];
        long records = Long.parseLong(a[1]);
        int size = Integer.parseInt(a[2]);
        String acks = a[3];
        String[] topics = Arrays.copyOfRange(a, 4, a.length);
        if (warmup < 0 || warmup >= records) usage();
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, acks);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        byte[] value = payload(size);
        int run = Math.max(1, 16384 / size);
        // Latencies in ms, as ProducerPerformance keeps them (it samples; we keep every one).
        int[] latencies = new int[(int) records];
        AtomicLong maxLatency = new AtomicLong();
        AtomicLong sumLatency = new AtomicLong();
        AtomicLong steadyMax = new AtomicLong();
        AtomicLong steadySum = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        long start;
        long steadyStart = 0;
        // As ProducerPerformance: the clocks start after the producer is built (the whole run's at the
        // first send, the steady state's at record `warmup`) and stop after close(), which waits for
        // every ack. The first records also pay the metadata fetch of each topic (the first send to a
        // topic blocks on it), JIT compilation and connection set-up; the warm-up keeps them out.
        KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
        try {
            start = System.currentTimeMillis();
            for (long i = 0; i < records; i++) {
                final int idx = (int) i;
                final long sendMs = System.currentTimeMillis();
                final boolean steady = warmup > 0 && i >= warmup;
                if (warmup > 0 && i == warmup) steadyStart = sendMs;
                // Runs of `run` records per topic: each run fills about one producer batch (16 KiB by
                // default), so the broker sees full batches spread over every partition rather than
                // one-record batches (which would measure the producer's batching, not the broker).
                String topic = topics[(int) ((i / run) % topics.length)];
                producer.send(new ProducerRecord<>(topic, value), (md, e) -> {
                    if (e != null) { failure.compareAndSet(null, e); return; }
                    int lat = (int) (System.currentTimeMillis() - sendMs);
                    latencies[idx] = lat;
                    sumLatency.addAndGet(lat);
                    maxLatency.accumulateAndGet(lat, Math::max);
                    if (steady) {
                        steadySum.addAndGet(lat);
                        steadyMax.accumulateAndGet(lat, Math::max);
                    }
                });
            }
            producer.flush();
            if (System.getenv("BENCHTOOL_METRICS") != null) printMetrics(producer);
        } finally {
            producer.close();
        }
        long end = System.currentTimeMillis();
        if (failure.get() != null) throw failure.get();
        printSummary("", records, end - start, size, Arrays.copyOf(latencies, latencies.length),
            sumLatency.get(), maxLatency.get());
        if (warmup > 0)
            printSummary("steady state ", records - warmup, end - steadyStart, size,
                Arrays.copyOfRange(latencies, (int) warmup, latencies.length), steadySum.get(), steadyMax.get());
    }

    /** ProducerPerformance's summary line (its "steady state" variant with a prefix). */
    static void printSummary(String prefix, long records, long elapsedMs, int size, int[] latencies, long sum, long max) {
        Arrays.sort(latencies);
        double recPerSec = 1000.0 * records / Math.max(1, elapsedMs);
        double mbPerSec = recPerSec * size / (1024.0 * 1024.0);
        System.out.printf(Locale.ROOT,
            "%d %srecords sent, %f records/sec (%.2f MB/sec), %.2f ms avg latency, %.2f ms max latency, "
                + "%d ms 50th, %d ms 95th, %d ms 99th, %d ms 99.9th.%n",
            records, prefix, recPerSec, mbPerSec, (double) sum / records, (double) max,
            pct(latencies, 0.5), pct(latencies, 0.95), pct(latencies, 0.99), pct(latencies, 0.999));
    }

    // BENCHTOOL_METRICS=1: the producer's own view (request latency, batching, time blocked on
    // buffer memory, sender idle time), to tell the broker's share from the client's when profiling.
    static void printMetrics(KafkaProducer<?, ?> producer) {
        Set<String> wanted = Set.of("request-latency-avg", "request-latency-max", "request-rate",
            "requests-in-flight", "batch-size-avg", "records-per-request-avg", "record-queue-time-avg",
            "bufferpool-wait-ratio", "io-wait-ratio", "io-ratio", "select-rate", "produce-throttle-time-avg",
            "record-send-rate", "outgoing-byte-rate", "bufferpool-wait-time-ns-total", "io-wait-time-ns-total",
            "io-time-ns-total", "metadata-wait-time-ns-total", "flush-time-ns-total");
        var rows = new TreeMap<String, Object>();
        for (var e : producer.metrics().entrySet()) {
            var n = e.getKey();
            if (wanted.contains(n.name()) && !n.tags().containsKey("topic") && !n.tags().containsKey("node-id"))
                rows.put(n.group() + "/" + n.name(), e.getValue().metricValue());
        }
        rows.forEach((k, v) -> System.err.println("metric " + k + " = " + v));
    }

    static int pct(int[] sorted, double q) {
        return sorted[Math.min(sorted.length - 1, (int) (sorted.length * q))];
    }

    static void fixedRateE2e(String[] a) throws Exception {
        String bootstrap = a[0];
        String topic = a[1];
        int rate = Integer.parseInt(a[2]);
        int seconds = Integer.parseInt(a[3]);
        int size = Math.max(16, Integer.parseInt(a[4]));
        int warmup = Integer.parseInt(a[5]);
        long total = (long) rate * (seconds + warmup);
        long warmupRecords = (long) rate * warmup;

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "0");
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

        long[] latNs = new long[(int) (total - warmupRecords)];
        AtomicLong received = new AtomicLong();
        AtomicReference<Exception> failure = new AtomicReference<>();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp);
             KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(pp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (var pi : consumer.partitionsFor(topic)) tps.add(new TopicPartition(topic, pi.partition()));
            consumer.assign(tps);
            consumer.seekToEnd(tps);
            for (TopicPartition tp : tps) consumer.position(tp); // resolve the end offsets now
            producer.partitionsFor(topic); // fetch metadata before the clock starts

            Thread sender = new Thread(() -> {
                try {
                    byte[] value = payload(size);
                    long start = System.nanoTime() + 50_000_000L;
                    long intervalNs = 1_000_000_000L / rate;
                    for (long i = 0; i < total; i++) {
                        long intended = start + i * intervalNs;
                        long wait;
                        while ((wait = intended - System.nanoTime()) > 0) LockSupport.parkNanos(wait);
                        byte[] v = value.clone();
                        ByteBuffer.wrap(v).putLong(0, i).putLong(8, intended);
                        producer.send(new ProducerRecord<>(topic, v), (md, e) -> {
                            if (e != null) failure.compareAndSet(null, e);
                        });
                    }
                    producer.flush();
                } catch (Exception e) {
                    failure.compareAndSet(null, e);
                }
            });
            sender.start();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds + warmup + 60);
            while (received.get() < total && failure.get() == null) {
                if (System.nanoTime() > deadline) throw new RuntimeException("timed out: received " + received.get() + " of " + total);
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(java.time.Duration.ofMillis(100))) {
                    long now = System.nanoTime();
                    ByteBuffer b = ByteBuffer.wrap(r.value());
                    long seq = b.getLong(0);
                    long intended = b.getLong(8);
                    if (seq >= warmupRecords) latNs[(int) (seq - warmupRecords)] = now - intended;
                    received.incrementAndGet();
                }
            }
            sender.join();
        }
        if (failure.get() != null) throw failure.get();
        Arrays.sort(latNs);
        System.out.printf(Locale.ROOT,
            "fixed-rate-e2e records=%d rate=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f%n",
            latNs.length, rate, latNs[(int) (latNs.length * 0.5)] / 1e6, latNs[(int) (latNs.length * 0.99)] / 1e6,
            latNs[Math.min(latNs.length - 1, (int) (latNs.length * 0.999))] / 1e6, latNs[latNs.length - 1] / 1e6);
    }
}
