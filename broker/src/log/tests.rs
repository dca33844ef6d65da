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
fn index_entries_are_written_behind_and_a_stale_index_file_still_reads_right() {
    // Appends keep index entries in memory; the files get them when the
    // segment is synced. A log dropped without close (kill -9) and opened
    // either way reads every offset and timestamp as before, and the next
    // clean close writes the complete index.
    let dir = tempfile::tempdir().unwrap();
    let batch_len = simple_batch("i", 1, 0).len();
    let config = small_config(1 << 20, batch_len);
    let mut log = open(dir.path(), config.clone());
    for ts in 0..20 {
        log.append(simple_batch("i", 1, ts * 10), 0, false, 0)
            .unwrap();
    }
    let index = dir.path().join(format!("{:020}.index", 0));
    assert_eq!(
        std::fs::metadata(&index).unwrap().len(),
        0,
        "nothing written yet"
    );
    log.flush().unwrap();
    assert_eq!(std::fs::metadata(&index).unwrap().len(), 19 * 8);
    for ts in 20..30 {
        log.append(simple_batch("i", 1, ts * 10), 0, false, 0)
            .unwrap();
    }
    drop(log);
    assert_eq!(
        std::fs::metadata(&index).unwrap().len(),
        19 * 8,
        "the last ten are pending"
    );
    for recover in [false, true] {
        let log = PartitionLog::open(dir.path(), config.clone(), recover).unwrap();
        assert_eq!(log.log_end_offset(), 30);
        assert_eq!(log.active().offset_index_entries(), 29, "recover {recover}");
        for offset in 0..30 {
            assert_eq!(
                headers(&log.read(offset, 1, 30).unwrap())[0].base_offset,
                offset
            );
            assert_eq!(
                log.offset_for_timestamp(offset * 10)
                    .unwrap()
                    .map(|t| t.offset),
                Some(offset)
            );
        }
        log.close().unwrap();
        assert_eq!(std::fs::metadata(&index).unwrap().len(), 29 * 8);
    }
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

// ---- Replication: append_replicated, truncate_to, leader epochs ----

/// Every batch from the log start, as raw bytes, one `read` per batch.
pub(super) fn raw_batches(log: &PartitionLog) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let bytes = log.read(next, 0, i64::MAX).unwrap();
        let h = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(bytes.len(), h.total_size(), "max_bytes 0 reads one batch");
        next = h.last_offset() + 1;
        out.push(bytes);
    }
    out
}

pub(super) fn epochs(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.leader_epochs()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

/// Everything a reader can observe of a log, for before/after comparisons.
pub(super) fn snapshot(log: &PartitionLog) -> (i64, i64, Vec<Bytes>, Vec<(i32, i64)>) {
    (
        log.log_start_offset(),
        log.log_end_offset(),
        raw_batches(log),
        epochs(log),
    )
}

/// Copies the leader's log into the follower with fetches of `max_bytes`
/// from the follower's log end, the way a replica fetcher does.
pub(super) fn replicate(leader: &PartitionLog, follower: &mut PartitionLog, max_bytes: usize) {
    while follower.log_end_offset() < leader.log_end_offset() {
        let from = follower.log_end_offset();
        let fetched = leader
            .read(from, max_bytes, leader.log_end_offset())
            .unwrap();
        let info = follower
            .append_replicated(BytesMut::from(&fetched[..]))
            .unwrap();
        assert_eq!(info.base_offset, from);
        assert_eq!(info.last_offset + 1, follower.log_end_offset());
    }
}

fn checkpoint_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("leader-epoch-checkpoint")).unwrap()
}

/// A leader log of batches of 3 records (offsets 3k..3k+2), epochs as given.
fn leader_log(dir: &Path, config: LogConfig, epochs: &[i32]) -> PartitionLog {
    let mut log = open(dir, config);
    for (i, e) in epochs.iter().enumerate() {
        log.append(simple_batch(&format!("l{i}"), 3, i as i64), *e, false, 0)
            .unwrap();
    }
    log
}

