//! Property tests for the partition log: every property compares the log
//! with a plain in-memory model of the records that were appended.

#![allow(clippy::unwrap_used)]

use bytes::BytesMut;
use kafka_protocol::records::Compression;
use proptest::prelude::*;

use super::batch;
use super::tests::{
    decode_records, headers, make_batch, raw_batches, read_all, segment_files, small_config,
    snapshot,
};
use super::*;

/// One generated batch.
#[derive(Clone, Debug)]
struct BatchSpec {
    timestamps: Vec<i64>,
    value_len: usize,
    gzip: bool,
    /// Some(now) appends with LogAppendTime at `now`.
    log_append_time: Option<i64>,
}

fn batch_spec(max_ts: i64) -> impl Strategy<Value = BatchSpec> {
    (
        prop::collection::vec(0..max_ts, 1..5),
        0usize..40,
        prop::bool::weighted(0.25),
        prop::option::weighted(0.15, 0..max_ts),
    )
        .prop_map(|(timestamps, value_len, gzip, log_append_time)| BatchSpec {
            timestamps,
            value_len,
            gzip,
            log_append_time,
        })
}

/// (offset, timestamp, value) of every record, in offset order.
type Model = Vec<(i64, i64, Vec<u8>)>;

/// Appends `spec` and records what a consumer should see in `model`.
fn append_spec(log: &mut PartitionLog, spec: &BatchSpec, model: &mut Model) {
    append_spec_at_epoch(log, spec, 1, model);
}

/// [`append_spec`] with the leader epoch to stamp.
fn append_spec_at_epoch(log: &mut PartitionLog, spec: &BatchSpec, epoch: i32, model: &mut Model) {
    let base = log.log_end_offset();
    let recs: Vec<(i64, Vec<u8>)> = spec
        .timestamps
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            let mut v = format!("{base}/{i}:").into_bytes();
            v.resize(v.len() + spec.value_len, b'.');
            (*ts, v)
        })
        .collect();
    let compression = if spec.gzip {
        Compression::Gzip
    } else {
        Compression::None
    };
    let now = spec.log_append_time.unwrap_or(0);
    let info = log
        .append(
            make_batch(&recs, compression),
            epoch,
            spec.log_append_time.is_some(),
            now,
        )
        .unwrap();
    assert_eq!(info.base_offset, base);
    assert_eq!(info.last_offset, base + recs.len() as i64 - 1);
    for (i, (ts, v)) in recs.into_iter().enumerate() {
        let ts = if spec.log_append_time.is_some() {
            now
        } else {
            ts
        };
        model.push((base + i as i64, ts, v));
    }
}

/// Checks every read of `log` against `model`: full scans and one fetch
/// per offset (first batch contains it, whole batches, max_bytes honoured
/// unless a single batch, nothing at or past the bound).
fn check_reads(log: &PartitionLog, model: &Model, max_bytes: usize) {
    assert_eq!(&read_all(log, log.log_start_offset(), max_bytes), model);
    let end = log.log_end_offset();
    for offset in log.log_start_offset()..end {
        let bound = offset + 3;
        let bytes = log.read(offset, max_bytes, bound).unwrap();
        let hs = headers(&bytes);
        assert!(!hs.is_empty());
        assert!(hs[0].base_offset <= offset && offset <= hs[0].last_offset());
        assert!(
            hs.len() == 1 || bytes.len() <= max_bytes,
            "{} bytes > max {max_bytes}",
            bytes.len()
        );
        assert!(hs.iter().all(|h| h.base_offset < bound));
        for w in hs.windows(2) {
            assert_eq!(w[0].last_offset() + 1, w[1].base_offset);
        }
    }
}

/// The naive answers: earliest record with ts ≥ t; first record with the max ts.
fn naive_for_timestamp(model: &Model, t: i64) -> Option<TimestampOffset> {
    model.iter().find(|r| r.1 >= t).map(|r| TimestampOffset {
        timestamp: r.1,
        offset: r.0,
    })
}

