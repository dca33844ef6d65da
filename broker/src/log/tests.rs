//! Unit tests for the partition log, and the helpers the property tests share:
//! batches are built with `kafka_protocol`'s encoder (real v2 batches with
//! real CRCs) and read back with its decoder.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{self, BatchHeader};
use super::*;

/// A config with small segments and a tight index interval.
pub(super) fn small_config(segment_bytes: u64, index_interval_bytes: usize) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// One v2 batch holding a record per (timestamp, value).
pub(super) fn make_batch(records: &[(i64, Vec<u8>)], compression: Compression) -> BytesMut {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (ts, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: *ts,
            key: None,
            value: Some(Bytes::from(value.clone())),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf
}

/// A batch of `n` records with timestamp `ts` and values "{tag}-{i}".
pub(super) fn simple_batch(tag: &str, n: usize, ts: i64) -> BytesMut {
    let recs: Vec<(i64, Vec<u8>)> = (0..n)
        .map(|i| (ts, format!("{tag}-{i}").into_bytes()))
        .collect();
    make_batch(&recs, Compression::None)
}

/// Decodes every record in `bytes` as (offset, timestamp, value), applying
/// LogAppendTime the way consumers do.
pub(super) fn decode_records(bytes: &Bytes) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    for item in batch::batches(bytes) {
        let (at, h) = item.unwrap();
        let mut one = bytes.slice(at..at + h.total_size());
        let set = RecordBatchDecoder::decode(&mut one).unwrap();
        for r in set.records {
            let ts = if h.is_log_append_time() {
                h.max_timestamp
            } else {
                r.timestamp
            };
            out.push((
                r.offset,
                ts,
                r.value.map(|v| v.to_vec()).unwrap_or_default(),
            ));
        }
    }
    out
}

pub(super) fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    batch::batches(bytes).map(|r| r.unwrap().1).collect()
}

/// Reads the whole log from `from` with `max_bytes` per fetch, decoded.
pub(super) fn read_all(
    log: &PartitionLog,
    from: i64,
    max_bytes: usize,
) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.log_end_offset() {
        let bytes = log.read(next, max_bytes, log.log_end_offset()).unwrap();
        let hs = headers(&bytes);
        assert!(
            !hs.is_empty(),
            "read at {next} returned nothing below the log end"
        );
        assert!(
            hs[0].base_offset <= next && next <= hs[0].last_offset(),
            "first batch must contain {next}"
        );
        next = hs.last().unwrap().last_offset() + 1;
        out.extend(decode_records(&bytes).into_iter().filter(|r| r.0 >= from));
    }
    out
}

pub(super) fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, false).unwrap()
}

#[test]
fn append_assigns_contiguous_offsets_and_patches_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let a = log
        .append(simple_batch("a", 3, 10), 7, false, 1000)
        .unwrap();
    assert_eq!(
        a,
        AppendInfo {
            base_offset: 0,
            last_offset: 2,
            log_append_time_ms: -1
        }
    );
    let b = log
        .append(simple_batch("b", 2, 11), 8, false, 1000)
        .unwrap();
    assert_eq!((b.base_offset, b.last_offset), (3, 4));
    assert_eq!(log.log_end_offset(), 5);

    let bytes = log.read(0, usize::MAX, 5).unwrap();
    let hs = headers(&bytes);
    assert_eq!(hs.len(), 2);
    assert_eq!((hs[0].base_offset, hs[0].partition_leader_epoch), (0, 7));
    assert_eq!((hs[1].base_offset, hs[1].partition_leader_epoch), (3, 8));
    let recs = decode_records(&bytes);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(recs[3].2, b"b-0");
    assert_eq!(log.size_bytes(), bytes.len() as u64);
}

#[test]
fn several_batches_in_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(simple_batch("x", 1, 1), 0, false, 0).unwrap();
    let mut payload = simple_batch("a", 2, 1);
    payload.extend_from_slice(&simple_batch("b", 3, 1));
    let info = log.append(payload, 0, false, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (1, 5));
    let hs = headers(&log.read(1, usize::MAX, 6).unwrap());
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![1, 3]
    );
}