#[test]
fn a_follower_fed_with_the_leaders_reads_has_the_leaders_bytes() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = open(ld.path(), small_config(400, 64));
    for i in 0..30i64 {
        let epoch = [0, 0, 1, 3, 3, 7][(i / 5) as usize];
        let batch = if i % 4 == 1 {
            make_batch(
                &[(i, vec![b'z'; 50]), (i + 1, vec![b'y'; 9])],
                Compression::Gzip,
            )
        } else {
            simple_batch(&format!("v{i}"), 1 + (i % 3) as usize, 100 + i)
        };
        leader.append(batch, epoch, i % 7 == 3, 5000 + i).unwrap();
    }
    let mut follower = open(fd.path(), small_config(700, 100));
    replicate(&leader, &mut follower, 250);
    assert_eq!(snapshot(&follower), snapshot(&leader));
    assert_eq!(epochs(&follower), vec![(0, 0), (1, 19), (3, 30), (7, 49)]);
    assert_eq!(checkpoint_text(fd.path()), checkpoint_text(ld.path()));
    assert!(
        segment_files(fd.path(), "log").len() > 2,
        "the follower rolled"
    );
    assert_eq!(read_all(&follower, 0, 300), read_all(&leader, 0, 300));
    for t in [0, 100, 115, 5003, 10_000] {
        assert_eq!(
            follower.offset_for_timestamp(t).unwrap(),
            leader.offset_for_timestamp(t).unwrap()
        );
    }

    // A fetch from below the log end repeats whole batches: skipped.
    let end = follower.log_end_offset();
    let again = leader.read(end - 5, usize::MAX, end).unwrap();
    let info = follower
        .append_replicated(BytesMut::from(&again[..]))
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (end, end - 1));
    assert_eq!(follower.log_end_offset(), end);

    // New leader data after a refetch that overlaps: only the new batches land.
    leader
        .append(simple_batch("new", 2, 1), 8, false, 0)
        .unwrap();
    let overlapping = leader.read(end - 1, usize::MAX, i64::MAX).unwrap();
    let info = follower
        .append_replicated(BytesMut::from(&overlapping[..]))
        .unwrap();
    assert_eq!((info.base_offset, info.last_offset), (end, end + 1));
    assert_eq!(snapshot(&follower), snapshot(&leader));

    follower.close().unwrap();
    for recover in [false, true] {
        let f = PartitionLog::open(fd.path(), small_config(700, 100), recover).unwrap();
        assert_eq!(snapshot(&f), snapshot(&leader));
    }
}

#[test]
fn replicated_batches_that_do_not_continue_the_log_are_rejected_unchanged() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader_log(ld.path(), LogConfig::default(), &[0, 2, 2, 3]);
    let batch = |k: usize| -> BytesMut {
        let b = raw_batches(&leader)[k].clone();
        BytesMut::from(&b[..])
    };
    let mut follower = open(
        fd.path(),
        LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        },
    );
    let mut first_two = batch(0);
    first_two.extend_from_slice(&batch(1));
    follower.append_replicated(first_two).unwrap();
    assert_eq!(follower.log_end_offset(), 6);
    let before = snapshot(&follower);
    let ckpt = checkpoint_text(fd.path());
    assert_eq!(ckpt, "0\n2\n0 0\n2 3\n");

    let mut straddling = batch(2);
    batch::set_base_offset(&mut straddling, 4); // 4..=6 while the log ends at 6
    let mut then_gap = batch(2);
    then_gap.extend_from_slice(&batch(3)[..]);
    let mut gap_after_first = batch(2);
    let mut shifted = batch(3);
    batch::set_base_offset(&mut shifted, 10);
    gap_after_first.extend_from_slice(&shifted);
    let mut epoch_down = batch(2);
    batch::set_partition_leader_epoch(&mut epoch_down, 1);
    let mut epoch_down_later = batch(2);
    let mut e1 = batch(3);
    batch::set_partition_leader_epoch(&mut e1, 1);
    epoch_down_later.extend_from_slice(&e1);
    let mut bad_crc = batch(2);
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 1;
    let partial = BytesMut::from(&batch(2)[..20]);
    let big = {
        let mut b = make_batch(&[(0, vec![1u8; 600])], Compression::None);
        batch::set_base_offset(&mut b, 6);
        b
    };

    let cases: Vec<(&str, BytesMut)> = vec![
        ("gap", batch(3)),
        ("straddle", straddling),
        ("gap after the first", gap_after_first),
        ("epoch below the cache", epoch_down),
        ("epoch below an earlier batch", epoch_down_later),
        ("crc", bad_crc),
        ("partial", partial),
        ("empty", BytesMut::new()),
        ("too large", big),
    ];
    for (name, payload) in cases {
        let err = follower.append_replicated(payload).unwrap_err();
        match name {
            "gap" => assert!(
                matches!(
                    err,
                    LogError::OffsetOutOfRange {
                        offset: 9,
                        log_end: 6,
                        ..
                    }
                ),
                "{name}: {err}"
            ),
            "straddle" => assert!(
                matches!(
                    err,
                    LogError::OffsetOutOfRange {
                        offset: 4,
                        log_end: 6,
                        ..
                    }
                ),
                "{name}: {err}"
            ),
            "gap after the first" => assert!(
                matches!(
                    err,
                    LogError::OffsetOutOfRange {
                        offset: 10,
                        log_end: 9,
                        ..
                    }
                ),
                "{name}: {err}"
            ),
            "too large" => assert!(
                matches!(err, LogError::BatchTooLarge { .. }),
                "{name}: {err}"
            ),
            _ => assert!(matches!(err, LogError::CorruptBatch(_)), "{name}: {err}"),
        }
        assert_eq!(snapshot(&follower), before, "{name}");
        assert_eq!(
            follower.size_bytes(),
            before.2.iter().map(|b| b.len() as u64).sum::<u64>()
        );
        assert_eq!(checkpoint_text(fd.path()), ckpt, "{name}");
        let _ = then_gap.len();
    }
    // The valid continuation still works after all that.
    follower.append_replicated(then_gap).unwrap();
    assert_eq!(snapshot(&follower), snapshot(&leader));
}

