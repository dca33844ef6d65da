//! Rebalance state machine tests: events in, state and replies out.

use super::*;

fn config() -> GroupConfig {
    GroupConfig {
        min_session_timeout: Duration::from_millis(100),
        max_session_timeout: Duration::from_secs(300),
        initial_rebalance_delay: Duration::ZERO,
        max_size: 3,
        max_member_metadata_bytes: 1024,
    }
}

fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(p.to_string())))
            .collect(),
        require_known_member_id: true,
    }
}

struct Ids(u32);
impl Ids {
    fn next(&mut self) -> impl FnOnce() -> String + use<> {
        self.0 += 1;
        let n = self.0;
        move || format!("m{n}")
    }
}

/// Joins a new member through the MEMBER_ID_REQUIRED step; returns its id
/// and the replies of the second join.
fn join_new(g: &mut Group, ids: &mut Ids, now: Instant) -> (String, Replies) {
    let (first, _) = g.join(join_req("", &["range"]), now, &config(), ids.next());
    let Outcome::Now(r) = first else {
        panic!("first join waits")
    };
    assert_eq!(r.error, ResponseError::MemberIdRequired.code());
    let (second, replies) = g.join(
        join_req(&r.member_id, &["range"]),
        now,
        &config(),
        ids.next(),
    );
    assert_eq!(second, Outcome::Wait(r.member_id.clone()));
    (r.member_id, replies)
}

fn join_reply(replies: &Replies, member: &str) -> JoinResult {
    replies
        .iter()
        .find_map(|r| match r {
            Reply::Join(m, j) if m == member => Some(j.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join reply for {member} in {replies:?}"))
}

#[test]
fn a_single_member_joins_in_two_steps_and_syncs() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (m, replies) = join_new(&mut g, &mut ids, now);
    let j = join_reply(&replies, &m);
    assert_eq!(
        (j.error, j.generation, j.leader.as_str()),
        (0, 1, m.as_str())
    );
    assert_eq!(j.members.len(), 1);
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let (out, _) = g.sync(
        1,
        &m,
        None,
        None,
        None,
        vec![(m.clone(), Bytes::from_static(b"a"))],
        now,
    );
    assert_eq!(
        out,
        Outcome::Now(SyncResult {
            error: 0,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: Bytes::from_static(b"a")
        })
    );
    assert_eq!(g.state, GroupState::Stable);
}

#[test]
fn a_second_member_triggers_a_rebalance_that_both_complete() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (a, _) = join_new(&mut g, &mut ids, now);
    g.sync(
        1,
        &a,
        None,
        None,
        None,
        vec![(a.clone(), Bytes::from_static(b"all"))],
        now,
    );
    let (b, replies) = join_new(&mut g, &mut ids, now);
    assert!(replies.is_empty(), "waits for a to rejoin");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(1, &a, None, now),
        ResponseError::RebalanceInProgress
    );
    // a may still commit while it revokes.
    assert_eq!(g.validate_commit(1, &a, None, now), Ok(()));
    let (out, replies) = g.join(join_req(&a, &["range"]), now, &config(), ids.next());
    assert_eq!(out, Outcome::Wait(a.clone()));
    let (ja, jb) = (join_reply(&replies, &a), join_reply(&replies, &b));
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a, "the leader stays");
    assert_eq!((ja.members.len(), jb.members.len()), (2, 0));
    assert_eq!(
        g.validate_commit(2, &a, None, now),
        Err(ResponseError::RebalanceInProgress)
    );
    // The follower waits for the leader's assignment.
    let (out, _) = g.sync(2, &b, None, None, None, vec![], now);
    assert_eq!(out, Outcome::Wait(b.clone()));
    let (_, replies) = g.sync(
        2,
        &a,
        None,
        None,
        None,
        vec![(a.clone(), "x".into()), (b.clone(), "y".into())],
        now,
    );
    assert_eq!(
        replies,
        vec![Reply::Sync(
            b.clone(),
            SyncResult {
                error: 0,
                protocol_type: Some("consumer".into()),
                protocol_name: Some("range".into()),
                assignment: "y".into()
            }
        )]
    );
    assert_eq!(g.heartbeat(2, &b, None, now), ResponseError::Unknown(0));
    assert_eq!(
        g.heartbeat(1, &b, None, now),
        ResponseError::IllegalGeneration
    );
    assert_eq!(
        g.validate_commit(1, &b, None, now),
        Err(ResponseError::IllegalGeneration)
    );
}

