//! Every advertised API at every advertised version, against a real broker
//! on a loopback port: the request is encoded by the kafka-protocol crate as
//! a client would, and the response must come back decodable, with the
//! expected error code. This catches a response field set on a version that
//! lacks it (the codec refuses to encode it and the connection closes).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tideway_broker::config::BrokerConfig;
use tideway_broker::server::versions::SUPPORTED;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Client {
    stream: TcpStream,
    correlation: i32,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            correlation: 0,
        }
    }

    async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, key.request_header_version(version))
            .expect("encode header");
        req.encode(&mut body, version)
            .unwrap_or_else(|e| panic!("encode {key:?} v{version}: {e}"));
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await.expect("write");
        let len = tokio::time::timeout(Duration::from_secs(20), self.stream.read_i32())
            .await
            .expect("response in time")
            .unwrap_or_else(|e| {
                panic!("{key:?} v{version}: connection closed instead of a response: {e}")
            });
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).await.expect("read body");
        let mut buf = Bytes::from(buf);
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .expect("response header");
        assert_eq!(rh.correlation_id, self.correlation);
        let resp = Resp::decode(&mut buf, version)
            .unwrap_or_else(|e| panic!("decode {key:?} v{version}: {e}"));
        assert!(!buf.has_remaining(), "{key:?} v{version}: trailing bytes");
        resp
    }
}

fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let &(_, _, min, max) = SUPPORTED
        .iter()
        .find(|(k, ..)| *k == key)
        .expect("advertised");
    min..=max
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn batch(n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 1_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("batch");
    buf.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_at_every_version_answers_decodably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = BrokerConfig::for_tests(dir.path().to_path_buf());
    config.groups.initial_rebalance_delay = Duration::ZERO;
    let running = tideway_broker::start(config).await.expect("start");
    let mut c = Client::connect(running.kafka_addr).await;

    for v in versions(ApiKey::ApiVersions) {
        let r: ApiVersionsResponse = c
            .call(
                ApiKey::ApiVersions,
                v,
                &ApiVersionsRequest::default()
                    .with_client_software_name(s("t"))
                    .with_client_software_version(s("1")),
            )
            .await;
        assert_eq!(r.error_code, 0);
        assert_eq!(r.api_keys.len(), SUPPORTED.len());
    }

    // One topic per CreateTopics version; "t" is the one the rest use.
    for v in versions(ApiKey::CreateTopics) {
        let topic = CreatableTopic::default()
            .with_name(name(&format!("t{v}")))
            .with_num_partitions(2)
            .with_replication_factor(1);
        let r: CreateTopicsResponse = c
            .call(
                ApiKey::CreateTopics,
                v,
                &CreateTopicsRequest::default()
                    .with_topics(vec![topic])
                    .with_timeout_ms(5000),
            )
            .await;
        assert_eq!(r.topics[0].error_code, 0, "CreateTopics v{v}");
    }
    let topic_id;
    {
        let r: MetadataResponse = c
            .call(
                ApiKey::Metadata,
                12,
                &MetadataRequest::default()
                    .with_topics(Some(vec![
                        MetadataRequestTopic::default().with_name(Some(name("t"))),
                    ]))
                    .with_allow_auto_topic_creation(true),
            )
            .await;
        assert_eq!(r.topics[0].error_code, 0, "auto-created");
        topic_id = r.topics[0].topic_id;
    }
    for v in versions(ApiKey::Metadata) {
        let req = MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None });
        let r: MetadataResponse = c.call(ApiKey::Metadata, v, &req).await;
        assert!(
            r.topics
                .iter()
                .any(|t| t.name.as_ref().is_some_and(|n| n.as_str() == "t")),
            "Metadata v{v} lists t"
        );
    }
    for v in versions(ApiKey::Produce) {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name("t"))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(batch(3))),
                    ]),
            ]);
        let r: ProduceResponse = c.call(ApiKey::Produce, v, &req).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code, 0,
            "Produce v{v}"
        );
    }
    for v in versions(ApiKey::Fetch) {
        let t = if v >= 13 {
            FetchTopic::default().with_topic_id(topic_id)
        } else {
            FetchTopic::default().with_topic(name("t"))
        };
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![t.with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(1)
                        .with_partition_max_bytes(1 << 20),
                ])]);
        let r: FetchResponse = c.call(ApiKey::Fetch, v, &req).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "Fetch v{v}");
        assert!(
            p.records.as_ref().is_some_and(|b| !b.is_empty()),
            "Fetch v{v} returns records"
        );
        assert!(p.high_watermark > 0);
    }
    for v in versions(ApiKey::ListOffsets) {
        let parts = vec![
            ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1),
            ListOffsetsPartition::default()
                .with_partition_index(1)
                .with_timestamp(0),
        ];
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(parts),
            ]);
        let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "ListOffsets v{v}");
        assert!(r.topics[0].partitions[0].offset > 0);
    }
    for v in versions(ApiKey::OffsetForLeaderEpoch) {
        use kafka_protocol::messages::offset_for_leader_epoch_request::{
            OffsetForLeaderPartition, OffsetForLeaderTopic,
        };
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(-1)
                            .with_leader_epoch(0),
                    ]),
            ]);
        let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "OffsetForLeaderEpoch v{v}");
        assert_eq!(p.leader_epoch, 0, "the only epoch so far");
        assert!(p.end_offset > 0, "epoch 0 ends at the log end");
    }
    for v in versions(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default()
            .with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t")),
            ])
            .with_include_documentation(v >= 3);
        let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req).await;
        assert!(
            r.results[0]
                .configs
                .iter()
                .any(|e| e.name.as_str() == "retention.ms"),
            "DescribeConfigs v{v}"
        );
    }
    for v in versions(ApiKey::IncrementalAlterConfigs) {
        let cfg = AlterableConfig::default()
            .with_name(s("retention.ms"))
            .with_config_operation(0)
            .with_value(Some(s("86400000")));
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![cfg]),
        ]);
        let r: IncrementalAlterConfigsResponse =
            c.call(ApiKey::IncrementalAlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "IncrementalAlterConfigs v{v}");
    }
    for v in versions(ApiKey::AlterConfigs) {
        use kafka_protocol::messages::alter_configs_request as legacy;
        let req = AlterConfigsRequest::default().with_resources(vec![
            legacy::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configs(vec![
                    legacy::AlterableConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("86400000"))),
                ]),
        ]);
        let r: AlterConfigsResponse = c.call(ApiKey::AlterConfigs, v, &req).await;
        assert_eq!(r.responses[0].error_code, 0, "AlterConfigs v{v}");
    }
    let mut count = 2;
    for v in versions(ApiKey::CreatePartitions) {
        count += 1;
        let req = CreatePartitionsRequest::default().with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(name("t"))
                .with_count(count),
        ]);
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(r.results[0].error_code, 0, "CreatePartitions v{v}");
    }
    for v in versions(ApiKey::InitProducerId) {
        let r: InitProducerIdResponse = c
            .call(
                ApiKey::InitProducerId,
                v,
                &InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
            )
            .await;
        assert_eq!(r.error_code, 0, "InitProducerId v{v}");
        assert!(r.producer_id.0 >= 0);
    }
    for v in versions(ApiKey::DescribeCluster) {
        let r: DescribeClusterResponse = c
            .call(
                ApiKey::DescribeCluster,
                v,
                &DescribeClusterRequest::default().with_endpoint_type(1),
            )
            .await;
        assert_eq!(r.error_code, 0, "DescribeCluster v{v}");
        assert!(
            !r.cluster_id.is_empty() && r.brokers.len() == 1,
            "DescribeCluster v{v}: {r:?}"
        );
        if v >= 1 {
            let r: DescribeClusterResponse = c
                .call(
                    ApiKey::DescribeCluster,
                    v,
                    &DescribeClusterRequest::default().with_endpoint_type(2),
                )
                .await;
            assert_eq!(
                r.error_code, 115,
                "DescribeCluster v{v} controllers: UNSUPPORTED_ENDPOINT_TYPE"
            );
        }
    }
    for v in versions(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_topics(vec![
            kafka_protocol::messages::delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    kafka_protocol::messages::delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(-1),
                ]),
        ]);
        let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, v, &req).await;
        let result = &r.topics[0].partitions[0];
        assert_eq!(result.error_code, 0, "DeleteRecords v{v}");
        assert!(result.low_watermark >= 0, "DeleteRecords v{v}: {result:?}");
    }
    for v in versions(ApiKey::ElectLeaders) {
        let req = ElectLeadersRequest::default().with_topic_partitions(Some(vec![
            kafka_protocol::messages::elect_leaders_request::TopicPartitions::default()
                .with_topic(name("t"))
                .with_partitions(vec![0]),
        ]));
        let r: ElectLeadersResponse = c.call(ApiKey::ElectLeaders, v, &req).await;
        let result = &r.replica_election_results[0].partition_result[0];
        // One broker: it already leads its partition.
        assert_eq!(
            result.error_code, 84,
            "ElectLeaders v{v}: ELECTION_NOT_NEEDED"
        );
    }
    for v in versions(ApiKey::FindCoordinator) {
        let req = if v >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")])
        } else {
            FindCoordinatorRequest::default().with_key(s("g"))
        };
        let r: FindCoordinatorResponse = c.call(ApiKey::FindCoordinator, v, &req).await;
        let error = if v >= 4 {
            r.coordinators[0].error_code
        } else {
            r.error_code
        };
        assert_eq!(error, 0, "FindCoordinator v{v}");
    }

    // A whole group life per JoinGroup version, with the other group APIs at matching versions.
    for jv in versions(ApiKey::JoinGroup) {
        let group = GroupId(s(&format!("g{jv}")));
        let pick = |key: ApiKey| -> i16 { jv.clamp(*versions(key).start(), *versions(key).end()) };
        let join = |member: &str| {
            JoinGroupRequest::default()
                .with_group_id(group.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\x01\0\x01t\0\0\0\0")),
                ])
        };
        let mut r: JoinGroupResponse = c.call(ApiKey::JoinGroup, jv, &join("")).await;
        if jv >= 4 {
            assert_eq!(
                r.error_code,
                kafka_protocol::ResponseError::MemberIdRequired.code(),
                "JoinGroup v{jv} two-step"
            );
            let member = r.member_id.as_str().to_string();
            r = c.call(ApiKey::JoinGroup, jv, &join(&member)).await;
        }
        assert_eq!(r.error_code, 0, "JoinGroup v{jv}");
        assert_eq!(r.leader, r.member_id);
        let (member, generation) = (r.member_id.clone(), r.generation_id);
        let sv = pick(ApiKey::SyncGroup);
        let mut sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(generation)
            .with_member_id(member.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(Bytes::from_static(b"a")),
            ]);
        if sv >= 5 {
            sync = sync
                .with_protocol_type(Some(s("consumer")))
                .with_protocol_name(Some(s("range")));
        }
        let r: SyncGroupResponse = c.call(ApiKey::SyncGroup, sv, &sync).await;
        assert_eq!(
            (r.error_code, r.assignment.as_ref()),
            (0, &b"a"[..]),
            "SyncGroup v{sv}"
        );
        let r: HeartbeatResponse = c
            .call(
                ApiKey::Heartbeat,
                pick(ApiKey::Heartbeat),
                &HeartbeatRequest::default()
                    .with_group_id(group.clone())
                    .with_generation_id(generation)
                    .with_member_id(member.clone()),
            )
            .await;
        assert_eq!(r.error_code, 0, "Heartbeat");
        let cv = pick(ApiKey::OffsetCommit);
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(member.clone())
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(2)
                            .with_committed_metadata(Some(s("meta"))),
                    ]),
            ]);
        let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, cv, &commit).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{cv}"
        );
        let fv = pick(ApiKey::OffsetFetch);
        let fetch = if fv >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(group.clone())
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(group.clone())
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![0]),
                ]))
        };
        let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, fv, &fetch).await;
        let (offset, metadata) = if fv >= 8 {
            let p = &r.groups[0].topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        } else {
            let p = &r.topics[0].partitions[0];
            (p.committed_offset, p.metadata.clone())
        };
        assert_eq!(
            (offset, metadata.as_ref().map(|m| m.as_str())),
            (2, Some("meta")),
            "OffsetFetch v{fv} round-trips metadata"
        );
        let dv = pick(ApiKey::DescribeGroups);
        let r: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                dv,
                &DescribeGroupsRequest::default().with_groups(vec![group.clone()]),
            )
            .await;
        assert_eq!(
            (r.groups[0].group_state.as_str(), r.groups[0].members.len()),
            ("Stable", 1),
            "DescribeGroups v{dv}"
        );
        let lv = pick(ApiKey::ListGroups);
        let r: ListGroupsResponse = c
            .call(ApiKey::ListGroups, lv, &ListGroupsRequest::default())
            .await;
        assert!(
            r.groups.iter().any(|g| g.group_id == group),
            "ListGroups v{lv}"
        );
        let leave_v = pick(ApiKey::LeaveGroup);
        let leave = if leave_v >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    MemberIdentity::default().with_member_id(member.clone()),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
        };
        let r: LeaveGroupResponse = c.call(ApiKey::LeaveGroup, leave_v, &leave).await;
        assert_eq!(r.error_code, 0, "LeaveGroup v{leave_v}");
    }
    for v in versions(ApiKey::OffsetDelete) {
        let req = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s("g0")))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0),
                    ]),
            ]);
        let r: OffsetDeleteResponse = c.call(ApiKey::OffsetDelete, v, &req).await;
        assert_eq!(
            (r.error_code, r.topics[0].partitions[0].error_code),
            (0, 0),
            "OffsetDelete v{v}"
        );
    }
    for v in versions(ApiKey::DeleteGroups) {
        let r: DeleteGroupsResponse = c
            .call(
                ApiKey::DeleteGroups,
                v,
                &DeleteGroupsRequest::default()
                    .with_groups_names(vec![GroupId(s(&format!("g{v}")))]),
            )
            .await;
        assert_eq!(r.results[0].error_code, 0, "DeleteGroups v{v}");
    }
    for v in versions(ApiKey::DeleteTopics) {
        let target = format!("t{}", (v + 1).min(7));
        let req = if v >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&target))),
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&target)])
        };
        let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req).await;
        assert!(
            r.responses[0].error_code == 0 || v == 6,
            "DeleteTopics v{v}: {}",
            r.responses[0].error_code
        );
    }
    running.stop().await;
}

/// Issue 13: a topic created through this broker is led by it as soon as
/// the creation returns, before the replication driver's task runs. On a
/// current-thread runtime no other task can run between the two lines.
#[tokio::test(flavor = "current_thread")]
async fn a_created_topic_is_led_when_creation_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BrokerConfig::for_tests(dir.path().to_path_buf());
    let running = tideway_broker::start(config).await.expect("start");
    let broker = running.ctx.broker.clone();
    broker
        .create_topic("led-at-once", 3, 1, Default::default(), Default::default())
        .await
        .expect("create");
    for index in 0..3 {
        let p = broker.partition("led-at-once", index).expect("hosted");
        assert!(
            p.replica.leader_epoch(false).is_ok(),
            "partition {index} is not led yet"
        );
    }
    running.stop().await;
}