#[test]
fn a_failed_replicated_write_undoes_the_data_and_the_epoch_checkpoint() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader_log(ld.path(), LogConfig::default(), &[0, 4]);
    let batches = raw_batches(&leader);
    let mut follower = open(fd.path(), small_config(1 << 20, 1));
    follower
        .append_replicated(BytesMut::from(&batches[0][..]))
        .unwrap();
    let before = snapshot(&follower);
    let ckpt = checkpoint_text(fd.path());
    follower.active_mut().fail_write_after = Some(10);
    let err = follower
        .append_replicated(BytesMut::from(&batches[1][..]))
        .unwrap_err();
    assert!(matches!(err, LogError::Storage { .. }), "{err}");
    assert_eq!(snapshot(&follower), before);
    assert_eq!(checkpoint_text(fd.path()), ckpt, "epoch 4 was not kept");
    follower
        .append_replicated(BytesMut::from(&batches[1][..]))
        .unwrap();
    assert_eq!(snapshot(&follower), snapshot(&leader));
}

#[test]
fn leader_epoch_cache_answers_offset_for_leader_epoch_per_kip_279() {
    let dir = tempfile::tempdir().unwrap();
    let one = simple_batch("x", 2, 0).len() as u64;
    let config = LogConfig {
        retention_ms: -1,
        ..small_config(2 * one, 4096)
    };
    let mut log = open(dir.path(), config.clone());
    assert_eq!(
        (log.latest_epoch(), log.end_offset_for_epoch(0)),
        (None, None)
    );
    for e in [0, 0, 2, 2, 5] {
        log.append(simple_batch("x", 2, 0), e, false, 0).unwrap(); // 2 offsets each
    }
    let answers = |log: &PartitionLog| -> Vec<Option<(i32, i64)>> {
        [-1, 0, 1, 2, 3, 5, 6]
            .iter()
            .map(|e| log.end_offset_for_epoch(*e))
            .collect()
    };
    let expected = vec![
        None,
        Some((0, 4)),
        Some((0, 4)),
        Some((2, 8)),
        Some((2, 8)),
        Some((5, 10)),
        None,
    ];
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 8)]);
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(answers(&log), expected);
    assert_eq!(checkpoint_text(dir.path()), "0\n3\n0 0\n2 4\n5 8\n");

    // A lower epoch from a caller does not rewrite history.
    log.append(simple_batch("x", 2, 0), 1, false, 0).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (5, 8)]);
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 12)));
    assert_eq!(log.truncate_to(10).unwrap(), 10);
    log.close().unwrap();

    let mut log = open(dir.path(), config.clone());
    assert_eq!(answers(&log), expected, "survives a reopen");

    // Truncation drops the epochs that start at or after the cut.
    assert_eq!(log.truncate_to(7).unwrap(), 6, "inside batch 6..=7");
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4)]);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 6)));
    assert_eq!(log.end_offset_for_epoch(5), None);
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n0 0\n2 4\n");
    log.append(simple_batch("x", 2, 0), 6, false, 0).unwrap();
    assert_eq!(epochs(&log), vec![(0, 0), (2, 4), (6, 6)]);

    // Retention and DeleteRecords collapse the entries below the log start.
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(epochs(&log), vec![(2, 5), (6, 6)]);
    assert_eq!(
        log.end_offset_for_epoch(0),
        Some((0, 5)),
        "below the first epoch: Kafka's answer"
    );
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 6)));
    assert_eq!(checkpoint_text(dir.path()), "0\n2\n2 5\n6 6\n");
    log.delete_records_before(7).unwrap();
    assert_eq!(epochs(&log), vec![(6, 7)]);
    log.close().unwrap();

    // Rebuilt from the batch headers when the checkpoint is gone or damaged.
    for damage in ["", "0\n2\n6 7\n"] {
        if damage.is_empty() {
            std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
        } else {
            std::fs::write(dir.path().join("leader-epoch-checkpoint"), damage).unwrap();
        }
        let log = open(dir.path(), config.clone());
        assert_eq!(epochs(&log), vec![(6, 7)]);
        assert_eq!(checkpoint_text(dir.path()), "0\n1\n6 7\n");
    }

    let mut log = open(dir.path(), config.clone());
    log.set_config(LogConfig {
        retention_ms: 0,
        ..config.clone()
    });
    log.enforce_retention(i64::MAX / 2).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (8, 8));
    assert_eq!(
        epochs(&log),
        vec![(6, 8)],
        "retention of everything keeps the latest epoch at the log end"
    );
    assert_eq!(log.end_offset_for_epoch(6), Some((6, 8)));
    assert_eq!(log.truncate_to(8).unwrap(), 8);
    assert_eq!(epochs(&log), vec![(6, 8)]);
    drop(log);
    assert_eq!(
        epochs(&open(dir.path(), config)),
        vec![(6, 8)],
        "and so does a reopen"
    );
}

