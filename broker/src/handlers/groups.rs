//! Consumer group APIs (classic protocol): FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, DescribeGroups, ListGroups,
//! DeleteGroups. The decisions are in `group::state`; this file translates.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{BrokerId, GroupId, RequestHeader};

use super::{Context, str_bytes};
use crate::group::state::JoinRequest;

const GROUP_KEY: i8 = 0;

fn code(e: ResponseError) -> i16 {
    e.code()
}

pub fn find_coordinator(
    ctx: &Context,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    // The coordinator is the broker leading the offsets partition.
    let image = ctx.broker.image();
    let coordinator = image
        .topics
        .get(crate::group::offsets::OFFSETS_TOPIC)
        .map(|t| t.leader(0))
        .and_then(|id| image.brokers.get(&id));
    let (node, host, port) = match coordinator {
        Some(b) => (BrokerId(b.id), b.host.clone(), b.port),
        None => (BrokerId(-1), String::new(), 0),
    };
    let answer = |key: &str| -> (i16, Option<String>) {
        if coordinator.is_none() {
            (
                code(ResponseError::CoordinatorNotAvailable),
                Some("the offsets topic has no leader yet".into()),
            )
        } else if request.key_type != GROUP_KEY {
            (
                code(ResponseError::TransactionalIdAuthorizationFailed),
                Some("transactions are not supported".into()),
            )
        } else if key.is_empty() {
            (
                code(ResponseError::InvalidRequest),
                Some("the group id is empty".into()),
            )
        } else {
            (0, None)
        }
    };
    if version < 4 {
        let (error, message) = answer(request.key.as_str());
        return FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_error_message(if version >= 1 {
                message.map(str_bytes)
            } else {
                None
            })
            .with_node_id(if error == 0 { node } else { BrokerId(-1) })
            .with_host(str_bytes(if error == 0 { host } else { String::new() }))
            .with_port(if error == 0 { port as i32 } else { -1 });
    }
    let coordinators = request
        .coordinator_keys
        .iter()
        .map(|key| {
            let (error, message) = answer(key.as_str());
            Coordinator::default()
                .with_key(key.clone())
                .with_error_code(error)
                .with_error_message(message.map(str_bytes))
                .with_node_id(if error == 0 { node } else { BrokerId(-1) })
                .with_host(str_bytes(if error == 0 {
                    host.clone()
                } else {
                    String::new()
                }))
                .with_port(if error == 0 { port as i32 } else { -1 })
        })
        .collect();
    FindCoordinatorResponse::default().with_coordinators(coordinators)
}

pub async fn join_group(
    ctx: &Context,
    header: &RequestHeader,
    peer: SocketAddr,
    r: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let req = JoinRequest {
        member_id: r.member_id.as_str().to_string(),
        instance_id: r.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
        session_timeout: Duration::from_millis(r.session_timeout_ms.max(0) as u64),
        // v0 has no rebalance timeout: it equals the session timeout.
        rebalance_timeout: Duration::from_millis(
            if version == 0 {
                r.session_timeout_ms
            } else {
                r.rebalance_timeout_ms
            }
            .max(0) as u64,
        ),
        protocol_type: r.protocol_type.as_str().to_string(),
        protocols: r
            .protocols
            .iter()
            // Copied: a slice would keep the whole request frame alive as long
            // as the member stays in the group.
            .map(|p| {
                (
                    p.name.as_str().to_string(),
                    Bytes::copy_from_slice(&p.metadata),
                )
            })
            .collect(),
        require_known_member_id: version >= 4,
    };
    let groups = match ctx.coordinator() {
        Ok(g) => g,
        Err(e) => {
            return JoinGroupResponse::default()
                .with_error_code(e.code())
                .with_generation_id(-1);
        }
    };
    let result = groups.join(r.group_id.as_str(), req).await;
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(str_bytes)
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(result.error)
        .with_generation_id(result.generation)
        .with_protocol_type(if version >= 7 {
            result.protocol_type.map(str_bytes)
        } else {
            None
        })
        .with_protocol_name(Some(str_bytes(result.protocol_name.unwrap_or_default())))
        .with_leader(str_bytes(result.leader))
        .with_member_id(str_bytes(result.member_id))
        .with_members(members)
}

