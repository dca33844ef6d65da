//! The APIs and versions this broker advertises in ApiVersions and accepts.
//! Only what is implemented, as contiguous ranges that include Kafka 4's
//! floors (see ../shared/reference/kafka-broker.md).

use kafka_protocol::messages::ApiKey;

/// (API, metric label, min version, max version).
pub const SUPPORTED: &[(ApiKey, &str, i16, i16)] = &[
    (ApiKey::Produce, "produce", 3, 12),
    (ApiKey::Fetch, "fetch", 4, 16),
    (ApiKey::ListOffsets, "list_offsets", 1, 8),
    (ApiKey::Metadata, "metadata", 0, 12),
    (
        ApiKey::OffsetForLeaderEpoch,
        "offset_for_leader_epoch",
        2,
        4,
    ),
    (ApiKey::ApiVersions, "api_versions", 0, 4),
    (ApiKey::CreateTopics, "create_topics", 2, 7),
    (ApiKey::DeleteTopics, "delete_topics", 1, 6),
    (ApiKey::DescribeConfigs, "describe_configs", 1, 4),
    (ApiKey::CreatePartitions, "create_partitions", 0, 3),
    (ApiKey::AlterConfigs, "alter_configs", 0, 2),
    (
        ApiKey::IncrementalAlterConfigs,
        "incremental_alter_configs",
        0,
        1,
    ),
    // Groups: librdkafka needs the v0 floors to enable consumer groups.
    (ApiKey::FindCoordinator, "find_coordinator", 0, 4),
    (ApiKey::JoinGroup, "join_group", 0, 9),
    (ApiKey::SyncGroup, "sync_group", 0, 5),
    (ApiKey::Heartbeat, "heartbeat", 0, 4),
    (ApiKey::LeaveGroup, "leave_group", 0, 5),
    (ApiKey::OffsetCommit, "offset_commit", 2, 8),
    (ApiKey::OffsetFetch, "offset_fetch", 1, 8),
    (ApiKey::DescribeGroups, "describe_groups", 0, 5),
    (ApiKey::ListGroups, "list_groups", 0, 5),
    (ApiKey::DeleteGroups, "delete_groups", 0, 2),
    (ApiKey::OffsetDelete, "offset_delete", 0, 0),
    (ApiKey::InitProducerId, "init_producer_id", 0, 5),
    (ApiKey::DeleteRecords, "delete_records", 0, 2),
    (ApiKey::DescribeCluster, "describe_cluster", 0, 2),
    (ApiKey::ElectLeaders, "elect_leaders", 0, 2),
];

/// The supported range and metric label of `key`, if it is supported at all.
pub fn lookup(key: ApiKey) -> Option<(&'static str, i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, ..)| *k == key)
        .map(|&(_, name, min, max)| (name, min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    /// Every advertised range lies within what the codec crate can decode.
    #[test]
    fn advertised_ranges_are_decodable() {
        for &(key, name, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            assert!(
                min <= max && codec.min <= min && max <= codec.max,
                "{name}: {min}..={max} vs {codec}"
            );
        }
        assert_eq!(ProduceRequest::VERSIONS.min, 3);
    }
}