#[test]
fn concurrent_first_joins_never_see_unknown_member_id() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    // Both get their member ids before either rejoins.
    let (Outcome::Now(ra), _) = g.join(join_req("", &["range"]), now, &config(), ids.next()) else {
        panic!()
    };
    let (Outcome::Now(rb), _) = g.join(join_req("", &["range"]), now, &config(), ids.next()) else {
        panic!()
    };
    let (out_a, replies) = g.join(
        join_req(&ra.member_id, &["range"]),
        now,
        &config(),
        ids.next(),
    );
    assert_eq!(out_a, Outcome::Wait(ra.member_id.clone()));
    assert!(replies.is_empty(), "b is still pending");
    let (_, replies) = g.join(
        join_req(&rb.member_id, &["range"]),
        now,
        &config(),
        ids.next(),
    );
    assert_eq!(join_reply(&replies, &ra.member_id).error, 0);
    assert_eq!(join_reply(&replies, &rb.member_id).error, 0);
    assert_eq!(g.members.len(), 2);
}

#[test]
fn an_expired_member_is_removed_and_the_rest_rebalance() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (a, _) = join_new(&mut g, &mut ids, now);
    let (b, _) = {
        let (Outcome::Now(rb), _) = g.join(join_req("", &["range"]), now, &config(), ids.next())
        else {
            panic!()
        };
        let r = g.join(
            join_req(&rb.member_id, &["range"]),
            now,
            &config(),
            ids.next(),
        );
        (rb.member_id, r)
    };
    let (_, replies) = g.join(join_req(&a, &["range"]), now, &config(), ids.next());
    assert_eq!(join_reply(&replies, &b).generation, 2);
    g.sync(2, &a, None, None, None, vec![], now);
    // a keeps heartbeating, b goes silent.
    let later = now + Duration::from_secs(6);
    assert_eq!(g.heartbeat(2, &a, None, later), ResponseError::Unknown(0));
    let replies = g.tick(now + Duration::from_secs(11), &config());
    assert!(replies.is_empty());
    assert!(!g.members.contains_key(&b));
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let (_, replies) = g.join(
        join_req(&a, &["range"]),
        later + Duration::from_secs(5),
        &config(),
        ids.next(),
    );
    assert_eq!(join_reply(&replies, &a).generation, 3);
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (a, _) = join_new(&mut g, &mut ids, now);
    g.sync(1, &a, None, None, None, vec![], now);
    let (b, _) = join_new(&mut g, &mut ids, now);
    // a keeps its session alive by heartbeating but never rejoins.
    for s in 1..=29 {
        g.heartbeat(1, &a, None, now + Duration::from_secs(s));
    }
    assert!(g.tick(now + Duration::from_secs(29), &config()).is_empty());
    let replies = g.tick(now + Duration::from_secs(30), &config());
    let j = join_reply(&replies, &b);
    assert_eq!(
        (j.generation, j.leader.as_str(), j.members.len()),
        (2, b.as_str(), 1)
    );
    assert!(!g.members.contains_key(&a));
}

