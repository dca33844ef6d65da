//! Fuzz target for every decoder that reads bytes from the network
//! (issue 12): the Kafka request decoder for every advertised API and
//! version (`server::dispatch::decode_request`, exactly what the broker
//! runs), the record-batch checks of the produce path (`log::batch` and
//! `log::validate`), and the admin gRPC and metadata-quorum messages
//! (prost, then the quorum's JSON payloads).
//!
//! It is a structure-aware mutation fuzzer on the stable toolchain: inputs
//! are real clients' requests from broker/fuzz/corpus/requests (recorded by
//! broker/fuzz/capture_corpus.py), batches built with every codec, and
//! sample admin messages, mutated by bit flips, interesting integers (two
//! billion, -1, 2^32-1 as varints) written over counts and lengths,
//! truncation, duplication and splicing; a request keeps its API and is
//! decoded at every advertised version. Each input is checked for:
//! - no panic (caught, the input saved);
//! - bounded memory: no single allocation over 1 GiB (refused, which aborts
//!   the run with "memory allocation of N bytes failed"), and the peak of
//!   live bytes during one decode at most 512 x the input + 1 MiB;
//! - no hang: a watchdog saves the input and fails the run if one decode
//!   takes over a minute;
//! - consistency: a batch the produce path accepts decodes with the
//!   codec crate (stored batches are decoded that way later).
//!
//! `cargo test -p tideway-broker --test fuzz` is the short run (part of
//! tests/run.sh). The long run (docs/reliability.md): `cargo test --release
//! -p tideway-broker --test fuzz` with `TIDEWAY_FUZZ_ITERATIONS` (inputs
//! per target, default 200000) and `TIDEWAY_FUZZ_SEED` (a number, or
//! `random`; default fixed, so a failure reproduces). Failing inputs are
//! written to target/fuzz-failures/.

// A counting allocator needs `unsafe impl GlobalAlloc`; it only forwards to
// the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::RequestKind;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use prost::Message;
use tideway_broker::log::batch;
use tideway_broker::log::validate::{RecordLimits, validate_batch_records};
use tideway_broker::server::dispatch::{Decoded, decode_request};
use tideway_broker::server::versions::SUPPORTED;

// ---- memory accounting --------------------------------------------------

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
const LARGEST_ALLOCATION: usize = 1 << 30;
/// (target, input) of the decode in progress: saved by the watchdog on a
/// hang and by the allocator before it refuses an oversized allocation.
static CURRENT: Mutex<(&str, Vec<u8>)> = Mutex::new(("none", Vec::new()));

