//! The 61-byte v2 record batch header: parsing, validation and patching.
//!
//! This file owns the byte layout of a Kafka v2 record batch header and the
//! checks the broker applies to batches it did not write itself (CRC32C,
//! magic, lengths). It never looks at the records inside a batch: decoding
//! records (and decompressing them) is left to the few callers that need
//! record precision (`offset_for_timestamp`), which use `kafka_protocol`.
//!
//! Layout (all big-endian):
//!
//! | field                | offset | type |
//! |----------------------|--------|------|
//! | baseOffset           | 0      | i64  |
//! | batchLength          | 8      | i32  |
//! | partitionLeaderEpoch | 12     | i32  |
//! | magic                | 16     | i8   |
//! | crc                  | 17     | u32  |
//! | attributes           | 21     | i16  |
//! | lastOffsetDelta      | 23     | i32  |
//! | baseTimestamp        | 27     | i64  |
//! | maxTimestamp         | 35     | i64  |
//! | producerId           | 43     | i64  |
//! | producerEpoch        | 51     | i16  |
//! | baseSequence         | 53     | i32  |
//! | recordCount          | 57     | i32  |
//!
//! `batchLength` counts the bytes after itself, so a batch occupies
//! `batchLength + 12` bytes. The CRC covers bytes 21..end of the batch,
//! which is why baseOffset and partitionLeaderEpoch can be patched in place
//! without recomputing it.

/// Size of the v2 batch header, up to and including recordCount.
pub const HEADER_SIZE: usize = 61;
/// Bytes before the part counted by batchLength (baseOffset + batchLength).
pub const LOG_OVERHEAD: usize = 12;
/// The only batch format this broker stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Attribute bits 0..=2: compression codec.
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are LogAppendTime.
pub const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;
/// Attribute bit 4: part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 1 << 4;
/// Attribute bit 5: control batch (transaction marker).
pub const ATTR_CONTROL: i16 = 1 << 5;

/// Why a byte range is not a usable v2 batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes remain than the header or the declared length needs.
    #[error("batch at byte {at} is truncated: needs {needed} bytes, {available} available")]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
    /// batchLength smaller than a header or negative.
    #[error("batch at byte {at} has invalid batchLength {length}")]
    BadLength { at: usize, length: i32 },
    /// Not a v2 batch.
    #[error("batch at byte {at} has magic {magic}, only v2 is supported")]
    BadMagic { at: usize, magic: i8 },
    /// Stored CRC32C does not match the bytes.
    #[error("batch at byte {at} fails CRC32C: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        at: usize,
        stored: u32,
        computed: u32,
    },
    /// lastOffsetDelta / recordCount are inconsistent (Kafka rejects these too).
    #[error(
        "batch at byte {at} has recordCount {record_count} and lastOffsetDelta {last_offset_delta}"
    )]
    BadOffsets {
        at: usize,
        record_count: i32,
        last_offset_delta: i32,
    },
}

