//! Validation on append of the records inside a produced batch, as Kafka's
//! `LogValidator` and `DefaultRecord` do: the header's CRC says only that the
//! bytes arrived as sent, not that they are records. A batch whose records
//! disagree with its header would be stored and handed to every consumer of
//! the partition, so it is refused before anything is written.
//!
//! The walk reads each record's framing and skips its key, value and header
//! bytes without copying them: an uncompressed batch is walked in place, a
//! compressed one through a streaming decoder, so memory stays constant
//! whatever a payload claims to decompress to (at most
//! [`RecordLimits::max_uncompressed_bytes`] are decompressed).
//!
//! Per batch (Kafka's rules, stricter where noted):
//! 1. no control bit (clients may not write transaction markers); a
//!    producer id needs a base sequence ≥ 0;
//! 2. a codec Kafka knows (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd);
//! 3. exactly `recordCount` records, then nothing: no trailing bytes, no
//!    early end;
//! 4. each record: its length varint ≥ 0 and equal to the bytes its fields
//!    take; key and value lengths ≥ -1 (Kafka takes any negative as null:
//!    stricter); header count ≥ 0, header key lengths ≥ 0, header value
//!    lengths ≥ -1; header keys UTF-8 (they are strings); `offsetDelta`
//!    equal to the record's index (Kafka rewrites such batches instead:
//!    stricter); `baseTimestamp + timestampDelta` does not overflow and,
//!    with CreateTime, does not exceed the batch's `maxTimestamp` (which
//!    the time index trusts).
//!
//! Lies in the records answer INVALID_RECORD, naming the record; a payload
//! that does not decompress answers CORRUPT_MESSAGE (Kafka answers
//! UNKNOWN_SERVER_ERROR there, which clients cannot act on).

use std::io::{BufRead, BufReader, Read};

use super::LogError;
use super::batch::{BatchHeader, HEADER_SIZE};

/// Bounds on what one batch may make the broker do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLimits {
    /// Most bytes one compressed batch may decompress to.
    pub max_uncompressed_bytes: u64,
}