/// Saves the input in progress before the process aborts. Called from the
/// allocator before it has allocated anything, so allocating here is fine.
fn refuse(size: usize) -> *mut u8 {
    if let Ok(current) = CURRENT.try_lock() {
        let path = save(&failures_dir(), current.0, &current.1);
        eprintln!(
            "fuzz: FAILED {}: an allocation of {size} bytes (input {path})",
            current.0
        );
    }
    std::ptr::null_mut()
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST_ALLOCATION {
            return refuse(layout.size());
        }
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST_ALLOCATION {
            return refuse(layout.size());
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LARGEST_ALLOCATION {
            return refuse(new_size);
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- randomness and mutation ---------------------------------------------

/// xorshift64*: enough for mutation choices, and reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Values that make decoders claim too much or too little.
const INTERESTING: &[&[u8]] = &[
    &[0x7f, 0xff, 0xff, 0xff],             // i32 two billion
    &[0xff, 0xff, 0xff, 0xff],             // -1: null, or u32 max
    &[0x80, 0x00, 0x00, 0x00],             // i32 min
    &[0x7f, 0xff],                         // i16 max
    &[0xff, 0xff, 0xff, 0xff, 0x0f],       // unsigned varint 2^32 - 1
    &[0xfe, 0xff, 0xff, 0xff, 0x0f],       // zigzag varint i32 max
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80], // a varint that does not end
    &[0x00, 0x00, 0x00, 0x00],
    &[0x01],
];

/// Applies 1 to 4 mutations; `keep` leading bytes stay as they are.
fn mutate(rng: &mut Rng, input: &[u8], keep: usize, other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        let at = keep + rng.below(len.saturating_sub(keep));
        match rng.below(8) {
            0 if at < len => out[at] ^= 1 << rng.below(8),
            1 if at < len => out[at] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)],
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                for (i, b) in v.iter().enumerate() {
                    if let Some(slot) = out.get_mut(at + i) {
                        *slot = *b;
                    }
                }
            }
            3 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let at = at.min(out.len());
                out.splice(at..at, v.iter().copied());
            }
            4 if at < len => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at..end);
            }
            5 if at < len => {
                let end = (at + 1 + rng.below(32)).min(len);
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            6 => out.truncate(at.max(keep)),
            7 if !other.is_empty() => {
                let from = rng.below(other.len());
                out.truncate(at.max(keep));
                out.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    out
}

// ---- one checked run per input -------------------------------------------

struct Checker {
    failures_dir: PathBuf,
    failures: Mutex<Vec<String>>,
    started_ms: Arc<AtomicU64>,
    runs: AtomicU64,
}

impl Checker {
    fn new() -> Self {
        let failures_dir = failures_dir();
        let started_ms = Arc::new(AtomicU64::new(0));
        let watch_started = started_ms.clone();
        let dir = failures_dir.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let started = watch_started.load(Ordering::Relaxed);
                if started != 0 && now_ms().saturating_sub(started) > 60_000 {
                    let (target, input) = CURRENT.lock().map(|c| c.clone()).unwrap_or_default();
                    let path = save(&dir, target, &input);
                    eprintln!("fuzz: HANG: one {target} decode ran over 60 s; input in {path}");
                    std::process::exit(1);
                }
            }
        });
        Self {
            failures_dir,
            failures: Mutex::new(Vec::new()),
            started_ms,
            runs: AtomicU64::new(0),
        }
    }

    /// Runs `decode` on `input` and records any broken property.
    fn run(
        &self,
        target: &'static str,
        input: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<(), String>,
    ) {
        if let Ok(mut c) = CURRENT.lock() {
            c.0 = target;
            c.1.clear();
            c.1.extend_from_slice(input);
        }
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        self.started_ms.store(now_ms(), Ordering::Relaxed);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| decode(input)));
        self.started_ms.store(0, Ordering::Relaxed);
        self.runs.fetch_add(1, Ordering::Relaxed);
        let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        let allowed = 512 * input.len() + (1 << 20);
        let problem = match outcome {
            Err(panic) => Some(format!("panic: {}", panic_text(&panic))),
            Ok(Err(broken)) => Some(broken),
            Ok(Ok(())) if grew > allowed => Some(format!(
                "allocated {grew} bytes for a {}-byte input (allowed {allowed})",
                input.len()
            )),
            Ok(Ok(())) => None,
        };
        if let Some(problem) = problem {
            let path = save(&self.failures_dir, target, input);
            let line = format!("{target}: {problem} (input {path})");
            eprintln!("fuzz: {line}");
            if let Ok(mut f) = self.failures.lock() {
                f.push(line);
            }
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "non-string panic".into())
}

fn save(dir: &Path, target: &str, input: &[u8]) -> String {
    let _ = std::fs::create_dir_all(dir);
    let hash = crc32c::crc32c(input);
    let path = dir.join(format!("{target}-{hash:08x}.bin"));
    let _ = std::fs::write(&path, input);
    path.display().to_string()
}

fn failures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---- targets --------------------------------------------------------------