fn naive_max(model: &Model) -> Option<TimestampOffset> {
    let max = model.iter().map(|r| r.1).max()?;
    naive_for_timestamp(model, max)
}

/// Positions and sizes of the batches in a segment file.
fn batch_spans(bytes: &[u8]) -> Vec<(usize, usize, batch::BatchHeader)> {
    batch::batches(bytes)
        .map(|r| r.unwrap())
        .map(|(at, h)| (at, h.total_size(), h))
        .collect()
}

/// Builds a log of `specs`, closes it, damages the active segment with
/// `damage` (given the file bytes, returns the first damaged position),
/// reopens with recovery and checks that exactly the batches before the
/// damage survive and appends continue after them.
fn check_recovery(
    specs: &[BatchSpec],
    segment_bytes: u64,
    damage: impl FnOnce(&mut Vec<u8>) -> Option<usize>,
) {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(segment_bytes, 64);
    let mut log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
    let mut model = Model::new();
    for s in specs {
        append_spec(&mut log, s, &mut model);
    }
    let active_base = log.active().base_offset;
    log.close().unwrap();

    let path = segment_files(dir.path(), "log").pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let spans = batch_spans(&bytes);
    let Some(first_bad) = damage(&mut bytes) else {
        return;
    };
    std::fs::write(&path, &bytes).unwrap();
    let kept_end = spans
        .iter()
        .filter(|(at, size, _)| at + size <= first_bad)
        .map(|(_, _, h)| h.last_offset() + 1)
        .max()
        .unwrap_or(active_base);
    model.retain(|r| r.0 < kept_end);

    let mut log = PartitionLog::open(dir.path(), config, true).unwrap();
    assert_eq!(log.log_end_offset(), kept_end);
    assert_eq!(read_all(&log, 0, 500), model);
    let on_disk: u64 = segment_files(dir.path(), "log")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(
        log.size_bytes(),
        on_disk,
        "the damaged tail is cut from the file"
    );
    let info = log
        .append(
            make_batch(&[(1, b"after".to_vec())], Compression::None),
            2,
            false,
            0,
        )
        .unwrap();
    assert_eq!(info.base_offset, kept_end);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn appends_read_back_exactly_across_segment_rolls(
        specs in prop::collection::vec(batch_spec(1000), 1..40),
        more in batch_spec(1000),
        segment_bytes in 80u64..800,
        interval in 0usize..300,
        max_bytes in 0usize..700,
        recover in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(segment_bytes, interval);
        let mut log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
        let mut model = Model::new();
        for s in &specs {
            append_spec(&mut log, s, &mut model);
        }
        prop_assert!(model.iter().enumerate().all(|(i, r)| r.0 == i as i64));
        for p in segment_files(dir.path(), "log") {
            let bytes = std::fs::read(&p).unwrap();
            prop_assert!(bytes.len() as u64 <= segment_bytes || batch::batches(&bytes).count() == 1, "{:?} too big", p);
        }
        check_reads(&log, &model, max_bytes);
        prop_assert_eq!(log.size_bytes(), segment_files(dir.path(), "log").iter()
            .map(|p| std::fs::metadata(p).unwrap().len()).sum::<u64>());
        log.close().unwrap();

        let mut log = PartitionLog::open(dir.path(), config, recover).unwrap();
        prop_assert_eq!(log.log_end_offset(), model.len() as i64);
        check_reads(&log, &model, max_bytes);
        append_spec(&mut log, &more, &mut model);
        check_reads(&log, &model, max_bytes);
    }

    #[test]
    fn offset_for_timestamp_matches_a_naive_scan(
        specs in prop::collection::vec(batch_spec(200), 1..30),
        segment_bytes in 100u64..2000,
        interval in 0usize..400,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(segment_bytes, interval);
        let mut log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
        let mut model = Model::new();
        for s in &specs {
            append_spec(&mut log, s, &mut model);
        }
        for round in 0..2 {
            for t in -1..=201 {
                prop_assert_eq!(log.offset_for_timestamp(t).unwrap(), naive_for_timestamp(&model, t), "t={} round={}", t, round);
            }
            prop_assert_eq!(log.max_timestamp().unwrap(), naive_max(&model));
            // Second round: reopened, so indexes come from their files plus a tail scan.
            log.close().unwrap();
            log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
        }
    }

    #[test]
    fn recovery_keeps_every_batch_before_a_truncation_point(
        specs in prop::collection::vec(batch_spec(1000), 1..25),
        segment_bytes in 200u64..3000,
        cut in 0.0f64..1.0,
    ) {
        check_recovery(&specs, segment_bytes, |bytes| {
            if bytes.is_empty() {
                return None;
            }
            let at = ((bytes.len() as f64) * cut) as usize;
            bytes.truncate(at);
            Some(at)
        });
    }

    #[test]
    fn recovery_drops_everything_from_the_first_flipped_byte(
        specs in prop::collection::vec(batch_spec(1000), 1..25),
        segment_bytes in 200u64..3000,
        flips in prop::collection::vec((0.0f64..1.0, 1u8..=255), 1..4),
    ) {
        check_recovery(&specs, segment_bytes, |bytes| {
            let spans = batch_spans(bytes);
            // partitionLeaderEpoch (bytes 12..16) is not covered by the CRC
            // (by design, so it can be patched): a flip there is undetectable.
            let unprotected = |p: usize| spans.iter().any(|(at, _, _)| p >= at + 12 && p < at + 16);
            let mut first = None;
            for (frac, mask) in &flips {
                let p = ((bytes.len() as f64) * frac) as usize;
                if p >= bytes.len() || unprotected(p) {
                    continue;
                }
                bytes[p] ^= mask;
                first = Some(first.map_or(p, |f: usize| f.min(p)));
            }
            first
        });
    }

    #[test]
    fn arbitrary_payloads_never_panic_and_never_half_append(
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        flip_at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), LogConfig::default(), false).unwrap();
        let r = log.append(BytesMut::from(&garbage[..]), 0, false, 0);
        let rejected = matches!(r, Err(LogError::CorruptBatch(_) | LogError::BatchTooLarge { .. }));
        prop_assert!(rejected);
        prop_assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));

        let mut good = make_batch(&[(5, b"v".to_vec()), (6, b"w".to_vec())], Compression::None);
        let i = flip_at.index(good.len());
        good[i] ^= mask;
        match log.append(good, 0, false, 0) {
            // Only baseOffset and partitionLeaderEpoch are outside the CRC,
            // and both are overwritten.
            Ok(info) => {
                prop_assert!(i < 8 || (12..16).contains(&i), "flip at {} accepted", i);
                prop_assert_eq!(decode_records(&log.read(0, 1000, 2).unwrap()).len(), 2);
                prop_assert_eq!(info.base_offset, 0);
            }
            Err(LogError::CorruptBatch(_) | LogError::BatchTooLarge { .. }) => {
                prop_assert_eq!((log.log_end_offset(), log.size_bytes()), (0, 0));
            }
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}