pub async fn sync_group(ctx: &Context, r: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let limit = ctx.broker.config.groups.max_member_metadata_bytes;
    if r.assignments.iter().any(|a| a.assignment.len() > limit) {
        return SyncGroupResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    }
    // Copied, as JoinGroup metadata: the group keeps them, not the frame.
    let assignments = r
        .assignments
        .iter()
        .map(|a| {
            (
                a.member_id.as_str().to_string(),
                Bytes::copy_from_slice(&a.assignment),
            )
        })
        .collect();
    let groups = match ctx.coordinator() {
        Ok(g) => g,
        Err(e) => return SyncGroupResponse::default().with_error_code(e.code()),
    };
    let result = groups
        .sync(
            r.group_id.as_str(),
            r.generation_id,
            r.member_id.as_str(),
            r.group_instance_id.as_ref().map(|s| s.as_str()),
            r.protocol_type.as_ref().map(|s| s.as_str()),
            r.protocol_name.as_ref().map(|s| s.as_str()),
            assignments,
        )
        .await;
    let response = SyncGroupResponse::default()
        .with_error_code(result.error)
        .with_assignment(result.assignment);
    // The protocol type and name exist from v5.
    if version < 5 {
        return response;
    }
    response
        .with_protocol_type(result.protocol_type.map(str_bytes))
        .with_protocol_name(result.protocol_name.map(str_bytes))
}

pub fn heartbeat(ctx: &Context, r: HeartbeatRequest) -> HeartbeatResponse {
    let groups = match ctx.coordinator() {
        Ok(g) => g,
        Err(e) => return HeartbeatResponse::default().with_error_code(e.code()),
    };
    let e = groups.heartbeat(
        r.group_id.as_str(),
        r.generation_id,
        r.member_id.as_str(),
        r.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    HeartbeatResponse::default().with_error_code(e.code())
}

pub fn leave_group(ctx: &Context, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    // v0-2 name one member; v3+ a batch with optional instance ids.
    let members: Vec<(String, Option<String>)> = if version < 3 {
        vec![(r.member_id.as_str().to_string(), None)]
    } else {
        r.members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_string(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
                )
            })
            .collect()
    };
    let groups = match ctx.coordinator() {
        Ok(g) => g,
        Err(e) => return LeaveGroupResponse::default().with_error_code(e.code()),
    };
    let codes = groups.leave(r.group_id.as_str(), &members);
    if version < 3 {
        return LeaveGroupResponse::default()
            .with_error_code(codes.first().map_or(0, |c| c.code()));
    }
    let responses = members
        .into_iter()
        .zip(codes)
        .map(|((id, instance), c)| {
            MemberResponse::default()
                .with_member_id(str_bytes(id))
                .with_group_instance_id(instance.map(str_bytes))
                .with_error_code(c.code())
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}

pub fn describe_groups(
    ctx: &Context,
    r: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = r
        .groups
        .into_iter()
        .map(|id| {
            let d = match ctx.coordinator() {
                Ok(groups) => groups.describe(id.as_str()),
                Err(e) => {
                    return DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(e.code());
                }
            };
            let members = d
                .members
                .into_iter()
                .map(
                    |(member_id, instance, client_id, host, metadata, assignment)| {
                        DescribedGroupMember::default()
                            .with_member_id(str_bytes(member_id))
                            .with_group_instance_id(if version >= 4 {
                                instance.map(str_bytes)
                            } else {
                                None
                            })
                            .with_client_id(str_bytes(client_id))
                            .with_client_host(str_bytes(host))
                            .with_member_metadata(metadata)
                            .with_member_assignment(assignment)
                    },
                )
                .collect();
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(d.state))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(d.protocol))
                .with_members(members)
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn list_groups(ctx: &Context, r: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let states: Vec<String> = r
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let types: Vec<String> = r
        .types_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    // Only the coordinator knows groups; elsewhere the list is empty.
    let listed = ctx.groups().map(|g| g.list()).unwrap_or_default();
    let groups = listed
        .into_iter()
        .filter(|(_, _, state)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                // group_state exists from v4, group_type from v5.
                .with_group_state(str_bytes(if version >= 4 { state } else { "" }))
                .with_group_type(str_bytes(if version >= 5 { "classic" } else { "" }))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn delete_groups(ctx: &Context, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(r.groups_names.len());
    for id in r.groups_names {
        let e = match ctx.coordinator() {
            Ok(groups) => groups.delete_group(id.as_str()).await,
            Err(e) => e,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(e.code()),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
