//! Idempotent producer state of one partition (KIP-98), pure.
//!
//! Per producer id: its current epoch and the sequence ranges and offsets of
//! its last [`CACHED_BATCHES`] batches. Before an append, [`ProducerStates::check`]
//! decides for each batch:
//! 1. producer id < 0: not idempotent, append;
//! 2. epoch older than the producer's: INVALID_PRODUCER_EPOCH;
//! 3. the same sequence range as a cached batch: a retry of a batch already
//!    written: acknowledge with its original offsets, write nothing;
//! 4. a newer epoch must start at sequence 0, an unknown producer too
//!    (else OUT_OF_ORDER_SEQUENCE_NUMBER / UNKNOWN_PRODUCER_ID);
//! 5. otherwise the sequence must follow the last one exactly
//!    (else OUT_OF_ORDER_SEQUENCE_NUMBER).
//!
//! After a successful append [`ProducerStates::record`] remembers the batch.
//! The state is rebuilt by replaying batch headers from the log, and
//! snapshotted to a file so a restart replays only what came after.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use crate::log::batch::BatchHeader;

pub const CACHED_BATCHES: usize = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<CachedBatch>,
    /// Broker time of the last append, for expiry.
    pub last_append_ms: i64,
}

/// What to do with one idempotent batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Append,
    Duplicate { base_offset: i64, last_offset: i64 },
    Reject(ResponseError),
}

fn last_seq(h: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX back to 0.
    ((i64::from(h.base_sequence) + i64::from(h.last_offset_delta)) % (i64::from(i32::MAX) + 1))
        as i32
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Steps 1-5 of the module doc for one batch header.
    pub fn check(&self, h: &BatchHeader) -> Check {
        if h.producer_id < 0 {
            return Check::Append;
        }
        let last = last_seq(h);
        let Some(entry) = self.producers.get(&h.producer_id) else {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::Reject(ResponseError::UnknownProducerId)
            };
        };
        if h.producer_epoch < entry.epoch {
            return Check::Reject(ResponseError::InvalidProducerEpoch);
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Check::Append
            } else {
                Check::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Check::Duplicate {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            };
        }
        match entry.batches.back() {
            Some(prev) if h.base_sequence == next_seq(prev.last_seq) => Check::Append,
            None if h.base_sequence == 0 => Check::Append,
            _ => Check::Reject(ResponseError::OutOfOrderSequenceNumber),
        }
    }

    /// Remembers an appended batch (its header with the assigned base offset).
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                last_append_ms: now_ms,
            });
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(CachedBatch {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > CACHED_BATCHES {
            entry.batches.pop_front();
        }
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
    }

    /// Forgets producers idle since before `cutoff_ms` (producer.id.expiration.ms).
    pub fn expire(&mut self, cutoff_ms: i64) {
        self.producers.retain(|_, e| e.last_append_ms >= cutoff_ms);
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }
}

/// The snapshot file: the state as of `offset` (every batch before it is included).
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    pub offset: i64,
    pub states: ProducerStates,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn a_retried_batch_is_acknowledged_with_its_original_offsets() {
        let mut s = ProducerStates::default();
        let b0 = header(7, 0, 0, 3, 100);
        assert_eq!(s.check(&b0), Check::Append);
        s.record(&b0, 1);
        let b1 = header(7, 0, 3, 2, 103);
        assert_eq!(s.check(&b1), Check::Append);
        s.record(&b1, 1);
        assert_eq!(
            s.check(&header(7, 0, 0, 3, -1)),
            Check::Duplicate {
                base_offset: 100,
                last_offset: 102
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 3, 2, -1)),
            Check::Duplicate {
                base_offset: 103,
                last_offset: 104
            }
        );
    }

    #[test]
    fn gaps_stale_epochs_and_unknown_producers_are_refused() {
        let mut s = ProducerStates::default();
        s.record(&header(7, 1, 0, 3, 0), 1);
        assert_eq!(
            s.check(&header(7, 1, 4, 1, -1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(&header(7, 0, 3, 1, -1)),
            Check::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            s.check(&header(8, 0, 5, 1, -1)),
            Check::Reject(ResponseError::UnknownProducerId)
        );
        assert_eq!(
            s.check(&header(7, 2, 1, 1, -1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            s.check(&header(7, 2, 0, 1, -1)),
            Check::Append,
            "a new epoch starts at 0"
        );
        assert_eq!(
            s.check(&header(-1, -1, -1, 4, -1)),
            Check::Append,
            "not idempotent"
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1, i64::from(i)), 1);
        }
        assert_eq!(
            s.check(&header(1, 0, 2, 1, -1)),
            Check::Duplicate {
                base_offset: 2,
                last_offset: 2
            }
        );
        assert_eq!(
            s.check(&header(1, 0, 1, 1, -1)),
            Check::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
        let mut w = ProducerStates::default();
        w.record(&header(2, 0, i32::MAX - 1, 2, 10), 1);
        assert_eq!(w.check(&header(2, 0, 0, 1, -1)), Check::Append);
    }

    #[test]
    fn idle_producers_expire() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, 0, 1, 0), 100);
        s.record(&header(2, 0, 0, 1, 1), 200);
        s.expire(150);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.check(&header(1, 0, 1, 1, -1)),
            Check::Reject(ResponseError::UnknownProducerId)
        );
    }
}