#[test]
fn a_leader_epoch_assigned_at_election_lasts_until_written_or_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), LogConfig::default(), &[1, 1]);
    log.assign_leader_epoch(3).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 6)]);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 6)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 6)));
    log.assign_leader_epoch(2).unwrap();
    assert_eq!(epochs(&log), vec![(1, 0), (3, 6)], "not above the latest");
    // A no-op truncation drops it (Kafka), and so does a reopen.
    assert_eq!(log.truncate_to(6).unwrap(), 6);
    assert_eq!(epochs(&log), vec![(1, 0)]);
    log.assign_leader_epoch(3).unwrap();
    drop(log);
    let mut log = open(dir.path(), LogConfig::default());
    assert_eq!(epochs(&log), vec![(1, 0)]);
    log.assign_leader_epoch(4).unwrap();
    log.append(simple_batch("x", 1, 0), 4, false, 0).unwrap();
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(epochs(&log), vec![(1, 0), (4, 6)]);
}

#[test]
fn truncate_to_cuts_whole_batches_across_segments() {
    let one = simple_batch("l0", 3, 0).len() as u64;
    let config = small_config(2 * one, 1); // two batches of 3 offsets per segment
    let all_epochs = [0, 0, 1, 1, 1, 2, 2, 4];
    let reference = {
        let d = tempfile::tempdir().unwrap();
        snapshot(&leader_log(d.path(), config.clone(), &all_epochs))
    };
    for offset in -1..=26i64 {
        let dir = tempfile::tempdir().unwrap();
        let mut log = leader_log(dir.path(), config.clone(), &all_epochs);
        assert_eq!(log.segments.len(), 4);
        if offset < 0 {
            assert!(matches!(
                log.truncate_to(offset),
                Err(LogError::OffsetOutOfRange { .. })
            ));
            assert_eq!(snapshot(&log), reference);
            continue;
        }
        let new_end = log.truncate_to(offset).unwrap();
        let expect_end = (offset / 3 * 3).min(24);
        assert_eq!(new_end, expect_end, "offset {offset}");
        let kept = (expect_end / 3) as usize;
        let (_, _, ref_batches, _) = &reference;
        assert_eq!(
            raw_batches(&log),
            ref_batches[..kept].to_vec(),
            "offset {offset}"
        );
        let expect_epochs: Vec<(i32, i64)> = reference
            .3
            .iter()
            .copied()
            .filter(|(_, s)| *s < expect_end)
            .collect();
        assert_eq!(epochs(&log), expect_epochs);
        // Segments above the cut are gone, the cut one keeps its name.
        assert_eq!(log.segments.len(), (offset.min(23) / 6 + 1) as usize);
        assert_eq!(segment_files(dir.path(), "log").len(), log.segments.len());
        assert_eq!(segment_files(dir.path(), "index").len(), log.segments.len());
        let on_disk: u64 = segment_files(dir.path(), "log")
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, log.size_bytes());
        for o in 0..new_end {
            assert!(headers(&log.read(o, 1, i64::MAX).unwrap())[0].last_offset() >= o);
        }
        // Appends continue at the new end, with a new epoch.
        let info = log
            .append(simple_batch("after", 2, 9), 9, false, 0)
            .unwrap();
        assert_eq!(info.base_offset, new_end);
        assert_eq!(log.end_offset_for_epoch(9), Some((9, new_end + 2)));
        let after = snapshot(&log);
        drop(log);
        for recover in [false, true] {
            let log = PartitionLog::open(dir.path(), config.clone(), recover).unwrap();
            assert_eq!(snapshot(&log), after, "offset {offset} recover {recover}");
        }
    }
}