/// The Kafka request decoder: seeds mutated, and decoded as every advertised
/// version of their API.
fn fuzz_requests(check: &Checker, rng: &mut Rng, seeds: &[Vec<u8>], iterations: usize) {
    let decode = |frame: &[u8]| {
        // Whatever it decodes to, nothing may panic; errors are fine.
        match decode_request(Bytes::copy_from_slice(frame), 100_000) {
            Ok(Decoded::Request { request, .. }) => {
                std::hint::black_box(describe(&request));
                Ok(())
            }
            Ok(Decoded::ApiVersionsTooNew { .. }) | Err(_) => Ok(()),
        }
    };
    for seed in seeds {
        check.run("request", seed, decode);
    }
    for i in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let mut input = mutate(rng, seed, 4, other);
        if i % 3 == 0 && input.len() >= 4 {
            // The same body read as another advertised version of its API.
            let api = i16::from_be_bytes([input[0], input[1]]);
            if let Some(&(_, _, min, max)) = SUPPORTED.iter().find(|(k, ..)| *k as i16 == api) {
                let v = min + rng.below((max - min + 1) as usize) as i16;
                input[2..4].copy_from_slice(&v.to_be_bytes());
            }
        }
        check.run("request", &input, decode);
    }
    // Every advertised API and version with a random body after a valid header.
    for &(api, _, min, max) in SUPPORTED {
        for v in min..=max {
            for _ in 0..(iterations / 200).max(4) {
                let mut frame = Vec::new();
                frame.extend_from_slice(&(api as i16).to_be_bytes());
                frame.extend_from_slice(&v.to_be_bytes());
                frame.extend_from_slice(&7i32.to_be_bytes());
                frame.extend_from_slice(&[0, 1, b'f']);
                if rng.chance(2) {
                    frame.push(0); // empty tagged fields of a flexible header
                }
                for _ in 0..rng.below(64) {
                    let v = INTERESTING[rng.below(INTERESTING.len())];
                    if rng.chance(2) {
                        frame.extend_from_slice(v);
                    } else {
                        frame.push(rng.next() as u8);
                    }
                }
                check.run("request", &frame, decode);
            }
        }
    }
}

/// Forces the whole decoded request to be looked at (no lazy fields exist,
/// but a Debug walk touches every element).
fn describe(request: &RequestKind) -> usize {
    format!("{request:?}").len()
}

/// The produce path's batch checks; a batch they accept must decode with
/// the codec crate, as stored batches are decoded later.
fn fuzz_batches(check: &Checker, rng: &mut Rng, seeds: &[Vec<u8>], iterations: usize) {
    let decode = |input: &[u8]| {
        let Ok(h) = batch::validate_batch(input, 0) else {
            return Ok(());
        };
        let whole = &input[..h.total_size()];
        if validate_batch_records(&h, whole, 0, RecordLimits::default()).is_err() {
            return Ok(());
        }
        let mut bytes = Bytes::copy_from_slice(whole);
        match RecordBatchDecoder::decode(&mut bytes) {
            Ok(set) if set.records.len() == h.record_count as usize => Ok(()),
            Ok(set) => Err(format!(
                "accepted with recordCount {} but decodes to {} records",
                h.record_count,
                set.records.len()
            )),
            Err(e) => Err(format!(
                "accepted but the codec crate cannot decode it: {e:#}"
            )),
        }
    };
    for seed in seeds {
        check.run("batch", seed, decode);
    }
    for _ in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let mut input = mutate(rng, seed, 0, other);
        // Most mutants get a correct length and CRC, to reach the record walk.
        if rng.below(4) != 0 && input.len() >= batch::HEADER_SIZE {
            let len = (input.len() - batch::LOG_OVERHEAD) as i32;
            input[8..12].copy_from_slice(&len.to_be_bytes());
            input[16] = 2;
            let crc = crc32c::crc32c(&input[21..]);
            input[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        check.run("batch", &input, decode);
    }
}

/// Admin gRPC requests (prost) and the metadata quorum's messages (prost,
/// then JSON payloads).
fn fuzz_admin(check: &Checker, rng: &mut Rng, iterations: usize) {
    use tideway_admin_api::raft::RaftRequest;
    use tideway_admin_api::v1 as admin;
    let seeds: Vec<Vec<u8>> = vec![
        admin::CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            replication_factor: 3,
            ..Default::default()
        }
        .encode_to_vec(),
        admin::AlterTopicRequest {
            name: "orders".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        admin::RestartRiskRequest { broker: 2 }.encode_to_vec(),
        admin::DrainRequest { broker: 1 }.encode_to_vec(),
        admin::GroupLagRequest {
            group: "g".into(),
            topics: vec!["t".into()],
            reset_policy: 2,
        }
        .encode_to_vec(),
        RaftRequest {
            kind: "propose".into(),
            payload: br#"[{"TopicDeleted":{"name":"x"}}]"#.to_vec(),
        }
        .encode_to_vec(),
        RaftRequest {
            kind: "heartbeat".into(),
            payload: b"[1,false]".to_vec(),
        }
        .encode_to_vec(),
    ];
    let decode = |input: &[u8]| {
        let _ = admin::CreateTopicRequest::decode(input);
        let _ = admin::AlterTopicRequest::decode(input);
        let _ = admin::DeleteTopicRequest::decode(input);
        let _ = admin::DescribeTopicRequest::decode(input);
        let _ = admin::DescribePartitionsRequest::decode(input);
        let _ = admin::RestartRiskRequest::decode(input);
        let _ = admin::DrainRequest::decode(input);
        let _ = admin::UndrainRequest::decode(input);
        let _ = admin::RemoveBrokerRequest::decode(input);
        let _ = admin::GroupLagRequest::decode(input);
        if let Ok(r) = RaftRequest::decode(input) {
            raft_payload(&r.payload);
        }
        raft_payload(input);
        Ok(())
    };
    for seed in &seeds {
        check.run("admin", seed, decode);
    }
    for _ in 0..iterations {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let input = mutate(rng, seed, 0, other);
        check.run("admin", &input, decode);
    }
}

/// Every JSON payload the quorum's gRPC method decodes.
fn raft_payload(payload: &[u8]) {
    use tideway_broker::metadata::MetadataRecord;
    use tideway_broker::metadata::raft::{NodeId, TypeConfig};
    let _ = serde_json::from_slice::<Vec<MetadataRecord>>(payload);
    let _ = serde_json::from_slice::<openraft::raft::AppendEntriesRequest<TypeConfig>>(payload);
    let _ = serde_json::from_slice::<openraft::raft::VoteRequest<NodeId>>(payload);
    let _ = serde_json::from_slice::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(payload);
    let _ = serde_json::from_slice::<(i32, bool)>(payload);
    let _ = serde_json::from_slice::<(NodeId, String)>(payload);
}

// ---- seeds ----------------------------------------------------------------

fn request_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/requests");
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 20,
        "only {} request seeds in {}",
        seeds.len(),
        dir.display()
    );
    seeds.into_iter().map(|(_, b)| b).collect()
}

