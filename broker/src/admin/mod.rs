//! The admin gRPC service (tonic) on `--admin-listen`: cluster and partition
//! state, restart risk, drain, topic lifecycle and consumer lag for the
//! operator and tools. Errors are gRPC statuses naming the object (mapped
//! in [`status`]). The proto is `broker/proto/admin.proto`.
//!
//! Leaders, epochs and ISRs come from the metadata every broker holds;
//! offsets and the high watermark from the answering broker's own replica
//! (DescribePartitions), except consumer lag, which reads them from each
//! partition's leader.

pub mod policies;
pub mod risk;

use std::collections::BTreeMap;
use std::sync::Arc;

use tideway_admin_api::v1::*;
use tideway_admin_api::{Admin, AdminServer};
use tonic::{Request, Response, Status};

use crate::broker::{Broker, TopicError};
use crate::metadata::TopicMeta;
use crate::runtime::Context;

pub struct AdminService {
    /// Set once the broker is ready; until then every call is UNAVAILABLE.
    ctx: Arc<std::sync::OnceLock<Arc<Context>>>,
}

pub fn server(ctx: Arc<std::sync::OnceLock<Arc<Context>>>) -> AdminServer<AdminService> {
    AdminServer::new(AdminService { ctx })
}

impl AdminService {
    fn ctx(&self) -> Result<&Arc<Context>, Status> {
        self.ctx
            .get()
            .ok_or_else(|| Status::unavailable("the broker is starting"))
    }
}

/// gRPC status for a topic operation that failed.
fn status(e: TopicError) -> Status {
    let message = e.to_string();
    match e {
        TopicError::Unknown(_) => Status::not_found(message),
        TopicError::AlreadyExists(_) => Status::already_exists(message),
        TopicError::InvalidName(_)
        | TopicError::InvalidPartitions(_)
        | TopicError::InvalidConfig(_)
        | TopicError::InvalidReplicaAssignment(_) => Status::invalid_argument(message),
        TopicError::InvalidReplicationFactor(_) => Status::failed_precondition(message),
        TopicError::PolicyViolation(_) => policies::violation(message),
        TopicError::Commit(_) | TopicError::CreateLog { .. } => Status::internal(message),
    }
}

fn check_broker(broker: &Broker, id: i32) -> Result<(), Status> {
    if broker.image().brokers.contains_key(&id) || id == broker.node_id() {
        Ok(())
    } else {
        Err(Status::not_found(format!(
            "broker {id} is not in the cluster"
        )))
    }
}

/// The state of every partition of `topic`. Offsets are known for the
/// partitions hosted by the answering broker; elsewhere they are -1.
fn partition_states(broker: &Broker, topic: &TopicMeta) -> Vec<PartitionState> {
    partition_states_of(broker, topic, None)
}

/// [`partition_states`], only of the partitions with a replica on
/// `replica_on` when given (the rest are not even looked at).
fn partition_states_of(
    broker: &Broker,
    topic: &TopicMeta,
    replica_on: Option<i32>,
) -> Vec<PartitionState> {
    let min_isr = broker.topic_configs(topic).min_insync_replicas();
    (0..topic.partitions)
        .filter(|&index| replica_on.is_none_or(|b| topic.replicas(index).contains(&b)))
        .map(|index| {
            let replicas = topic.replicas(index).to_vec();
            let state = topic.state(index);
            let leader = state.leader;
            let (start, end, hw) = match broker.partition(&topic.name, index) {
                Some(p) => {
                    let hw = p.replica.high_watermark();
                    let log = p.log();
                    (log.log_start_offset(), log.log_end_offset(), hw)
                }
                None => (-1, -1, -1),
            };
            let isr = state.isr.clone();
            PartitionState {
                topic: topic.name.clone(),
                partition: index,
                leader,
                leader_epoch: state.leader_epoch,
                under_replicated: isr.len() < replicas.len(),
                under_min_isr: (isr.len() as i32) < min_isr,
                offline: leader < 0,
                replicas,
                isr,
                high_watermark: hw,
                log_end_offset: end,
                log_start_offset: start,
                min_insync_replicas: min_isr,
            }
        })
        .collect()
}