#[test]
fn truncate_below_the_log_start() {
    let one = simple_batch("l0", 3, 0).len() as u64;
    let config = small_config(2 * one, 1);
    let epochs6 = [0, 0, 1, 1, 2, 2];
    // Inside the first segment but below the log start: the log ends up
    // empty at the cut batch, the log start drops to it.
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), config.clone(), &epochs6);
    log.delete_records_before(4).unwrap(); // inside batch 3..=5, first segment kept
    assert_eq!(log.segments[0].base_offset, 0);
    assert_eq!(log.truncate_to(1).unwrap(), 0);
    assert_eq!(snapshot(&log), (0, 0, vec![], vec![]));
    assert_eq!(
        log.append(simple_batch("a", 1, 0), 3, false, 0)
            .unwrap()
            .base_offset,
        0
    );
    let after = snapshot(&log);
    drop(log);
    for recover in [false, true] {
        assert_eq!(
            snapshot(&PartitionLog::open(dir.path(), config.clone(), recover).unwrap()),
            after
        );
    }

    // The cut batch straddles the log start.
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), config.clone(), &epochs6);
    log.delete_records_before(4).unwrap();
    assert_eq!(log.truncate_to(5).unwrap(), 3);
    assert_eq!(snapshot(&log), (3, 3, vec![], vec![]));
    drop(log);
    let log = PartitionLog::open(dir.path(), config.clone(), true).unwrap();
    assert_eq!(snapshot(&log), (3, 3, vec![], vec![]));

    // Below every segment: restart empty at the offset.
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), config.clone(), &epochs6);
    log.delete_records_before(13).unwrap();
    assert_eq!(log.segments[0].base_offset, 12);
    assert_eq!(log.truncate_to(7).unwrap(), 7);
    assert_eq!(snapshot(&log), (7, 7, vec![], vec![]));
    assert_eq!(segment_files(dir.path(), "log").len(), 1);
    log.append(simple_batch("a", 1, 0), 5, false, 0).unwrap();
    let after = snapshot(&log);
    assert_eq!(after.3, vec![(5, 7)]);
    drop(log);
    for recover in [false, true] {
        assert_eq!(
            snapshot(&PartitionLog::open(dir.path(), config.clone(), recover).unwrap()),
            after
        );
    }
}

/// Copies every file of `from` into a fresh directory.
fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