/// Batches built with every codec, plus the ones inside recorded produce requests.
fn batch_seeds(requests: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let records: Vec<Record> = (0..8)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: if i % 2 == 0 { -1 } else { 7 },
                producer_epoch: 0,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("value-{i}").repeat(4))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .expect("encoding a seed batch");
        seeds.push(buf.to_vec());
    }
    for frame in requests {
        if let Ok(Decoded::Request {
            request: RequestKind::Produce(p),
            ..
        }) = decode_request(Bytes::copy_from_slice(frame), usize::MAX)
        {
            for t in p.topic_data {
                for d in t.partition_data {
                    if let Some(r) = d.records {
                        seeds.push(r.to_vec());
                    }
                }
            }
        }
    }
    seeds
}

fn main() {
    let iterations: usize = std::env::var("TIDEWAY_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let seed = match std::env::var("TIDEWAY_FUZZ_SEED").ok().as_deref() {
        Some("random") => now_ms() | 1,
        Some(n) => n.parse().unwrap_or(1),
        None => 0x7134_6a75_1dea_5eed,
    };
    let started = Instant::now();
    eprintln!("fuzz: seed {seed}, {iterations} mutated inputs per target");
    let check = Checker::new();
    let requests = request_seeds();
    let batches = batch_seeds(&requests);
    let mut rng = Rng(seed);
    fuzz_requests(&check, &mut rng, &requests, iterations);
    fuzz_batches(&check, &mut rng, &batches, iterations);
    fuzz_admin(&check, &mut rng, iterations / 4);
    let failures = check.failures.lock().map(|f| f.clone()).unwrap_or_default();
    let runs = check.runs.load(Ordering::Relaxed);
    eprintln!(
        "fuzz: {runs} inputs ({} request seeds, {} batch seeds) in {:.1} s",
        requests.len(),
        batches.len(),
        started.elapsed().as_secs_f64()
    );
    // The plain closing line test runners read.
    println!(
        "fuzz: {} passed, {} failed",
        runs as usize - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        for f in &failures {
            eprintln!("fuzz: FAILED {f}");
        }
        std::process::exit(1);
    }
}
