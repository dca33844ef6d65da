//! Cluster-wide admin APIs of Kafka's tools:
//! - DescribeCluster (AdminClient.describeCluster, `kafka-cluster.sh
//!   cluster-id`): the cluster id, the controller (the metadata quorum's
//!   leader, itself a broker) and the brokers. Fenced brokers are listed only
//!   when asked for (v2), marked; the controllers endpoint type is refused as
//!   Kafka's brokers refuse it (no separate controller listeners here);
//! - ElectLeaders (`kafka-leader-election`, AdminClient.electLeaders):
//!   preferred or unclean elections planned by
//!   `metadata::controller::plan_elect_leaders` and committed to the quorum
//!   from whichever broker is asked.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::elect_leaders_request::ElectLeadersRequest;
use kafka_protocol::messages::elect_leaders_response::{
    ElectLeadersResponse, PartitionResult, ReplicaElectionResult,
};
use kafka_protocol::messages::{BrokerId, TopicName};

use super::str_bytes;
use crate::broker::Broker;
use crate::metadata::controller::{ElectLeaderError, plan_elect_leaders};

/// Endpoint types (v1+).
const BROKERS: i8 = 1;
/// Authorized operations were not asked for (or there is no authorizer).
const OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn describe_cluster(
    broker: &Broker,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default()
        .with_endpoint_type(if version >= 1 {
            request.endpoint_type
        } else {
            BROKERS
        })
        .with_cluster_authorized_operations(OPERATIONS_OMITTED);
    if version >= 1 && request.endpoint_type != BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(format!(
                "endpoint type {} is not served: tideway brokers are also the controllers; ask for brokers (1)",
                request.endpoint_type
            ))));
    }
    let image = broker.image();
    let mut brokers: Vec<DescribeClusterBroker> = image
        .brokers
        .values()
        .filter(|b| request.include_fenced_brokers || !image.fenced.contains(&b.id))
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.clone().map(str_bytes))
                .with_is_fenced(image.fenced.contains(&b.id))
        })
        .collect();
    if image.brokers.is_empty() {
        // A single broker before it has registered: itself.
        let (host, port) = broker.advertised();
        brokers.push(
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.node_id()))
                .with_host(str_bytes(host))
                .with_port(i32::from(port)),
        );
    }
    let controller = broker.store().quorum().leader.unwrap_or(-1);
    response
        .with_cluster_id(str_bytes(image.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
}

/// Election types (v1+; v0 is always preferred).
const UNCLEAN: i8 = 1;

/// Runs the elections asked for; with no partitions named (null), every
/// partition, answering only for those where an election was needed.
pub async fn elect_leaders(
    broker: &Broker,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let image = broker.image();
    let named = request.topic_partitions.is_some();
    let keys: Vec<(String, i32)> = match &request.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.as_str().to_string(), *p))
            })
            .collect(),
        None => image
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(|p| (t.name.clone(), p)))
            .collect(),
    };
    let unclean = version >= 1 && request.election_type == UNCLEAN;
    let (records, planned) = plan_elect_leaders(&image, &image.alive_brokers(), &keys, unclean);
    let committed = if records.is_empty() {
        Ok(image)
    } else {
        tracing::info!(
            partitions = records.len(),
            unclean,
            "leader election asked for"
        );
        broker.store().commit(records).await
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = Default::default();
    for ((topic, p), result) in planned {
        let error = match (&result, &committed) {
            (Err(ElectLeaderError::NotNeeded), _) if !named => continue,
            (Err(e), _) => Some((election_error_code(e), e.to_string())),
            (Ok(_), Err(e)) => Some((ResponseError::RequestTimedOut.code(), e.to_string())),
            // The change is guarded: another change may have come first.
            (Ok(leader), Ok(image))
                if image.topics.get(&topic).map(|t| t.leader(p)) != Some(*leader) =>
            {
                Some((
                    ResponseError::PreferredLeaderNotAvailable.code(),
                    "the partition changed meanwhile; ask again".to_string(),
                ))
            }
            (Ok(_), Ok(_)) => None,
        };
        let entry = PartitionResult::default().with_partition_id(p);
        by_topic.entry(topic).or_default().push(match error {
            None => entry,
            Some((code, message)) => entry
                .with_error_code(code)
                .with_error_message(Some(str_bytes(message))),
        });
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, results)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(str_bytes(topic)))
                    .with_partition_result(results)
            })
            .collect(),
    )
}

fn election_error_code(e: &ElectLeaderError) -> i16 {
    match e {
        ElectLeaderError::UnknownPartition(..) => ResponseError::UnknownTopicOrPartition,
        ElectLeaderError::NotNeeded => ResponseError::ElectionNotNeeded,
        ElectLeaderError::PreferredNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
        ElectLeaderError::NoEligibleLeader => ResponseError::EligibleLeadersNotAvailable,
    }
    .code()
}