/// The fixed-size header of one v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` and checks what can be checked
    /// without the rest of the batch: enough bytes for a header, magic 2 and
    /// batchLength at least a header. It does not check that the whole batch
    /// is in `buf` nor the CRC (see [`validate_batch`]).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        Self::parse_at(buf, 0)
    }

    /// Like [`BatchHeader::parse`]; `at` only labels errors with a position.
    pub fn parse_at(buf: &[u8], at: usize) -> Result<Self, BatchError> {
        let Some(h) = buf.get(..HEADER_SIZE) else {
            return Err(BatchError::Truncated {
                at,
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        };
        let header = BatchHeader {
            base_offset: i64_at(h, BASE_OFFSET_AT),
            batch_length: i32_at(h, BATCH_LENGTH_AT),
            partition_leader_epoch: i32_at(h, PARTITION_LEADER_EPOCH_AT),
            magic: h[MAGIC_AT] as i8,
            crc: u32::from_be_bytes(arr(h, CRC_AT)),
            attributes: i16::from_be_bytes(arr(h, ATTRIBUTES_AT)),
            last_offset_delta: i32_at(h, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(h, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(h, MAX_TIMESTAMP_AT),
            producer_id: i64_at(h, PRODUCER_ID_AT),
            producer_epoch: i16::from_be_bytes(arr(h, PRODUCER_EPOCH_AT)),
            base_sequence: i32_at(h, BASE_SEQUENCE_AT),
            record_count: i32_at(h, RECORD_COUNT_AT),
        };
        if header.magic != MAGIC_V2 {
            return Err(BatchError::BadMagic {
                at,
                magic: header.magic,
            });
        }
        if header.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength {
                at,
                length: header.batch_length,
            });
        }
        Ok(header)
    }

    /// Bytes the whole batch occupies (header + records).
    pub fn total_size(&self) -> usize {
        // batch_length >= 49 after parse, so the cast is lossless.
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (baseOffset + lastOffsetDelta).
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Validates the single batch that starts at `buf[0]`: header checks,
/// the whole batch present, CRC32C over bytes 21..end, then
/// recordCount = lastOffsetDelta + 1 ≥ 1. Returns the header; the batch is
/// `buf[..header.total_size()]`.
pub fn validate_batch(buf: &[u8], at: usize) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse_at(buf, at)?;
    let size = header.total_size();
    let Some(batch) = buf.get(..size) else {
        return Err(BatchError::Truncated {
            at,
            needed: size,
            available: buf.len(),
        });
    };
    // The CRC first, as Kafka: a damaged header is CORRUPT_MESSAGE, not a lie.
    check_crc(batch, &header, at)?;
    if header.record_count < 1
        || header.last_offset_delta < 0
        || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::BadOffsets {
            at,
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Checks the stored CRC32C of a complete batch against its bytes 21..end.
pub fn check_crc(batch: &[u8], header: &BatchHeader, at: usize) -> Result<(), BatchError> {
    let computed = crc32c::crc32c(batch.get(ATTRIBUTES_AT..).unwrap_or_default());
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            at,
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// Iterates over the batches laid back to back in `buf`, yielding each
/// batch's position in `buf` and its header. Checks structure only (header,
/// magic, the whole batch present), not the CRC; stops after the first error.
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`batches`].
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(usize, BatchHeader), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let at = self.pos;
        let rest = self.buf.get(at..).unwrap_or_default();
        let result = BatchHeader::parse_at(rest, at).and_then(|h| {
            if h.total_size() > rest.len() {
                Err(BatchError::Truncated {
                    at,
                    needed: h.total_size(),
                    available: rest.len(),
                })
            } else {
                Ok(h)
            }
        });
        match result {
            Ok(h) => {
                self.pos += h.total_size();
                Some(Ok((at, h)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes baseOffset into the batch header at the start of `batch`.
/// No-op on a buffer shorter than a header.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    put(batch, BASE_OFFSET_AT, &base_offset.to_be_bytes());
}

/// Writes partitionLeaderEpoch into the batch header at the start of `batch`.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    put(batch, PARTITION_LEADER_EPOCH_AT, &epoch.to_be_bytes());
}

/// Stamps LogAppendTime on a complete batch: maxTimestamp = `now_ms`, the
/// timestamp-type attribute bit set, CRC recomputed (both fields are covered
/// by it). `batch` must be exactly one whole batch.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    if batch.len() < HEADER_SIZE {
        return;
    }
    let attributes = i16::from_be_bytes(arr(batch, ATTRIBUTES_AT)) | ATTR_LOG_APPEND_TIME;
    put(batch, ATTRIBUTES_AT, &attributes.to_be_bytes());
    put(batch, MAX_TIMESTAMP_AT, &now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    put(batch, CRC_AT, &crc.to_be_bytes());
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// Copies N bytes at `at`; callers only pass offsets inside a 61-byte header
/// they have already length-checked, the zero fallback is unreachable.
fn arr<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = buf.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(arr(buf, at))
}

fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(arr(buf, at))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A hand-built batch with `n` fake record bytes and a correct CRC.
    fn raw_batch(base: i64, records: i32, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_SIZE + payload];
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[35..43].copy_from_slice(&77i64.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        for (i, x) in b[HEADER_SIZE..].iter_mut().enumerate() {
            *x = i as u8;
        }
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn parses_and_validates_a_batch() {
        let b = raw_batch(5, 3, 10);
        let h = validate_batch(&b, 0).unwrap();
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.last_offset(), 7);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.max_timestamp, 77);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.record_count, 3);
    }

    #[test]
    fn rejects_bad_crc_magic_length_and_truncation() {
        let mut b = raw_batch(0, 1, 4);
        b[HEADER_SIZE] ^= 1;
        assert!(matches!(
            validate_batch(&b, 0),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut b = raw_batch(0, 1, 4);
        b[16] = 1;
        assert!(matches!(
            validate_batch(&b, 0),
            Err(BatchError::BadMagic { .. })
        ));
        let mut b = raw_batch(0, 1, 4);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            validate_batch(&b, 0),
            Err(BatchError::BadLength { .. })
        ));
        let b = raw_batch(0, 1, 4);
        assert!(matches!(
            validate_batch(&b[..b.len() - 1], 0),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            validate_batch(&b[..10], 0),
            Err(BatchError::Truncated { .. })
        ));
        let b = raw_batch(0, 0, 4);
        assert!(matches!(
            validate_batch(&b, 0),
            Err(BatchError::BadOffsets { .. })
        ));
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut b = raw_batch(0, 2, 8);
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 9);
        let h = validate_batch(&b, 0).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1234, 9));
        set_log_append_time(&mut b, 5555);
        let h = validate_batch(&b, 0).unwrap();
        assert_eq!(h.max_timestamp, 5555);
        assert!(h.is_log_append_time());
    }

    #[test]
    fn iterates_back_to_back_batches_and_stops_at_garbage() {
        let mut buf = raw_batch(0, 1, 3);
        buf.extend(raw_batch(1, 2, 7));
        buf.extend([1, 2, 3]);
        let items: Vec<_> = batches(&buf).collect();
        assert_eq!(items.len(), 3);
        assert_eq!(items[1].as_ref().unwrap().0, HEADER_SIZE + 3);
        assert!(items[2].is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            for (at, _) in batches(&bytes).flatten() {
                let _ = validate_batch(&bytes[at..], at);
            }
            let _ = validate_batch(&bytes, 0);
        }
    }
}
