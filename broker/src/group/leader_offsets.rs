//! Reads the high watermark and log start offset of partitions from their
//! current leaders, for consumer lag. The partitions this broker leads are
//! read from the local replica; the others with Kafka ListOffsets requests
//! to their leaders (the same answer a consumer gets), through
//! [`crate::replication::client::Connection`]. What to do with the offsets
//! is [`super::lag`]'s business.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::list_offsets_response::ListOffsetsResponse;
use kafka_protocol::messages::{ApiKey, BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinSet;

use super::lag::{OffsetsByPartition, PartitionOffsets, TopicPartition};
use crate::broker::Broker;

/// How long one lag question may wait for all the leaders together (each
/// leader is asked concurrently, each within this budget): a scrape or an
/// autoscaler poll must not hang on a broker that is down.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// v4: isolation level (v2+) and the leader epoch in the answer; every
/// broker of this cluster serves 1–8.
const LIST_OFFSETS_VERSION: i16 = 4;
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// READ_UNCOMMITTED: LATEST answers the high watermark.
const READ_UNCOMMITTED: i8 = 0;
/// A consumer's replica id in fetch-like requests.
const CONSUMER: i32 = -1;

/// The offsets of every partition in `partitions` from its leader in the
/// current metadata, each Ok or the reason it could not be read:
///
/// 1. Group the partitions by leader; one without a leader (offline, -1)
///    or whose leader is not registered gets that reason.
/// 2. The partitions led here: the local replica's visible high watermark
///    (what ListOffsets LATEST answers; an error while a new leader's HW
///    trails its epoch start) and log start offset.
/// 3. The others: per leader, concurrently, one connection to its
///    replication address (the address brokers reach each other on; the
///    advertised one may only route from outside), ListOffsets LATEST
///    (READ_UNCOMMITTED: the high watermark) and EARLIEST (the log start),
///    both within `timeout`; a failure marks all that leader's partitions.
pub async fn fetch_leader_offsets(
    broker: &Broker,
    partitions: &BTreeSet<TopicPartition>,
    timeout: Duration,
) -> OffsetsByPartition {
    let me = broker.node_id();
    let image = broker.image();
    let mut out = OffsetsByPartition::new();
    let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
    for tp in partitions {
        let leader = image.topics.get(&tp.0).map_or(-1, |t| t.leader(tp.1));
        if leader < 0 {
            out.insert(tp.clone(), Err("offline: no leader".to_string()));
        } else if leader == me {
            out.insert(tp.clone(), read_local(broker, tp));
        } else {
            by_leader.entry(leader).or_default().push(tp.clone());
        }
    }
    let mut asks = JoinSet::new();
    for (leader, tps) in by_leader {
        let Some(addr) = image.brokers.get(&leader).map(|b| b.replication_address()) else {
            let reason = format!("leader broker {leader} is not registered");
            out.extend(tps.into_iter().map(|tp| (tp, Err(reason.clone()))));
            continue;
        };
        let client_id = format!("tideway-lag-{me}");
        asks.spawn(ask_leader_within(leader, addr, client_id, tps, timeout));
    }
    while let Some(joined) = asks.join_next().await {
        match joined {
            Ok(offsets) => out.extend(offsets),
            // Its partitions stay absent, which the lag counts as unreadable.
            Err(e) => tracing::warn!(error = %e, "a ListOffsets task for consumer lag failed"),
        }
    }
    out
}

/// Step 2: a partition this broker leads, from its own replica.
fn read_local(
    broker: &Broker,
    (topic, index): &TopicPartition,
) -> Result<PartitionOffsets, String> {
    let partition = broker
        .partition(topic, *index)
        .ok_or("led by this broker in the metadata but not hosted here yet")?;
    let hw = partition
        .replica
        .visible_high_watermark()
        .map_err(|code| format!("{code:?}"))?;
    let log = partition.log();
    Ok(PartitionOffsets {
        log_start_offset: log.log_start_offset(),
        high_watermark: hw.min(log.log_end_offset()),
    })
}

/// Step 3 for one leader: every partition's offsets, or all of them the
/// reason the leader did not answer within `timeout`.
async fn ask_leader_within(
    leader: i32,
    addr: String,
    client_id: String,
    partitions: Vec<TopicPartition>,
    timeout: Duration,
) -> OffsetsByPartition {
    let answer = tokio::time::timeout(timeout, ask_leader(&addr, client_id, &partitions, timeout))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    match answer {
        Ok(offsets) => offsets,
        Err(e) => {
            let reason = format!("leader broker {leader} at {addr}: {e}");
            partitions
                .into_iter()
                .map(|tp| (tp, Err(reason.clone())))
                .collect()
        }
    }
}

async fn ask_leader(
    addr: &str,
    client_id: String,
    partitions: &[TopicPartition],
    timeout: Duration,
) -> Result<OffsetsByPartition, String> {
    use crate::replication::client::Connection;
    let mut conn = Connection::connect(addr, client_id, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let ask = async |conn: &mut Connection, timestamp| {
        conn.call::<_, ListOffsetsResponse>(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &build_list_offsets(partitions, timestamp),
            timeout,
        )
        .await
        .map_err(|e| e.to_string())
    };
    let latest = ask(&mut conn, LATEST).await?;
    let earliest = ask(&mut conn, EARLIEST).await?;
    Ok(offsets_from_answers(partitions, &latest, &earliest))
}

/// One ListOffsets request for `timestamp` (LATEST or EARLIEST) of every
/// partition, grouped by topic.
fn build_list_offsets(partitions: &[TopicPartition], timestamp: i64) -> ListOffsetsRequest {
    let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (topic, index) in partitions {
        by_topic.entry(topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(*index)
                .with_timestamp(timestamp),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(CONSUMER))
        .with_isolation_level(READ_UNCOMMITTED)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        )
}

/// Pairs the LATEST and EARLIEST answers per partition. A partition with an
/// error code, a negative offset or no answer at all is unreadable.
fn offsets_from_answers(
    partitions: &[TopicPartition],
    latest: &ListOffsetsResponse,
    earliest: &ListOffsetsResponse,
) -> OffsetsByPartition {
    let offsets = |answer: &ListOffsetsResponse| -> BTreeMap<TopicPartition, Result<i64, String>> {
        answer
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    let value = match p.error_code {
                        0 if p.offset >= 0 => Ok(p.offset),
                        0 => Err(format!("the leader answered offset {}", p.offset)),
                        code => Err(ResponseError::try_from_code(code)
                            .map_or_else(|| format!("error code {code}"), |e| format!("{e:?}"))),
                    };
                    ((t.name.0.to_string(), p.partition_index), value)
                })
            })
            .collect()
    };
    let (latest, earliest) = (offsets(latest), offsets(earliest));
    let missing = || Err("the leader's answer lacks it".to_string());
    partitions
        .iter()
        .map(|tp| {
            let hw = latest.get(tp).cloned().unwrap_or_else(missing);
            let start = earliest.get(tp).cloned().unwrap_or_else(missing);
            let value = hw.and_then(|high_watermark| {
                start.map(|log_start_offset| PartitionOffsets {
                    log_start_offset,
                    high_watermark,
                })
            });
            (tp.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };

    use super::*;

    fn answer(entries: &[(&str, i32, i16, i64)]) -> ListOffsetsResponse {
        let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartitionResponse>> = BTreeMap::new();
        for (topic, index, code, offset) in entries {
            by_topic.entry(topic).or_default().push(
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(*index)
                    .with_error_code(*code)
                    .with_offset(*offset),
            );
        }
        ListOffsetsResponse::default().with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopicResponse::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        )
    }

    #[test]
    fn the_request_asks_as_a_read_uncommitted_consumer_grouped_by_topic() {
        let ps = vec![
            ("a".to_string(), 0),
            ("b".to_string(), 2),
            ("a".to_string(), 1),
        ];
        let r = build_list_offsets(&ps, LATEST);
        assert_eq!((r.replica_id, r.isolation_level), (BrokerId(-1), 0));
        let asked: Vec<(String, Vec<(i32, i64)>)> = r
            .topics
            .iter()
            .map(|t| {
                (
                    t.name.0.to_string(),
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.timestamp))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            asked,
            vec![
                ("a".to_string(), vec![(0, -1), (1, -1)]),
                ("b".to_string(), vec![(2, -1)])
            ]
        );
    }

    /// A leader that accepts the connection but never answers (hung, or
    /// behind a black hole) costs one timeout, not a hung lag question.
    #[tokio::test]
    async fn a_silent_or_absent_leader_marks_its_partitions_within_the_timeout() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = silent.local_addr().expect("addr").to_string();
        let held = tokio::spawn(async move {
            let (conn, _) = silent.accept().await.expect("accept");
            // Keep the connection open, say nothing.
            std::future::pending::<()>().await;
            drop(conn);
        });
        let ps = vec![("a".to_string(), 0), ("a".to_string(), 1)];
        let got = ask_leader_within(
            2,
            addr.clone(),
            "test".into(),
            ps.clone(),
            Duration::from_millis(200),
        )
        .await;
        held.abort();
        assert_eq!(got.len(), 2);
        for (tp, value) in &got {
            let reason = value.as_ref().expect_err("no answer");
            assert!(
                reason.contains("leader broker 2") && reason.contains(&addr),
                "{tp:?}: {reason}"
            );
        }

        // Nobody listening: the connection is refused.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr").to_string();
        drop(closed);
        let got = ask_leader_within(3, addr, "test".into(), ps, Duration::from_millis(200)).await;
        assert!(got.values().all(|v| v.is_err()), "{got:?}");
    }

    #[test]
    fn answers_pair_up_and_every_failure_is_named() {
        let ps: Vec<TopicPartition> = (0..4).map(|p| ("a".to_string(), p)).collect();
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        let latest = answer(&[("a", 0, 0, 10), ("a", 1, not_leader, -1), ("a", 2, 0, 5)]);
        let earliest = answer(&[
            ("a", 0, 0, 3),
            ("a", 1, 0, 0),
            ("a", 2, 0, 0),
            ("a", 3, 0, 0),
        ]);
        let got = offsets_from_answers(&ps, &latest, &earliest);
        assert_eq!(
            got[&("a".to_string(), 0)],
            Ok(PartitionOffsets {
                log_start_offset: 3,
                high_watermark: 10
            })
        );
        assert_eq!(
            got[&("a".to_string(), 1)],
            Err("NotLeaderOrFollower".to_string())
        );
        assert!(got[&("a".to_string(), 2)].is_ok());
        assert_eq!(
            got[&("a".to_string(), 3)],
            Err("the leader's answer lacks it".to_string()),
            "no HW in the LATEST answer"
        );
    }
}
