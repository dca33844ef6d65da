//! DescribeCluster (Kafka's AdminClient.describeCluster, `kafka-cluster.sh
//! cluster-id`): the cluster id, the controller (the metadata quorum's
//! leader, itself a broker) and the brokers. Fenced brokers are listed only
//! when asked for (v2), marked; the controllers endpoint type is refused as
//! Kafka's brokers refuse it (no separate controller listeners here).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::BrokerId;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};

use super::str_bytes;
use crate::broker::Broker;

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