#[test]
fn the_last_member_leaving_empties_the_group() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (a, _) = join_new(&mut g, &mut ids, now);
    g.sync(1, &a, None, None, None, vec![], now);
    assert_eq!(
        g.leave(&a, None, now, &config()).0,
        ResponseError::Unknown(0)
    );
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.generation, 2);
    assert_eq!(
        g.leave(&a, None, now, &config()).0,
        ResponseError::UnknownMemberId
    );
    assert_eq!(
        g.validate_commit(-1, "", None, now),
        Ok(()),
        "simple commits once empty"
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let stat = |id: &str| JoinRequest {
        instance_id: Some("pod-0".into()),
        ..join_req(id, &["range"])
    };
    let (a, _) = join_new(&mut g, &mut ids, now);
    g.sync(1, &a, None, None, None, vec![], now);
    let (out, replies) = g.join(stat(""), now, &config(), ids.next());
    let Outcome::Wait(s) = out else {
        panic!("static member waits for the rebalance")
    };
    let (_, replies2) = g.join(join_req(&a, &["range"]), now, &config(), ids.next());
    assert!(replies.is_empty());
    assert_eq!(join_reply(&replies2, &s).generation, 2);
    g.sync(2, &a, None, None, None, vec![(s.clone(), "p0".into())], now);
    // The static member restarts: new member id, same instance id, no rebalance.
    let (out, _) = g.join(stat(""), now, &config(), ids.next());
    let Outcome::Now(j) = out else {
        panic!("static rejoin answers at once")
    };
    assert_eq!((j.error, j.generation), (0, 2));
    assert_ne!(j.member_id, s);
    assert_eq!(g.state, GroupState::Stable);
    let (out, _) = g.sync(2, &j.member_id, Some("pod-0"), None, None, vec![], now);
    assert!(
        matches!(out, Outcome::Now(SyncResult { error: 0, ref assignment, .. }) if assignment == &Bytes::from("p0"))
    );
    assert_eq!(
        g.heartbeat(2, &s, Some("pod-0"), now),
        ResponseError::FencedInstanceId
    );
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    join_new(&mut g, &mut ids, now);
    let (out, _) = g.join(join_req("", &["roundrobin"]), now, &config(), ids.next());
    assert!(
        matches!(out, Outcome::Now(JoinResult { error, .. }) if error == ResponseError::InconsistentGroupProtocol.code())
    );
    let short = JoinRequest {
        session_timeout: Duration::from_millis(1),
        ..join_req("", &["range"])
    };
    let (out, _) = g.join(short, now, &config(), ids.next());
    assert!(
        matches!(out, Outcome::Now(JoinResult { error, .. }) if error == ResponseError::InvalidSessionTimeout.code())
    );
}

#[test]
fn the_protocol_most_members_prefer_wins() {
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let mut join = |protocols: &[&str], g: &mut Group| {
        let (Outcome::Now(r), _) = g.join(join_req("", protocols), now, &config(), ids.next())
        else {
            panic!()
        };
        r.member_id
    };
    let a = join(&["range", "cooperative-sticky"], &mut g);
    let b = join(&["cooperative-sticky", "range"], &mut g);
    let c = join(&["cooperative-sticky", "range"], &mut g);
    let mut replies = Vec::new();
    for (id, p) in [
        (&a, ["range", "cooperative-sticky"]),
        (&b, ["cooperative-sticky", "range"]),
        (&c, ["cooperative-sticky", "range"]),
    ] {
        replies = g
            .join(join_req(id, &p), now, &config(), || unreachable!())
            .1;
    }
    assert_eq!(
        join_reply(&replies, &a).protocol_name.as_deref(),
        Some("cooperative-sticky")
    );
}

#[test]
fn the_initial_delay_holds_the_first_rebalance() {
    let cfg = GroupConfig {
        initial_rebalance_delay: Duration::from_secs(3),
        ..config()
    };
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    let (Outcome::Now(r), _) = g.join(join_req("", &["range"]), now, &cfg, ids.next()) else {
        panic!()
    };
    let (_, replies) = g.join(join_req(&r.member_id, &["range"]), now, &cfg, ids.next());
    assert!(replies.is_empty());
    assert!(g.tick(now + Duration::from_secs(2), &cfg).is_empty());
    assert_eq!(
        join_reply(&g.tick(now + Duration::from_secs(3), &cfg), &r.member_id).generation,
        1
    );
}

#[test]
fn a_full_group_and_oversized_metadata_are_refused() {
    let cfg = config();
    let (mut g, mut ids, now) = (Group::new("g"), Ids(0), Instant::now());
    for _ in 0..cfg.max_size {
        let (Outcome::Now(r), _) = g.join(join_req("", &["range"]), now, &cfg, ids.next()) else {
            panic!()
        };
        let _ = g.join(join_req(&r.member_id, &["range"]), now, &cfg, ids.next());
    }
    assert_eq!(g.members.len(), cfg.max_size);
    let (Outcome::Now(r), _) = g.join(join_req("", &["range"]), now, &cfg, ids.next()) else {
        panic!("a full group answers at once")
    };
    assert_eq!(r.error, ResponseError::GroupMaxSizeReached.code());
    let mut big = join_req("", &["range"]);
    big.protocols[0].1 = Bytes::from(vec![0u8; cfg.max_member_metadata_bytes + 1]);
    let (Outcome::Now(r), _) = g.join(big, now, &cfg, ids.next()) else {
        panic!("oversized metadata answers at once")
    };
    assert_eq!(r.error, ResponseError::InvalidRequest.code());
}