fn describe_topic(broker: &Broker, topic: &TopicMeta) -> TopicDescription {
    let states = partition_states(broker, topic);
    let image = broker.image();
    let policy = broker.policy_requirement(&image, topic);
    let req = policy.as_ref().and_then(|(_, r)| r.as_ref().ok());
    TopicDescription {
        name: topic.name.clone(),
        topic_id: topic.topic_id.to_string(),
        partitions: topic.partitions,
        replication_factor: topic.replicas(0).len() as i32,
        min_insync_replicas: broker.topic_configs(topic).min_insync_replicas(),
        configs: topic.configs.clone().into_iter().collect(),
        under_replicated_partitions: states.iter().filter(|s| s.under_replicated).count() as i32,
        under_min_isr_partitions: states.iter().filter(|s| s.under_min_isr).count() as i32,
        // Partitions whose replicas are all in sync: 100 when no reassignment runs.
        reassignment_percent: (100 * states.iter().filter(|s| !s.under_replicated).count()
            / states.len().max(1)) as i32,
        mirror_policy: policy
            .as_ref()
            .map(|(p, _)| p.name.clone())
            .unwrap_or_default(),
        policy_replication_factor: req.as_ref().map_or(0, |r| r.count as i32),
        policy_min_insync_replicas: req.and_then(|r| r.min_isr).unwrap_or(0),
    }
}

fn topic_or_not_found(broker: &Broker, name: &str) -> Result<TopicMeta, Status> {
    broker
        .image()
        .topics
        .get(name)
        .cloned()
        .ok_or_else(|| Status::not_found(format!("topic '{name}' does not exist")))
}