#[test]
fn read_from_the_middle_of_a_batch_returns_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(1 << 20, 1));
    for i in 0..10 {
        log.append(simple_batch(&format!("b{i}"), 5, i), 0, false, 0)
            .unwrap();
    }
    for offset in 0..50 {
        let bytes = log.read(offset, 1, 50).unwrap();
        let hs = headers(&bytes);
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].base_offset, offset / 5 * 5);
    }
}

#[test]
fn max_bytes_limits_but_returns_at_least_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let mut sizes = Vec::new();
    for i in 0..6 {
        let b = simple_batch("v", 1 + i, 0);
        sizes.push(b.len());
        log.append(b, 0, false, 0).unwrap();
    }
    // max_bytes 0 and 1: exactly the first batch (KIP-74).
    for max in [0, 1, sizes[0] - 1] {
        assert_eq!(log.read(0, max, i64::MAX).unwrap().len(), sizes[0]);
    }
    // Exactly k batches fit.
    for k in 1..=6 {
        let max: usize = sizes[..k].iter().sum();
        let bytes = log.read(0, max, i64::MAX).unwrap();
        assert_eq!(headers(&bytes).len(), k);
        assert_eq!(
            log.read(0, max + sizes.get(k).map_or(1, |s| s - 1), i64::MAX)
                .unwrap()
                .len(),
            max
        );
    }
}

#[test]
fn upper_bound_and_offset_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    for _ in 0..4 {
        log.append(simple_batch("v", 2, 0), 0, false, 0).unwrap(); // offsets 0-1, 2-3, 4-5, 6-7
    }
    let hs = headers(&log.read(0, usize::MAX, 4).unwrap());
    assert_eq!(
        hs.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert!(
        log.read(4, usize::MAX, 4).unwrap().is_empty(),
        "nothing starts below the bound"
    );
    assert_eq!(
        headers(&log.read(5, usize::MAX, 5).unwrap()).len(),
        1,
        "batch 4-5 starts below 5"
    );
    assert!(
        log.read(8, 100, 8).unwrap().is_empty(),
        "offset == LEO is empty"
    );
    assert!(matches!(
        log.read(9, 100, 9),
        Err(LogError::OffsetOutOfRange {
            offset: 9,
            log_start: 0,
            log_end: 8
        })
    ));
    assert!(matches!(
        log.read(-1, 100, 8),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn log_append_time_stamps_max_timestamp_and_keeps_crc_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let info = log
        .append(simple_batch("t", 3, 5), 1, true, 99_000)
        .unwrap();
    assert_eq!(info.log_append_time_ms, 99_000);
    let bytes = log.read(0, usize::MAX, 3).unwrap();
    let h = batch::validate_batch(&bytes, 0).unwrap();
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 99_000);
    assert!(decode_records(&bytes).iter().all(|r| r.1 == 99_000));
    assert_eq!(
        log.offset_for_timestamp(6).unwrap(),
        Some(TimestampOffset {
            timestamp: 99_000,
            offset: 0
        })
    );
}

#[test]
fn corrupt_payloads_are_rejected_and_leave_the_log_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(simple_batch("ok", 2, 0), 0, false, 0).unwrap();
    let before = log.read(0, usize::MAX, 2).unwrap();
    let good = simple_batch("g", 2, 0);

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    let mut bad_magic = good.clone();
    bad_magic[16] = 1;
    let truncated = BytesMut::from(&good[..good.len() - 3]);
    let mut second_bad = good.clone();
    second_bad.extend_from_slice(&bad_crc);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    let mut zero_records = good.clone();
    zero_records[57..61].copy_from_slice(&0i32.to_be_bytes());
    for payload in [
        bad_crc,
        bad_magic,
        truncated,
        second_bad,
        trailing,
        zero_records,
        BytesMut::new(),
        BytesMut::from(&b"junk"[..]),
    ] {
        assert!(matches!(
            log.append(payload, 0, false, 0),
            Err(LogError::CorruptBatch(_))
        ));
    }
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(log.read(0, usize::MAX, 2).unwrap(), before);
    assert_eq!(log.size_bytes(), before.len() as u64);
    assert_eq!(
        std::fs::metadata(dir.path().join(format!("{:020}.log", 0)))
            .unwrap()
            .len(),
        before.len() as u64
    );
}