/// Batch specs with the leader epoch each is appended at (non-decreasing,
/// starting at `first`).
fn epoch_specs(
    first: i32,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<(BatchSpec, i32)>> {
    prop::collection::vec((batch_spec(1000), prop::bool::weighted(0.3)), len).prop_map(move |v| {
        let mut epoch = first;
        v.into_iter()
            .map(|(spec, bump)| {
                epoch += i32::from(bump);
                (spec, epoch)
            })
            .collect()
    })
}

fn append_all(log: &mut PartitionLog, specs: &[(BatchSpec, i32)]) {
    let mut model = Model::new();
    for (spec, epoch) in specs {
        append_spec_at_epoch(log, spec, *epoch, &mut model);
    }
}

/// Fetches from the leader into the follower until it has caught up, the
/// way a replica fetcher does; with `back` > 0 every other fetch starts
/// that many offsets below the follower's end (whole batches it already
/// has come back and are skipped).
fn replicate(leader: &PartitionLog, follower: &mut PartitionLog, max_bytes: usize, back: i64) {
    let mut rewind = back > 0;
    while follower.log_end_offset() < leader.log_end_offset() {
        let end = follower.log_end_offset();
        let from = if rewind {
            (end - back).max(leader.log_start_offset())
        } else {
            end
        };
        rewind = !rewind && back > 0;
        let fetched = leader
            .read(from, max_bytes, leader.log_end_offset())
            .unwrap();
        let info = follower
            .append_replicated(BytesMut::from(&fetched[..]))
            .unwrap();
        assert_eq!(info.base_offset, end);
        assert_eq!(info.last_offset + 1, follower.log_end_offset());
    }
}

/// The KIP-101/KIP-279 follower step: ask the leader where the follower's
/// latest epoch ends, truncate there.
fn truncate_divergent_tail(leader: &PartitionLog, follower: &mut PartitionLog) {
    let Some(latest) = follower.latest_epoch() else {
        return;
    };
    let target = match leader.end_offset_for_epoch(latest) {
        None => 0,
        Some((epoch, leader_end)) if epoch == latest => leader_end,
        Some((epoch, leader_end)) => match follower.end_offset_for_epoch(epoch) {
            Some((e, own_end)) if e == epoch => own_end.min(leader_end),
            Some((_, own_end)) => own_end,
            None => 0,
        },
    };
    follower
        .truncate_to(target.min(follower.log_end_offset()))
        .unwrap();
}

/// The leader epoch cache the surviving batches imply (the rebuild rule,
/// trimmed to the log start).
fn expected_epochs(
    batches: &[batch::BatchHeader],
    log_start: i64,
    log_end: i64,
) -> Vec<(i32, i64)> {
    if log_start >= log_end {
        return vec![];
    }
    let mut v: Vec<(i32, i64)> = Vec::new();
    for h in batches.iter().filter(|h| h.last_offset() < log_end) {
        if h.partition_leader_epoch >= 0 && v.last().is_none_or(|l| h.partition_leader_epoch > l.0)
        {
            v.push((h.partition_leader_epoch, h.base_offset));
        }
    }
    let below = v.iter().filter(|e| e.1 <= log_start).count();
    if below > 0 {
        let epoch = v[below - 1].0;
        v.drain(..below);
        v.insert(0, (epoch, log_start));
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn a_follower_reproduces_the_leader_byte_for_byte(
        common in epoch_specs(0, 0..12),
        divergent in epoch_specs(0, 0..6),
        more in epoch_specs(0, 1..12),
        leader_segment in 80u64..900,
        follower_segment in 80u64..900,
        max_bytes in 0usize..700,
        back in 0i64..5,
        recover in any::<bool>(),
    ) {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut leader = PartitionLog::open(ld.path(), small_config(leader_segment, 64), false).unwrap();
        let fconfig = small_config(follower_segment, 100);
        let mut follower = PartitionLog::open(fd.path(), fconfig.clone(), false).unwrap();
        append_all(&mut leader, &common);
        replicate(&leader, &mut follower, max_bytes, back);
        prop_assert_eq!(snapshot(&follower), snapshot(&leader));

        // The follower briefly led epoch E+1 and wrote records nobody got;
        // the leader moved on to epoch E+2.
        let e = leader.latest_epoch().unwrap_or(0);
        let shift = |v: &[(BatchSpec, i32)], by: i32| -> Vec<(BatchSpec, i32)> {
            v.iter().map(|(s, x)| (s.clone(), x + by)).collect()
        };
        append_all(&mut follower, &shift(&divergent, e + 1));
        append_all(&mut leader, &shift(&more, e + 2 + divergent.last().map_or(0, |d| d.1)));
        truncate_divergent_tail(&leader, &mut follower);
        prop_assert!(follower.log_end_offset() <= leader.log_end_offset());
        let common_batches = raw_batches(&leader);
        let kept = raw_batches(&follower);
        prop_assert_eq!(&common_batches[..kept.len()], &kept[..], "a common prefix is kept");
        replicate(&leader, &mut follower, max_bytes, back);
        prop_assert_eq!(snapshot(&follower), snapshot(&leader));
        prop_assert_eq!(
            std::fs::read(fd.path().join("leader-epoch-checkpoint")).unwrap(),
            std::fs::read(ld.path().join("leader-epoch-checkpoint")).unwrap()
        );
        for e in -1..=leader.latest_epoch().unwrap_or(0) + 1 {
            prop_assert_eq!(follower.end_offset_for_epoch(e), leader.end_offset_for_epoch(e));
        }
        follower.close().unwrap();
        let follower = PartitionLog::open(fd.path(), fconfig, recover).unwrap();
        prop_assert_eq!(snapshot(&follower), snapshot(&leader));
    }

    #[test]
    fn truncate_to_keeps_exactly_the_batches_before_the_cut(
        specs in epoch_specs(0, 1..30),
        segment_bytes in 100u64..1500,
        interval in 0usize..300,
        delete_before in prop::option::weighted(0.3, 0.0f64..1.0),
        cut in any::<prop::sample::Index>(),
        next_epoch in 0i32..20,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(segment_bytes, interval);
        let mut log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
        append_all(&mut log, &specs);
        let all: Vec<(bytes::Bytes, batch::BatchHeader)> = raw_batches(&log)
            .into_iter()
            .map(|b| { let h = batch::BatchHeader::parse(&b).unwrap(); (b, h) })
            .collect();
        let leo = log.log_end_offset();
        if let Some(frac) = delete_before {
            log.delete_records_before((leo as f64 * frac) as i64).unwrap();
        }
        let (log_start, first_base) = (log.log_start_offset(), log.segments[0].base_offset);
        let before = snapshot(&log);
        let cut = cut.index(leo as usize + 5) as i64 - 2;

        let result = log.truncate_to(cut);
        let expected = if cut < 0 {
            let out_of_range = matches!(result, Err(LogError::OffsetOutOfRange { .. }));
            prop_assert!(out_of_range);
            before.clone()
        } else if cut >= leo {
            prop_assert_eq!(result.unwrap(), leo);
            let mut e = before.clone();
            if before.0 < leo {
                e.3.retain(|x| x.1 < leo);
            }
            e
        } else if cut < first_base {
            prop_assert_eq!(result.unwrap(), cut);
            (cut, cut, vec![], vec![])
        } else {
            let new_end = all.iter().find(|(_, h)| h.last_offset() >= cut).unwrap().1.base_offset;
            prop_assert_eq!(result.unwrap(), new_end);
            let new_start = log_start.min(new_end);
            let kept: Vec<bytes::Bytes> = all
                .iter()
                .filter(|(_, h)| h.last_offset() >= new_start && h.last_offset() < new_end)
                .map(|(b, _)| b.clone())
                .collect();
            let headers: Vec<batch::BatchHeader> = all.iter().map(|(_, h)| *h).collect();
            (new_start, new_end, kept, expected_epochs(&headers, new_start, new_end))
        };
        prop_assert_eq!(snapshot(&log), expected.clone());
        let model: Model = read_all(&log, log.log_start_offset(), 500);
        prop_assert!(model.iter().all(|r| r.0 >= expected.0 && r.0 < expected.1));

        // Appends continue at the new end; a reopen either way sees the same log.
        let end = log.log_end_offset();
        let info = log.append(make_batch(&[(1, b"after".to_vec())], Compression::None), next_epoch, false, 0).unwrap();
        prop_assert_eq!(info.base_offset, end);
        let after = snapshot(&log);
        if next_epoch > expected.3.last().map_or(-1, |e| e.0) {
            prop_assert_eq!(after.3.last().copied(), Some((next_epoch, end)));
        }
        drop(log);
        for recover in [false, true] {
            let log = PartitionLog::open(dir.path(), config.clone(), recover).unwrap();
            prop_assert_eq!(snapshot(&log), after.clone(), "recover {}", recover);
        }
    }
}