fn positive(field: &str, value: i32) -> Result<(), Status> {
    if value < 0 {
        Err(Status::invalid_argument(format!(
            "{field} must not be negative, got {value}"
        )))
    } else {
        Ok(())
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn describe_cluster(
        &self,
        _: Request<DescribeClusterRequest>,
    ) -> Result<Response<DescribeClusterResponse>, Status> {
        let b = &self.ctx()?.broker;
        let image = b.image();
        let quorum = b.store().quorum();
        let brokers = image
            .brokers
            .values()
            .map(|m| tideway_admin_api::v1::Broker {
                id: m.id,
                host: m.host.clone(),
                port: i32::from(m.port),
                rack: m.rack.clone().unwrap_or_default(),
                alive: !image.fenced.contains(&m.id),
                draining: image.draining.contains(&m.id),
                leaving: image.leaving.contains(&m.id),
            })
            .collect();
        Ok(Response::new(DescribeClusterResponse {
            cluster_id: image.cluster_id.clone(),
            controller_id: quorum.leader.unwrap_or(-1),
            brokers,
            quorum: Some(QuorumHealth {
                voters: quorum.voters,
                reachable_voters: quorum.reachable,
                has_leader: quorum.leader.is_some(),
                committed_index: quorum.committed_index,
            }),
            cluster_configs: image.cluster_configs.clone().into_iter().collect(),
        }))
    }

    async fn evacuate_brokers(
        &self,
        r: Request<EvacuateBrokersRequest>,
    ) -> Result<Response<EvacuateBrokersResponse>, Status> {
        let brokers: std::collections::BTreeSet<i32> = r.into_inner().brokers.into_iter().collect();
        let b = &self.ctx()?.broker;
        for id in &brokers {
            check_broker(b, *id)?;
        }
        let remaining = b.evacuate_brokers(&brokers).await.map_err(|e| match e {
            crate::broker::EvacuateError::Impossible(e) => {
                Status::failed_precondition(e.to_string())
            }
            crate::broker::EvacuateError::Commit(e) => Status::unavailable(e.to_string()),
        })?;
        let moving = b
            .image()
            .topics
            .values()
            .map(|t| t.targets.len())
            .sum::<usize>();
        Ok(Response::new(EvacuateBrokersResponse {
            replicas_remaining: remaining as i32,
            partitions_moving: moving as i32,
        }))
    }

    async fn set_log_filter(
        &self,
        r: Request<SetLogFilterRequest>,
    ) -> Result<Response<SetLogFilterResponse>, Status> {
        use crate::logging::SetLogFilterError;
        let filter = r.into_inner().filter;
        let changed = crate::logging::set(&filter).map_err(|e| match e {
            SetLogFilterError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            SetLogFilterError::NotReloadable | SetLogFilterError::Reload(_) => {
                Status::failed_precondition(e.to_string())
            }
        })?;
        Ok(Response::new(SetLogFilterResponse {
            changed,
            filter: crate::logging::current(),
        }))
    }

    /// Validates every entry (INVALID_ARGUMENT naming it), then commits the
    /// complete new set; an unchanged set commits nothing.
    async fn alter_cluster_configs(
        &self,
        r: Request<AlterClusterConfigsRequest>,
    ) -> Result<Response<AlterClusterConfigsResponse>, Status> {
        let r = r.into_inner();
        let b = &self.ctx()?.broker;
        for (name, value) in &r.set_configs {
            crate::metadata::cluster_config::validate_cluster_config(name, value)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        }
        for name in &r.delete_configs {
            if crate::metadata::cluster_config::overridden_flag(name).is_none() {
                return Err(Status::invalid_argument(
                    crate::metadata::ClusterConfigError::Unknown(name.clone()).to_string(),
                ));
            }
        }
        let current = b.image().cluster_configs.clone();
        let mut configs = current.clone();
        for name in &r.delete_configs {
            configs.remove(name);
        }
        configs.extend(r.set_configs.clone());
        if configs != current {
            tracing::info!(?configs, "cluster configs changed");
            b.commit(vec![
                crate::metadata::MetadataRecord::ClusterConfigsReplaced {
                    configs: configs.clone(),
                },
            ])
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(Response::new(AlterClusterConfigsResponse {
            configs: configs.into_iter().collect(),
        }))
    }

    async fn describe_partitions(
        &self,
        r: Request<DescribePartitionsRequest>,
    ) -> Result<Response<DescribePartitionsResponse>, Status> {
        let r = r.into_inner();
        let b = &self.ctx()?.broker;
        let image = b.image();
        for t in &r.topics {
            if !image.topics.contains_key(t) {
                return Err(Status::not_found(format!("topic '{t}' does not exist")));
            }
        }
        let partitions = image
            .topics
            .values()
            .filter(|t| r.topics.is_empty() || r.topics.contains(&t.name))
            .flat_map(|t| partition_states(b, t))
            .filter(|p| r.broker < 0 || p.replicas.contains(&r.broker))
            .filter(|p| !r.only_unhealthy || p.under_replicated || p.under_min_isr || p.offline)
            .collect();
        Ok(Response::new(DescribePartitionsResponse { partitions }))
    }

    async fn restart_risk(
        &self,
        r: Request<RestartRiskRequest>,
    ) -> Result<Response<RestartRiskResponse>, Status> {
        let broker = r.into_inner().broker;
        let b = &self.ctx()?.broker;
        check_broker(b, broker)?;
        let states: Vec<PartitionState> = b
            .image()
            .topics
            .values()
            // Only this broker's partitions: the cost follows its share, not the cluster.
            .flat_map(|t| partition_states_of(b, t, Some(broker)))
            .collect();
        Ok(Response::new(risk::plan_restart(broker, &states)))
    }

    /// Asks the controller to move `broker`'s leaderships to other in-sync
    /// replicas (it stays in ISRs and keeps replicating). Returns progress
    /// now; call again until `done` (it leads nothing). Partitions with no
    /// other live in-sync replica are `blocked` and stay until one is back.
    async fn drain(&self, r: Request<DrainRequest>) -> Result<Response<DrainResponse>, Status> {
        let broker = r.into_inner().broker;
        let b = &self.ctx()?.broker;
        check_broker(b, broker)?;
        let before = b.image();
        let led_before = before
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| t.leader(p)))
            .filter(|l| *l == broker)
            .count() as i32;
        if !before.draining.contains(&broker) {
            b.store()
                .commit(vec![crate::metadata::MetadataRecord::BrokerDrainChanged {
                    id: broker,
                    draining: true,
                }])
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        let image = b.image();
        let led: Vec<PartitionState> = image
            .topics
            .values()
            .flat_map(|t| partition_states(b, t))
            .filter(|p| p.leader == broker)
            .collect();
        let movable = |p: &PartitionState| {
            p.isr
                .iter()
                .any(|r| *r != broker && !image.fenced.contains(r) && !image.draining.contains(r))
        };
        let remaining = led.iter().filter(|p| movable(p)).count() as i32;
        let blocked: Vec<PartitionState> = led.into_iter().filter(|p| !movable(p)).collect();
        let remaining = remaining + blocked.len() as i32;
        Ok(Response::new(DrainResponse {
            broker,
            leaderships_before: led_before,
            leaderships_remaining: remaining,
            done: remaining == 0,
            blocked,
        }))
    }

    async fn undrain(
        &self,
        r: Request<UndrainRequest>,
    ) -> Result<Response<UndrainResponse>, Status> {
        let broker = r.into_inner().broker;
        let b = &self.ctx()?.broker;
        check_broker(b, broker)?;
        if b.image().draining.contains(&broker) {
            b.store()
                .commit(vec![crate::metadata::MetadataRecord::BrokerDrainChanged {
                    id: broker,
                    draining: false,
                }])
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(Response::new(UndrainResponse {}))
    }

    /// Forgets a broker that was scaled away: refused while it runs (it
    /// heartbeats) or holds replicas; then it leaves the quorum's voters and
    /// the broker list. Unknown brokers: nothing to do.
    async fn remove_broker(
        &self,
        r: Request<RemoveBrokerRequest>,
    ) -> Result<Response<RemoveBrokerResponse>, Status> {
        let broker = r.into_inner().broker;
        let b = &self.ctx()?.broker;
        let image = b.image();
        let voter = b.store().quorum().voters.contains(&broker);
        if !image.brokers.contains_key(&broker) && !voter {
            return Ok(Response::new(RemoveBrokerResponse { removed: false }));
        }
        if broker == b.node_id() || !image.fenced.contains(&broker) {
            return Err(Status::failed_precondition(format!(
                "broker {broker} is still running (it heartbeats); stop it before removing it"
            )));
        }
        let held = image
            .topics
            .values()
            .flat_map(|t| t.assignments.iter())
            .filter(|r| r.contains(&broker))
            .count();
        if held > 0 {
            return Err(Status::failed_precondition(format!(
                "broker {broker} still holds {held} partition replica(s); move them first"
            )));
        }
        b.store()
            .remove_voter(broker)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        b.store()
            .commit(vec![crate::metadata::MetadataRecord::BrokerUnregistered {
                id: broker,
            }])
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        tracing::info!(broker, "broker removed from the cluster");
        Ok(Response::new(RemoveBrokerResponse { removed: true }))
    }

    async fn create_topic(
        &self,
        r: Request<CreateTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = r.into_inner();
        positive("partitions", r.partitions)?;
        positive("replication_factor", r.replication_factor)?;
        positive("min_insync_replicas", r.min_insync_replicas)?;
        let b = &self.ctx()?.broker;
        // Unset (0) replication factor and min-ISR: the governing mirror
        // policy's, else the defaults (min-ISR capped at the replication factor).
        let mut configs: BTreeMap<String, String> = r.configs.into_iter().collect();
        if r.min_insync_replicas > 0 {
            configs.insert(
                "min.insync.replicas".into(),
                r.min_insync_replicas.to_string(),
            );
        }
        let partitions = if r.partitions == 0 { -1 } else { r.partitions };
        let rf = if r.replication_factor == 0 {
            -1
        } else {
            r.replication_factor as i16
        };
        let topic = b
            .create_topic(
                &r.name,
                partitions,
                rf,
                configs,
                crate::metadata::mirror_policy::TopicOrigin::Admin,
            )
            .await
            .map_err(status)?;
        Ok(Response::new(describe_topic(b, &topic)))
    }

    async fn alter_topic(
        &self,
        r: Request<AlterTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let r = r.into_inner();
        positive("partitions", r.partitions)?;
        positive("replication_factor", r.replication_factor)?;
        positive("min_insync_replicas", r.min_insync_replicas)?;
        let b = &self.ctx()?.broker;
        let topic = topic_or_not_found(b, &r.name)?;
        if r.partitions > 0 && r.partitions < topic.partitions {
            return Err(Status::invalid_argument(format!(
                "topic '{}' has {} partitions; partitions can only grow, not shrink to {}",
                r.name, topic.partitions, r.partitions
            )));
        }
        let mut configs = topic.configs.clone();
        configs.extend(r.set_configs);
        for k in &r.delete_configs {
            configs.remove(k);
        }
        if r.min_insync_replicas > 0 {
            configs.insert(
                "min.insync.replicas".into(),
                r.min_insync_replicas.to_string(),
            );
        }
        if configs != topic.configs {
            b.replace_topic_configs(&r.name, configs, false)
                .await
                .map_err(status)?;
        }
        if r.partitions > topic.partitions {
            b.create_partitions(&r.name, r.partitions)
                .await
                .map_err(status)?;
        }
        if r.replication_factor > 0 && r.replication_factor as usize != topic.replicas(0).len() {
            b.change_replication_factor(&r.name, r.replication_factor)
                .await
                .map_err(status)?;
        }
        let topic = topic_or_not_found(b, &r.name)?;
        Ok(Response::new(describe_topic(b, &topic)))
    }

    async fn delete_topic(
        &self,
        r: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let name = r.into_inner().name;
        if name.starts_with("__") {
            return Err(Status::invalid_argument(format!(
                "topic '{name}' is internal and cannot be deleted"
            )));
        }
        self.ctx()?
            .broker
            .delete_topic(&name)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteTopicResponse {}))
    }

    async fn describe_topic(
        &self,
        r: Request<DescribeTopicRequest>,
    ) -> Result<Response<TopicDescription>, Status> {
        let b = &self.ctx()?.broker;
        let topic = topic_or_not_found(b, &r.into_inner().name)?;
        Ok(Response::new(describe_topic(b, &topic)))
    }

    async fn list_topics(
        &self,
        _: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let b = &self.ctx()?.broker;
        Ok(Response::new(ListTopicsResponse {
            topics: b
                .image()
                .topics
                .values()
                .map(|t| describe_topic(b, t))
                .collect(),
        }))
    }

    async fn put_mirror_policy(
        &self,
        r: Request<PutMirrorPolicyRequest>,
    ) -> Result<Response<PutMirrorPolicyResponse>, Status> {
        let changed = policies::put(&self.ctx()?.broker, r.into_inner()).await?;
        Ok(Response::new(PutMirrorPolicyResponse { changed }))
    }

    async fn delete_mirror_policy(
        &self,
        r: Request<DeleteMirrorPolicyRequest>,
    ) -> Result<Response<DeleteMirrorPolicyResponse>, Status> {
        let deleted = policies::delete(&self.ctx()?.broker, r.into_inner().name).await?;
        Ok(Response::new(DeleteMirrorPolicyResponse { deleted }))
    }

    async fn describe_mirror_policies(
        &self,
        r: Request<DescribeMirrorPoliciesRequest>,
    ) -> Result<Response<DescribeMirrorPoliciesResponse>, Status> {
        let policies = policies::describe(&self.ctx()?.broker, &r.into_inner().names)?;
        Ok(Response::new(DescribeMirrorPoliciesResponse { policies }))
    }

    /// Consumer lag of a group from the group coordinator (the leader of
    /// `__consumer_offsets-0`): see `group::lag` for the partitions and the
    /// arithmetic. UNAVAILABLE naming the partitions whose offsets could not
    /// be read from their leaders; never an under-counted lag.
    async fn group_lag(
        &self,
        r: Request<GroupLagRequest>,
    ) -> Result<Response<GroupLagResponse>, Status> {
        use crate::group::lag::{LagError, LagQuery, ResetPolicy};
        let r = r.into_inner();
        let reset = match OffsetResetPolicy::try_from(r.reset_policy) {
            Ok(OffsetResetPolicy::Unspecified | OffsetResetPolicy::Earliest) => {
                ResetPolicy::Earliest
            }
            Ok(OffsetResetPolicy::Latest) => ResetPolicy::Latest,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "reset_policy {} is not an OffsetResetPolicy",
                    r.reset_policy
                )));
            }
        };
        let coordinator = self.ctx()?.coordinator().map_err(|_| {
            Status::failed_precondition(
                "this broker does not coordinate consumer groups; ask the leader of __consumer_offsets-0",
            )
        })?;
        let query = LagQuery {
            topics: r.topics,
            reset,
        };
        let lag = coordinator
            .lag(&r.group, &query)
            .await
            .map_err(|e| match e {
                LagError::GroupNotFound(_) | LagError::TopicNotFound(_) => {
                    Status::not_found(e.to_string())
                }
                LagError::OffsetsUnreadable { .. } => Status::unavailable(e.to_string()),
            })?;
        Ok(Response::new(GroupLagResponse {
            group: lag.group,
            state: lag.state.to_string(),
            members: lag.members as i32,
            total_lag: lag.total_lag,
            partitions: lag
                .partitions
                .into_iter()
                .map(|p| tideway_admin_api::v1::PartitionLag {
                    topic: p.topic,
                    partition: p.partition,
                    committed_offset: p.committed_offset.unwrap_or(-1),
                    high_watermark: p.high_watermark,
                    log_start_offset: p.log_start_offset,
                    lag: p.lag,
                })
                .collect(),
        }))
    }
}