impl Default for RecordLimits {
    fn default() -> Self {
        Self {
            max_uncompressed_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Checks the records of every batch of a produce payload whose header and
/// CRC are valid; a payload that is not whole, valid batches is left for
/// the log's own checks to refuse (with the same errors as ever). Runs
/// before the partition is locked: decompressing takes time.
pub fn validate_produced(records: &[u8], limits: RecordLimits) -> Result<(), LogError> {
    for item in super::batch::batches(records) {
        let Ok((at, _)) = item else {
            return Ok(());
        };
        let rest = &records[at..];
        let Ok(h) = super::batch::validate_batch(rest, at) else {
            return Ok(());
        };
        validate_batch_records(&h, &rest[..h.total_size()], at, limits)?;
    }
    Ok(())
}

/// Checks the records of one batch whose header and CRC are already valid
/// (`batch` is the whole batch, header included; `at` labels errors).
pub fn validate_batch_records(
    header: &BatchHeader,
    batch: &[u8],
    at: usize,
    limits: RecordLimits,
) -> Result<(), LogError> {
    let invalid = |record: Option<i32>, reason: String| LogError::InvalidRecord {
        batch_at: at,
        record,
        reason,
    };
    if header.is_control() {
        return Err(invalid(
            None,
            "clients may not write control records".into(),
        ));
    }
    if header.producer_id >= 0 && header.base_sequence < 0 {
        return Err(invalid(
            None,
            format!(
                "producer id {} with base sequence {}",
                header.producer_id, header.base_sequence
            ),
        ));
    }
    let records = batch.get(HEADER_SIZE..).unwrap_or_default();
    let corrupt = |e: std::io::Error| {
        LogError::CorruptBatch(format!(
            "batch at byte {at}: compressed records do not decompress: {e}"
        ))
    };
    let expect = Expect::from(header);
    let walked = match header.compression() {
        0 => walk_records(&mut SliceSource::new(records), &expect),
        1 => {
            let mut gzip = flate2::bufread::GzDecoder::new(records);
            let walked = walk_stream(&mut gzip, &expect, limits);
            // Bytes after the gzip stream would fail the codec crate that
            // decodes stored batches later.
            if walked.is_ok() && !gzip.into_inner().is_empty() {
                return Err(LogError::CorruptBatch(format!(
                    "batch at byte {at}: bytes follow the end of the gzip stream"
                )));
            }
            walked
        }
        2 => walk_stream(XerialSnappy::new(records), &expect, limits),
        3 => walk_stream(
            lz4::Decoder::new(records).map_err(corrupt)?,
            &expect,
            limits,
        ),
        4 => walk_stream(
            zstd::stream::read::Decoder::with_buffer(records).map_err(corrupt)?,
            &expect,
            limits,
        ),
        codec => {
            return Err(LogError::CorruptBatch(format!(
                "batch at byte {at} has unknown compression codec {codec}"
            )));
        }
    };
    walked.map_err(|e| match e {
        WalkError::Invalid { record, reason } => invalid(record, reason),
        WalkError::Decompress(e) => corrupt(e),
    })
}

/// What the header promises about the records.
struct Expect {
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    create_time: bool,
}

impl From<&BatchHeader> for Expect {
    fn from(h: &BatchHeader) -> Self {
        Self {
            count: h.record_count,
            base_timestamp: h.base_timestamp,
            max_timestamp: h.max_timestamp,
            create_time: !h.is_log_append_time(),
        }
    }
}

enum WalkError {
    Invalid { record: Option<i32>, reason: String },
    Decompress(std::io::Error),
}

/// Why a read from a [`Source`] stopped.
enum ReadError {
    /// The records ended before the field did.
    End,
    /// More bytes were decompressed than [`RecordLimits`] allows.
    Limit,
    Decompress(std::io::Error),
}

/// Records bytes, read forwards once.
trait Source {
    fn byte(&mut self) -> Result<u8, ReadError>;
    fn skip(&mut self, n: usize) -> Result<(), ReadError>;
    /// Skips `n` bytes; whether they are UTF-8.
    fn skip_utf8(&mut self, n: usize) -> Result<bool, ReadError>;
    /// Bytes read so far.
    fn position(&self) -> u64;
    fn at_end(&mut self) -> Result<bool, ReadError>;
}

/// An uncompressed batch's records, walked in place.
struct SliceSource<'a> {
    buf: &'a [u8],
    total: usize,
}

impl<'a> SliceSource<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            total: buf.len(),
        }
    }
}

impl Source for SliceSource<'_> {
    fn byte(&mut self) -> Result<u8, ReadError> {
        let (&b, rest) = self.buf.split_first().ok_or(ReadError::End)?;
        self.buf = rest;
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> Result<(), ReadError> {
        self.buf = self.buf.get(n..).ok_or(ReadError::End)?;
        Ok(())
    }
    fn skip_utf8(&mut self, n: usize) -> Result<bool, ReadError> {
        let bytes = self.buf.get(..n).ok_or(ReadError::End)?;
        self.buf = &self.buf[n..];
        Ok(std::str::from_utf8(bytes).is_ok())
    }
    fn position(&self) -> u64 {
        (self.total - self.buf.len()) as u64
    }
    fn at_end(&mut self) -> Result<bool, ReadError> {
        Ok(self.buf.is_empty())
    }
}

struct StreamSource<R> {
    reader: R,
    read: u64,
    limit: u64,
}

impl<R: BufRead> StreamSource<R> {
    fn fill(&mut self) -> Result<&[u8], ReadError> {
        let buf = self.reader.fill_buf().map_err(ReadError::Decompress)?;
        if buf.is_empty() {
            return Err(ReadError::End);
        }
        Ok(buf)
    }
}