#[test]
fn oversized_batch_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config);
    let big = make_batch(&[(0, vec![7u8; 300])], Compression::None);
    let size = big.len();
    assert!(
        matches!(log.append(big, 0, false, 0), Err(LogError::BatchTooLarge { size: s, max: 200 }) if s == size)
    );
    assert_eq!(log.log_end_offset(), 0);
    log.append(simple_batch("small", 1, 0), 0, false, 0)
        .unwrap();
}

#[test]
fn failed_write_is_truncated_away_and_the_next_append_works() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(1 << 20, 1));
    log.append(simple_batch("a", 2, 0), 0, false, 0).unwrap();
    let size = log.size_bytes();
    log.active_mut().fail_write_after = Some(10);
    let err = log
        .append(simple_batch("b", 2, 0), 0, false, 0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::Storage {
                action: "appending to",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!((log.log_end_offset(), log.size_bytes()), (2, size));
    assert_eq!(
        std::fs::metadata(log.active().log_path()).unwrap().len(),
        size
    );
    let info = log.append(simple_batch("c", 2, 0), 0, false, 0).unwrap();
    assert_eq!(info.base_offset, 2);
    let values: Vec<Vec<u8>> = read_all(&log, 0, 1000).into_iter().map(|r| r.2).collect();
    assert_eq!(
        values,
        vec![
            b"a-0".to_vec(),
            b"a-1".to_vec(),
            b"c-0".to_vec(),
            b"c-1".to_vec()
        ]
    );
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config(1 << 20, 1), true).unwrap();
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn rolls_by_size_and_by_age_with_kafka_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("r", 1, 0).len() as u64;
    let config = LogConfig {
        segment_bytes: 2 * one,
        segment_ms: 1000,
        ..small_config(0, 4096)
    };
    let mut log = open(dir.path(), config);
    for _ in 0..5 {
        log.append(simple_batch("r", 1, 0), 0, false, 0).unwrap();
    }
    // 2 batches per segment: bases 0, 2, 4.
    let names: Vec<String> = segment_files(dir.path(), "log")
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "00000000000000000000.log",
            "00000000000000000002.log",
            "00000000000000000004.log"
        ]
    );
    assert_eq!(segment_files(dir.path(), "index").len(), 3);
    assert_eq!(segment_files(dir.path(), "timeindex").len(), 3);
    // The active segment got its first batch at now=0; at now=999 it stays, at 1000 it rolls.
    log.append(simple_batch("r", 1, 0), 0, false, 999).unwrap();
    assert_eq!(log.segments.len(), 3);
    log.set_config(LogConfig {
        segment_bytes: 1 << 20,
        ..log.config().clone()
    });
    log.append(simple_batch("r", 1, 0), 0, false, 1000).unwrap();
    assert_eq!(log.segments.len(), 4);
    assert_eq!(log.active().base_offset, 6);
    assert_eq!(log.config().segment_bytes, 1 << 20);
}

#[test]
fn offset_index_gets_an_entry_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch("i", 1, 0).len();
    let mut log = open(dir.path(), small_config(1 << 20, batch_len * 3));
    for _ in 0..30 {
        log.append(simple_batch("i", 1, 0), 0, false, 0).unwrap();
    }
    // An entry before batches 3, 6, ..., 27.
    assert_eq!(log.active().offset_index_entries(), 9);
    log.close().unwrap();
    let bytes = std::fs::read(dir.path().join(format!("{:020}.index", 0))).unwrap();
    assert_eq!(bytes.len(), 9 * 8);
    assert_eq!(
        &bytes[..8],
        &[0, 0, 0, 3, 0, 0, 0, (batch_len * 3) as u8][..]
    );
}