#[test]
fn every_intermediate_state_of_a_truncation_reopens_consistently() {
    let one = simple_batch("l0", 3, 0).len() as u64;
    let config = small_config(2 * one, 1);
    let all_epochs = [0, 0, 1, 1, 2, 2, 3, 3];
    let dir = tempfile::tempdir().unwrap();
    let log = leader_log(dir.path(), config.clone(), &all_epochs);
    let original = snapshot(&log);
    drop(log);
    let pristine = copy_dir(dir.path());
    let truncated = {
        let mut log = PartitionLog::open(dir.path(), config.clone(), false).unwrap();
        log.truncate_to(8).unwrap(); // inside batch 6..=8 of segment 6
        snapshot(&log)
    };
    assert_eq!(truncated.1, 6);
    let reopen = |d: &Path, recover: bool| {
        snapshot(&PartitionLog::open(d, config.clone(), recover).unwrap())
    };
    let file = |d: &Path, base: i64, ext: &str| d.join(format!("{base:020}.{ext}"));

    for recover in [false, true] {
        // Crashed after deleting the newest segment only: a prefix of the old log.
        let d = copy_dir(pristine.path());
        for ext in ["log", "index", "timeindex"] {
            std::fs::remove_file(file(d.path(), 18, ext)).unwrap();
        }
        let s = reopen(d.path(), recover);
        assert_eq!(s.1, 18);
        assert_eq!(s.2, original.2[..6].to_vec());
        assert_eq!(
            s.3,
            vec![(0, 0), (1, 6), (2, 12)],
            "the epoch checkpoint is trimmed to the log"
        );

        // Crashed after cutting the log file, before its indexes.
        let d = copy_dir(pristine.path());
        for ext in ["log", "index", "timeindex"] {
            std::fs::remove_file(file(d.path(), 12, ext)).unwrap();
            std::fs::remove_file(file(d.path(), 18, ext)).unwrap();
        }
        let seg6 = std::fs::OpenOptions::new()
            .write(true)
            .open(file(d.path(), 6, "log"))
            .unwrap();
        seg6.set_len(0).unwrap();
        assert!(
            std::fs::metadata(file(d.path(), 6, "index")).unwrap().len() > 0,
            "stale index entry"
        );
        assert_eq!(reopen(d.path(), recover), truncated);

        // Crashed before the epoch checkpoint was trimmed.
        let d = copy_dir(dir.path());
        std::fs::copy(
            pristine.path().join("leader-epoch-checkpoint"),
            d.path().join("leader-epoch-checkpoint"),
        )
        .unwrap();
        assert_eq!(reopen(d.path(), recover), truncated);

        // Epoch checkpoint lost altogether.
        let d = copy_dir(dir.path());
        std::fs::remove_file(d.path().join("leader-epoch-checkpoint")).unwrap();
        assert_eq!(reopen(d.path(), recover), truncated);

        // A full truncation (to 5, below every segment) that crashed right
        // after creating its empty segment.
        let d2 = tempfile::tempdir().unwrap();
        let mut l = leader_log(d2.path(), config.clone(), &all_epochs);
        l.delete_records_before(13).unwrap();
        let before_full = snapshot(&l);
        drop(l);
        std::fs::write(file(d2.path(), 5, "log"), b"").unwrap();
        assert_eq!(reopen(d2.path(), recover), before_full);
    }
}

#[test]
fn a_stale_log_start_checkpoint_after_a_truncation_reopens_as_an_empty_log() {
    let one = simple_batch("l0", 3, 0).len() as u64;
    let config = small_config(2 * one, 1);
    let dir = tempfile::tempdir().unwrap();
    let mut log = leader_log(dir.path(), config.clone(), &[0, 0, 1, 1]);
    log.delete_records_before(4).unwrap();
    let stale = std::fs::read(dir.path().join("log-start-offset")).unwrap();
    assert_eq!(log.truncate_to(4).unwrap(), 3);
    drop(log);
    // Crash between cutting the data and lowering the log start.
    std::fs::write(dir.path().join("log-start-offset"), stale).unwrap();
    let mut log = PartitionLog::open(dir.path(), config, true).unwrap();
    assert_eq!(snapshot(&log), (4, 4, vec![], vec![]));
    assert_eq!(
        log.append(simple_batch("a", 1, 0), 2, false, 0)
            .unwrap()
            .base_offset,
        4
    );
}