impl<R: BufRead> Source for StreamSource<R> {
    fn byte(&mut self) -> Result<u8, ReadError> {
        if self.read >= self.limit {
            return Err(ReadError::Limit);
        }
        let b = self.fill()?[0];
        self.reader.consume(1);
        self.read += 1;
        Ok(b)
    }
    fn skip(&mut self, mut n: usize) -> Result<(), ReadError> {
        if self.read.saturating_add(n as u64) > self.limit {
            return Err(ReadError::Limit);
        }
        while n > 0 {
            let step = self.fill()?.len().min(n);
            self.reader.consume(step);
            self.read += step as u64;
            n -= step;
        }
        Ok(())
    }
    fn skip_utf8(&mut self, mut n: usize) -> Result<bool, ReadError> {
        if self.read.saturating_add(n as u64) > self.limit {
            return Err(ReadError::Limit);
        }
        // Checked chunk by chunk; a character cut by a chunk boundary
        // carries over (at most 3 bytes).
        let mut carry: Vec<u8> = Vec::new();
        let mut valid = true;
        while n > 0 {
            let chunk = self.fill()?;
            let step = chunk.len().min(n);
            carry.extend_from_slice(&chunk[..step]);
            match std::str::from_utf8(&carry) {
                Ok(_) => carry.clear(),
                Err(e) if e.error_len().is_none() => {
                    carry.drain(..e.valid_up_to());
                }
                Err(_) => {
                    valid = false;
                    carry.clear();
                }
            }
            self.reader.consume(step);
            self.read += step as u64;
            n -= step;
        }
        Ok(valid && carry.is_empty())
    }
    fn position(&self) -> u64 {
        self.read
    }
    fn at_end(&mut self) -> Result<bool, ReadError> {
        match self.fill() {
            Ok(_) => Ok(false),
            Err(ReadError::End) => Ok(true),
            Err(e) => Err(e),
        }
    }
}

fn walk_stream(reader: impl Read, expect: &Expect, limits: RecordLimits) -> Result<(), WalkError> {
    walk_records(
        &mut StreamSource {
            reader: BufReader::with_capacity(16 * 1024, reader),
            read: 0,
            limit: limits.max_uncompressed_bytes,
        },
        expect,
    )
}

/// Steps 3 and 4 of the module doc.
fn walk_records<S: Source>(s: &mut S, expect: &Expect) -> Result<(), WalkError> {
    let fail = |record: i32, e: ReadError, what: &str| match e {
        ReadError::End => WalkError::Invalid {
            record: Some(record),
            reason: format!("record {record}: the records end inside its {what}"),
        },
        ReadError::Limit => WalkError::Invalid {
            record: Some(record),
            reason: "the records decompress to more bytes than the broker accepts".into(),
        },
        ReadError::Decompress(e) => WalkError::Decompress(e),
    };
    let lie = |record: i32, reason: String| WalkError::Invalid {
        record: Some(record),
        reason: format!("record {record}: {reason}"),
    };
    for i in 0..expect.count {
        let length = varint(s).map_err(|e| fail(i, e, "length"))?;
        if length < 0 {
            return Err(lie(i, format!("negative length {length}")));
        }
        let start = s.position();
        let end = start + length as u64;
        // Every read below stays inside the declared length.
        let within = |s: &S, more: u64| s.position().saturating_add(more) <= end;
        let overrun = |i| lie(i, format!("fields run past its declared length {length}"));
        s.byte().map_err(|e| fail(i, e, "attributes"))?;
        let timestamp_delta = varlong(s).map_err(|e| fail(i, e, "timestamp delta"))?;
        let offset_delta = varint(s).map_err(|e| fail(i, e, "offset delta"))?;
        if !within(s, 0) {
            return Err(overrun(i));
        }
        if offset_delta != i {
            return Err(lie(i, format!("offsetDelta {offset_delta}, expected {i}")));
        }
        // The codec crate adds them unchecked when it decodes stored batches.
        {
            match expect.base_timestamp.checked_add(timestamp_delta) {
                Some(t) if !expect.create_time || t <= expect.max_timestamp => {}
                Some(t) => {
                    return Err(lie(
                        i,
                        format!(
                            "timestamp {t} is after the batch's maxTimestamp {}",
                            expect.max_timestamp
                        ),
                    ));
                }
                None => {
                    return Err(lie(
                        i,
                        format!("timestamp delta {timestamp_delta} overflows"),
                    ));
                }
            }
        }
        for what in ["key", "value"] {
            let len = varint(s).map_err(|e| fail(i, e, what))?;
            if len < -1 {
                return Err(lie(i, format!("{what} length {len}")));
            }
            let len = len.max(0) as u64;
            if !within(s, len) {
                return Err(overrun(i));
            }
            s.skip(len as usize).map_err(|e| fail(i, e, what))?;
        }
        let headers = varint(s).map_err(|e| fail(i, e, "header count"))?;
        if headers < 0 {
            return Err(lie(i, format!("header count {headers}")));
        }
        for _ in 0..headers {
            // Each header takes at least two bytes: a lying count ends here.
            if !within(s, 2) {
                return Err(overrun(i));
            }
            for (what, least) in [("header key", 0), ("header value", -1)] {
                let len = varint(s).map_err(|e| fail(i, e, what))?;
                if len < least {
                    return Err(lie(i, format!("{what} length {len}")));
                }
                let len = len.max(0) as u64;
                if !within(s, len) {
                    return Err(overrun(i));
                }
                if least == 0 {
                    // Header keys are strings in Kafka's record format.
                    if !s.skip_utf8(len as usize).map_err(|e| fail(i, e, what))? {
                        return Err(lie(i, "a header key is not UTF-8".into()));
                    }
                } else {
                    s.skip(len as usize).map_err(|e| fail(i, e, what))?;
                }
            }
        }
        if s.position() != end {
            return Err(lie(
                i,
                format!(
                    "declares {length} bytes but its fields take {}",
                    s.position() - start
                ),
            ));
        }
    }
    match s.at_end() {
        Ok(true) => Ok(()),
        Ok(false) => Err(WalkError::Invalid {
            record: None,
            reason: format!(
                "bytes remain after the {} records the header counts",
                expect.count
            ),
        }),
        Err(ReadError::Decompress(e)) => Err(WalkError::Decompress(e)),
        Err(_) => Ok(()),
    }
}