#[test]
fn retention_by_time_deletes_old_segments_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("x", 1, 0).len() as u64;
    let config = LogConfig {
        retention_ms: 1000,
        ..small_config(one, 4096)
    };
    let mut log = open(dir.path(), config.clone());
    for ts in [100, 200, 300, 5000] {
        log.append(simple_batch("x", 1, ts), 0, false, ts).unwrap();
    }
    assert_eq!(log.segments.len(), 4);
    assert_eq!(
        log.enforce_retention(1150).unwrap(),
        1,
        "only ts 100 is older than 1000 ms"
    );
    assert_eq!(log.log_start_offset(), 1);
    assert!(matches!(
        log.read(0, 100, 4),
        Err(LogError::OffsetOutOfRange {
            offset: 0,
            log_start: 1,
            ..
        })
    ));
    assert_eq!(log.enforce_retention(1150).unwrap(), 0);
    assert_eq!(log.enforce_retention(1301).unwrap(), 2);
    assert_eq!(log.log_start_offset(), 3);
    assert_eq!(read_all(&log, 3, 100).len(), 1);
    drop(log);
    let log = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 4));
    assert!(matches!(
        log.read(2, 100, 4),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_of_everything_rolls_the_active_segment_and_keeps_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 1000,
        ..small_config(1 << 20, 4096)
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..3 {
        log.append(simple_batch("x", 2, 10), 0, false, 10).unwrap();
    }
    assert_eq!(log.enforce_retention(5000).unwrap(), 1);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (6, 6, 0)
    );
    assert!(log.read(6, 100, 6).unwrap().is_empty());
    assert_eq!(
        log.enforce_retention(10_000).unwrap(),
        0,
        "an empty active segment stays"
    );
    log.close().unwrap();
    let mut log = open(dir.path(), config.clone());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
    assert_eq!(
        log.append(simple_batch("y", 1, 0), 0, false, 20_000)
            .unwrap()
            .base_offset,
        6
    );
    drop(log);
    // Even with every file gone but the checkpoint, offsets never restart at 0.
    for p in segment_files(dir.path(), "log") {
        std::fs::remove_file(p).unwrap();
    }
    let log = PartitionLog::open(dir.path(), config, true).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (6, 6));
}

#[test]
fn retention_by_bytes_deletes_oldest_until_within_limit() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("x", 1, 0).len() as u64;
    let config = LogConfig {
        retention_bytes: (2 * one + 1) as i64,
        ..small_config(one, 4096)
    };
    let mut log = open(dir.path(), config.clone());
    for _ in 0..5 {
        log.append(simple_batch("x", 1, 0), 0, false, 0).unwrap();
    }
    assert_eq!(log.size_bytes(), 5 * one);
    assert_eq!(log.enforce_retention(0).unwrap(), 3);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.size_bytes()
        ),
        (3, 5, 2 * one)
    );
    // The active segment alone is never deleted for size.
    let mut tiny = config.clone();
    tiny.retention_bytes = 0;
    log.set_config(tiny);
    assert_eq!(log.enforce_retention(0).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 4);
    drop(log);
    assert_eq!(open(dir.path(), config).log_start_offset(), 4);
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(1000, 100);
    let mut log = open(dir.path(), config.clone());
    for i in 0..60 {
        log.append(
            simple_batch("d", 1 + i % 3, 1000 - i as i64 * 7 % 50),
            0,
            false,
            0,
        )
        .unwrap();
    }
    let expected = read_all(&log, 0, 300);
    let ts_expected: Vec<_> = (940..1010)
        .map(|t| log.offset_for_timestamp(t).unwrap())
        .collect();
    log.close().unwrap();
    let indexes = segment_files(dir.path(), "index");
    let times = segment_files(dir.path(), "timeindex");
    assert!(indexes.len() > 2);
    std::fs::remove_file(&indexes[0]).unwrap();
    std::fs::remove_file(&times[1]).unwrap();
    let len = std::fs::metadata(&indexes[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&indexes[1])
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    std::fs::write(&indexes[2], vec![0xFFu8; 16]).unwrap();
    let last = indexes.last().unwrap();
    std::fs::write(last, vec![0u8; 24]).unwrap();
    let log = open(dir.path(), config.clone());
    assert_eq!(read_all(&log, 0, 300), expected);
    assert_eq!(
        (940..1010)
            .map(|t| log.offset_for_timestamp(t).unwrap())
            .collect::<Vec<_>>(),
        ts_expected
    );
    for o in 0..log.log_end_offset() {
        assert!(headers(&log.read(o, 1, i64::MAX).unwrap())[0].last_offset() >= o);
    }
    assert!(
        std::fs::metadata(&indexes[0]).unwrap().len() > 0,
        "rebuilt index written back"
    );
}