/// A zigzag varint of at most 5 bytes (Kafka's `ByteUtils.readVarint`).
fn varint(s: &mut impl Source) -> Result<i32, ReadError> {
    let raw = unsigned_varint(s, 5)?;
    let raw = u32::try_from(raw).map_err(|_| ReadError::End)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// A zigzag varlong of at most 10 bytes.
fn varlong(s: &mut impl Source) -> Result<i64, ReadError> {
    let raw = unsigned_varint(s, 10)?;
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn unsigned_varint(s: &mut impl Source, max_bytes: u32) -> Result<u64, ReadError> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let b = s.byte()?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    // Too long to be a varint: the bytes are not records.
    Err(ReadError::End)
}

/// Kafka's snappy payloads: the xerial framing (an 8-byte magic, two
/// version words, then blocks of `u32` length + raw snappy) or, from some
/// clients, one raw snappy block. Each block is decompressed when the
/// previous one has been read, after its declared length was checked.
struct XerialSnappy<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    at: usize,
    raw: bool,
}

/// The magic and version words (1, 1) snappy-java writes; the codec crate
/// that decodes stored batches takes anything else for raw snappy.
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

impl<'a> XerialSnappy<'a> {
    fn new(input: &'a [u8]) -> Self {
        match input.strip_prefix(XERIAL_HEADER) {
            Some(rest) => Self {
                input: rest,
                block: Vec::new(),
                at: 0,
                raw: false,
            },
            None => Self {
                input,
                block: Vec::new(),
                at: 0,
                raw: true,
            },
        }
    }

    fn next_block(&mut self) -> std::io::Result<bool> {
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.raw {
            std::mem::take(&mut self.input)
        } else {
            let Some((len, rest)) = self.input.split_first_chunk::<4>() else {
                return Err(bad("truncated snappy block length".into()));
            };
            let len = u32::from_be_bytes(*len) as usize;
            let Some(block) = rest.get(..len) else {
                return Err(bad(format!("snappy block of {len} bytes is truncated")));
            };
            self.input = &rest[len..];
            block
        };
        let size = snap::raw::decompress_len(compressed).map_err(|e| bad(e.to_string()))?;
        // snappy expands at most ~21 times; a larger claim is a lie.
        if size > compressed.len().saturating_mul(32).saturating_add(64) {
            return Err(bad(format!(
                "snappy block claims {size} bytes from {}",
                compressed.len()
            )));
        }
        self.block.resize(size, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(|e| bad(e.to_string()))?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for XerialSnappy<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::make_batch;
    use kafka_protocol::records::Compression;

    fn zigzag(v: i64, out: &mut Vec<u8>) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        while u >= 0x80 {
            out.push((u as u8) | 0x80);
            u >>= 7;
        }
        out.push(u as u8);
    }

    /// One record's bytes: (length, attributes, timestamp delta, offset
    /// delta, key, value, header count) written exactly as given.
    fn record(length: Option<i64>, offset_delta: i64, value: &[u8], headers: i64) -> Vec<u8> {
        let mut body = vec![0u8];
        zigzag(0, &mut body);
        zigzag(offset_delta, &mut body);
        zigzag(-1, &mut body);
        zigzag(value.len() as i64, &mut body);
        body.extend_from_slice(value);
        zigzag(headers, &mut body);
        let mut out = Vec::new();
        zigzag(length.unwrap_or(body.len() as i64), &mut out);
        out.extend(body);
        out
    }

    /// Sets batchLength and the CRC for the bytes as they are now, so that
    /// only what the test changed inside can be wrong.
    fn reseal(b: &mut [u8]) {
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A real uncompressed batch header with `records` as its body and
    /// `count` in recordCount/lastOffsetDelta, CRC recomputed: only the
    /// records lie.
    fn batch_with(records: &[u8], count: i32) -> Vec<u8> {
        let mut b = make_batch(&[(5, b"x".to_vec())], Compression::None)[..HEADER_SIZE].to_vec();
        b.extend_from_slice(records);
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        // timestamps 5, so every record at base + 0 is within maxTimestamp
        reseal(&mut b);
        b
    }

    fn check(batch: &[u8]) -> Result<(), LogError> {
        let h = crate::log::batch::validate_batch(batch, 0).expect("header and CRC are valid");
        validate_batch_records(&h, batch, 0, RecordLimits::default())
    }

    fn reason(r: Result<(), LogError>) -> String {
        match r {
            Err(LogError::InvalidRecord { reason, .. }) => reason,
            other => panic!("expected INVALID_RECORD, got {other:?}"),
        }
    }

    #[test]
    fn real_batches_pass_with_every_codec() {
        let values: Vec<(i64, Vec<u8>)> = (0..50)
            .map(|i| (1000 + i, format!("value-{i}").repeat(20).into_bytes()))
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = make_batch(&values, codec);
            check(&b).unwrap_or_else(|e| panic!("{codec:?}: {e}"));
        }
    }

    #[test]
    fn handmade_records_pass_when_they_tell_the_truth() {
        let mut r = record(None, 0, b"a", 0);
        r.extend(record(None, 1, b"bb", 0));
        check(&batch_with(&r, 2)).unwrap();
    }

    #[test]
    fn lying_records_are_refused_naming_the_record() {
        // A record length longer than its fields.
        let mut r = record(None, 0, b"a", 0);
        r.extend(record(Some(40), 1, b"bb", 0));
        assert!(reason(check(&batch_with(&r, 2))).contains("record 1"));
        // Shorter than its fields.
        let r = record(Some(3), 0, b"abcdef", 0);
        assert!(reason(check(&batch_with(&r, 1))).contains("past its declared length"));
        // Negative length.
        let r = record(Some(-7), 0, b"a", 0);
        assert!(reason(check(&batch_with(&r, 1))).contains("negative length"));
        // More records counted than present.
        let r = record(None, 0, b"a", 0);
        assert!(reason(check(&batch_with(&r, 2))).contains("record 1"));
        // Fewer counted than present: bytes remain.
        let mut r = record(None, 0, b"a", 0);
        r.extend(record(None, 1, b"b", 0));
        assert!(reason(check(&batch_with(&r, 1))).contains("bytes remain"));
        // An offset delta out of order.
        let mut r = record(None, 0, b"a", 0);
        r.extend(record(None, 5, b"b", 0));
        assert!(reason(check(&batch_with(&r, 2))).contains("offsetDelta 5"));
        // A header count of two billion in a record of a few bytes.
        let r = record(None, 0, b"a", i32::MAX as i64);
        assert!(reason(check(&batch_with(&r, 1))).contains("past its declared length"));
        // A negative header count.
        let r = record(None, 0, b"a", -3);
        assert!(reason(check(&batch_with(&r, 1))).contains("header count -3"));
        // A varint that never ends.
        let r = vec![0xff; 12];
        assert!(reason(check(&batch_with(&r, 1))).contains("record 0"));
    }

    #[test]
    fn control_batches_and_sequence_less_producers_are_refused() {
        let mut b = make_batch(&[(5, b"x".to_vec())], Compression::None).to_vec();
        b[22] |= 0x20;
        reseal(&mut b);
        assert!(reason(check(&b)).contains("control"));
        let mut b = make_batch(&[(5, b"x".to_vec())], Compression::None).to_vec();
        b[43..51].copy_from_slice(&7i64.to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        reseal(&mut b);
        assert!(reason(check(&b)).contains("base sequence -1"));
    }

    #[test]
    fn a_compressed_payload_that_does_not_decompress_is_corrupt() {
        let mut b = make_batch(&[(5, b"x".repeat(200))], Compression::Gzip).to_vec();
        let mid = HEADER_SIZE + 12;
        b[mid..mid + 8].copy_from_slice(b"garbage!");
        reseal(&mut b);
        let h = crate::log::batch::validate_batch(&b, 0).unwrap();
        let r = validate_batch_records(&h, &b, 0, RecordLimits::default());
        assert!(matches!(r, Err(LogError::CorruptBatch(_))), "{r:?}");
    }

    #[test]
    fn header_keys_must_be_utf8_and_gzip_must_end_where_the_batch_does() {
        // A record with one header whose key is not UTF-8.
        let mut body = vec![0u8];
        zigzag(0, &mut body);
        zigzag(0, &mut body);
        zigzag(-1, &mut body);
        zigzag(1, &mut body);
        body.push(b'v');
        zigzag(1, &mut body);
        zigzag(2, &mut body);
        body.extend_from_slice(&[0xc3, 0x28]);
        zigzag(-1, &mut body);
        let mut r = Vec::new();
        zigzag(body.len() as i64, &mut r);
        r.extend(body);
        assert!(reason(check(&batch_with(&r, 1))).contains("not UTF-8"));

        let mut b = make_batch(&[(5, b"x".repeat(50))], Compression::Gzip).to_vec();
        b.extend_from_slice(b"trailing");
        reseal(&mut b);
        let h = crate::log::batch::validate_batch(&b, 0).unwrap();
        let r = validate_batch_records(&h, &b, 0, RecordLimits::default());
        assert!(matches!(r, Err(LogError::CorruptBatch(_))), "{r:?}");
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_limit() {
        // One record whose value is 4 MiB of zeros compresses to a few KiB.
        let b = make_batch(&[(5, vec![0u8; 4 << 20])], Compression::Zstd);
        assert!(b.len() < 64 * 1024, "{}", b.len());
        let h = crate::log::batch::validate_batch(&b, 0).unwrap();
        let small = RecordLimits {
            max_uncompressed_bytes: 1 << 20,
        };
        assert!(reason(validate_batch_records(&h, &b, 0, small)).contains("decompress to more"));
        validate_batch_records(&h, &b, 0, RecordLimits::default()).unwrap();
    }

    #[test]
    fn a_snappy_block_claiming_gigabytes_is_refused_before_allocating() {
        let mut payload = XERIAL_HEADER.to_vec();
        // A raw snappy block whose varint length says 4 GiB - 1.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        payload.extend_from_slice(&(block.len() as u32).to_be_bytes());
        payload.extend_from_slice(&block);
        let mut out = Vec::new();
        let e = XerialSnappy::new(&payload)
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(e.to_string().contains("claims"), "{e}");
    }
}