#[test]
fn compressed_batches_are_stored_untouched_and_searchable_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    log.append(simple_batch("plain", 2, 50), 0, false, 0)
        .unwrap();
    let recs: Vec<(i64, Vec<u8>)> = [300, 100, 200, 400]
        .iter()
        .map(|t| (*t, vec![b'z'; 100]))
        .collect();
    let gz = make_batch(&recs, Compression::Gzip);
    let original = gz.clone();
    assert_eq!(BatchHeader::parse(&gz).unwrap().compression(), 1);
    log.append(gz, 3, false, 0).unwrap();
    let stored = log.read(2, usize::MAX, 6).unwrap();
    assert_eq!(stored.len(), original.len());
    assert_eq!(
        &stored[16..],
        &original[16..],
        "only baseOffset and leader epoch differ"
    );
    assert_eq!(BatchHeader::parse(&stored).unwrap().base_offset, 2);
    let at = |t| log.offset_for_timestamp(t).unwrap();
    assert_eq!(
        at(0),
        Some(TimestampOffset {
            timestamp: 50,
            offset: 0
        })
    );
    assert_eq!(
        at(51),
        Some(TimestampOffset {
            timestamp: 300,
            offset: 2
        })
    );
    assert_eq!(
        at(301),
        Some(TimestampOffset {
            timestamp: 400,
            offset: 5
        })
    );
    assert_eq!(at(401), None);
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(TimestampOffset {
            timestamp: 400,
            offset: 5
        })
    );
}

#[test]
fn max_timestamp_is_the_first_record_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), small_config(200, 10));
    assert_eq!(log.max_timestamp().unwrap(), None);
    for ts in [[5, 9, 1], [9, 3, 9], [2, 2, 2]] {
        let recs: Vec<(i64, Vec<u8>)> = ts.iter().map(|t| (*t, vec![1])).collect();
        log.append(make_batch(&recs, Compression::None), 0, false, 0)
            .unwrap();
    }
    assert_eq!(
        log.max_timestamp().unwrap(),
        Some(TimestampOffset {
            timestamp: 9,
            offset: 1
        })
    );
}

#[test]
fn torn_tail_is_truncated_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(1 << 20, 64);
    let mut log = open(dir.path(), config.clone());
    for _ in 0..10 {
        log.append(simple_batch("t", 2, 0), 0, false, 0).unwrap();
    }
    let full = log.size_bytes();
    let one = full / 10;
    drop(log);
    let path = dir.path().join(format!("{:020}.log", 0));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 5)
        .unwrap();
    let mut log = PartitionLog::open(dir.path(), config.clone(), true).unwrap();
    assert_eq!((log.log_end_offset(), log.size_bytes()), (18, 9 * one));
    assert_eq!(
        log.append(simple_batch("t", 1, 0), 0, false, 0)
            .unwrap()
            .base_offset,
        18
    );
    drop(log);
    // A torn tail is found without `recover` too (the tail scan checks it).
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let log = open(dir.path(), config);
    assert_eq!(log.log_end_offset(), 18);
}

#[test]
fn fsync_always_flush_close_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let config = LogConfig {
        fsync: FsyncPolicy::Always,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(&path, config, false).unwrap();
    log.append(simple_batch("f", 1, 0), 0, false, 0).unwrap();
    log.flush().unwrap();
    assert!(path.exists());
    log.delete().unwrap();
    assert!(!path.exists());
}

#[test]
fn leftover_files_are_cleaned_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("log-start-offset.tmp"), "5").unwrap();
    std::fs::write(dir.path().join(format!("{:020}.index", 42)), [0u8; 8]).unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.log_end_offset(), 0);
    assert!(!dir.path().join("log-start-offset.tmp").exists());
    assert!(!dir.path().join(format!("{:020}.index", 42)).exists());
}

#[test]
fn partition_log_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PartitionLog>();
}

#[test]
fn delete_records_before_advances_the_log_start_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("x", 1, 0).len() as u64;
    let config = small_config(3 * one, 4096);
    let mut log = open(dir.path(), config.clone());
    for ts in 0..10 {
        log.append(simple_batch("x", 1, ts), 0, false, 0).unwrap();
    }
    assert_eq!(log.segments.len(), 4); // 0-2, 3-5, 6-8, 9
    assert_eq!(log.delete_records_before(4).unwrap(), 4);
    assert_eq!(
        log.segments.len(),
        3,
        "only the segment wholly below 4 goes"
    );
    assert!(matches!(
        log.read(3, 100, 10),
        Err(LogError::OffsetOutOfRange { log_start: 4, .. })
    ));
    assert_eq!(headers(&log.read(4, 1, 10).unwrap())[0].base_offset, 4);
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some(TimestampOffset {
            timestamp: 4,
            offset: 4
        })
    );
    assert_eq!(
        log.delete_records_before(2).unwrap(),
        4,
        "no-op below the log start"
    );
    assert!(matches!(
        log.delete_records_before(11),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    drop(log);

    let mut log = open(dir.path(), config.clone());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (4, 10));
    assert_eq!(log.delete_records_before(10).unwrap(), 10);
    assert!(log.read(10, 100, 10).unwrap().is_empty());
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert_eq!(
        log.append(simple_batch("y", 1, 0), 0, false, 0)
            .unwrap()
            .base_offset,
        10
    );
    log.close().unwrap();
    let log = open(dir.path(), config);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (10, 11));
    assert_eq!(read_all(&log, 10, 100).len(), 1);
}

#[test]
fn log_start_inside_a_batch_returns_the_batch_but_hides_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path(), LogConfig::default());
    let recs: Vec<(i64, Vec<u8>)> = [30, 10, 20].iter().map(|t| (*t, vec![1])).collect();
    log.append(make_batch(&recs, Compression::None), 0, false, 0)
        .unwrap();
    log.delete_records_before(1).unwrap();
    assert!(matches!(
        log.read(0, 100, 3),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        headers(&log.read(1, 100, 3).unwrap())[0].base_offset,
        0,
        "whole batch, clients skip"
    );
    assert_eq!(
        log.offset_for_timestamp(0).unwrap(),
        Some(TimestampOffset {
            timestamp: 10,
            offset: 1
        })
    );
    assert_eq!(
        log.enforce_retention(0).unwrap(),
        0,
        "the active segment stays"
    );
}

#[test]
fn retention_deletes_segments_below_a_log_start_once_they_are_rolled() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("x", 1, 0).len() as u64;
    let mut log = open(dir.path(), small_config(2 * one, 4096));
    for _ in 0..2 {
        log.append(simple_batch("x", 1, 0), 0, false, 0).unwrap();
    }
    log.delete_records_before(2).unwrap();
    assert_eq!(log.segments.len(), 1);
    log.append(simple_batch("x", 1, 0), 0, false, 0).unwrap(); // rolls
    assert_eq!(log.enforce_retention(0).unwrap(), 1);
    assert_eq!((log.log_start_offset(), log.size_bytes()), (2, one));
}

#[test]
fn a_plausible_but_wrong_index_entry_does_not_skew_reads() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("w", 1, 0).len();
    let config = small_config(1 << 20, one);
    let mut log = open(dir.path(), config.clone());
    for ts in 0..6 {
        log.append(simple_batch("w", 1, ts), 0, false, 0).unwrap();
    }
    log.close().unwrap();
    // Entries are (1, one), (2, 2*one), ... (5, 5*one). Make the entry for
    // offset 3 claim offset 2 instead of the entry for 2: still monotonic.
    let path = dir.path().join(format!("{:020}.index", 0));
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 5 * 8);
    bytes[8..12].copy_from_slice(&1u32.to_be_bytes()); // (1, 2*one)
    bytes[0..4].copy_from_slice(&0u32.to_be_bytes()); // (0, one)
    std::fs::write(&path, bytes).unwrap();
    let log = open(dir.path(), config);
    for offset in 0..6 {
        assert_eq!(
            headers(&log.read(offset, 1, 6).unwrap())[0].base_offset,
            offset
        );
    }
    assert_eq!(
        log.offset_for_timestamp(1).unwrap(),
        Some(TimestampOffset {
            timestamp: 1,
            offset: 1
        })
    );
}
