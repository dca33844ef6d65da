//! The admin gRPC API through the generated client, as the operator uses it.

use std::collections::HashMap;

use tideway_admin_api::AdminClient;
use tideway_admin_api::v1::*;
use tideway_broker::config::BrokerConfig;
use tonic::Code;

/// A single broker on free ports and an admin client to it.
async fn start_one() -> (
    tempfile::TempDir,
    tideway_broker::Running,
    AdminClient<tonic::transport::Channel>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = tideway_broker::start(BrokerConfig::for_tests(dir.path().to_path_buf()))
        .await
        .expect("start");
    let admin = AdminClient::connect(format!("http://{}", running.admin_addr))
        .await
        .expect("connect");
    (dir, running, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_partitions_risk_and_lag_through_the_admin_api() {
    let (_dir, running, mut admin) = start_one().await;

    let cluster = admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("describe cluster")
        .into_inner();
    assert_eq!((cluster.controller_id, cluster.brokers.len()), (0, 1));
    assert!(cluster.quorum.is_some_and(|q| q.has_leader));

    let created = admin
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            replication_factor: 1,
            min_insync_replicas: 1,
            configs: HashMap::from([("retention.ms".to_string(), "86400000".to_string())]),
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (
            created.partitions,
            created.replication_factor,
            created.min_insync_replicas
        ),
        (3, 1, 1)
    );
    assert_eq!(
        created.configs.get("retention.ms").map(String::as_str),
        Some("86400000")
    );

    let err = admin
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            ..Default::default()
        })
        .await
        .expect_err("exists");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains("orders"), "{}", err.message());
    let err = admin
        .create_topic(CreateTopicRequest {
            name: "bad name!".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad name");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .create_topic(CreateTopicRequest {
            name: "wide".into(),
            replication_factor: 3,
            ..Default::default()
        })
        .await
        .expect_err("rf 3 on one broker");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = admin
        .create_topic(CreateTopicRequest {
            name: "strict".into(),
            min_insync_replicas: 2,
            ..Default::default()
        })
        .await
        .expect_err("min-isr above rf");
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());

    let altered = admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            partitions: 5,
            set_configs: HashMap::from([("retention.bytes".to_string(), "1000000".to_string())]),
            delete_configs: vec!["retention.ms".into()],
            ..Default::default()
        })
        .await
        .expect("alter")
        .into_inner();
    assert_eq!(altered.partitions, 5);
    let mut keys: Vec<&String> = altered.configs.keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["min.insync.replicas", "retention.bytes"]);
    let err = admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            partitions: 2,
            ..Default::default()
        })
        .await
        .expect_err("shrink");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("only grow"), "{}", err.message());
    let err = admin
        .describe_topic(DescribeTopicRequest {
            name: "nope".into(),
        })
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);

    let parts = admin
        .describe_partitions(DescribePartitionsRequest {
            topics: vec!["orders".into()],
            broker: -1,
            only_unhealthy: false,
        })
        .await
        .expect("partitions")
        .into_inner()
        .partitions;
    assert_eq!(parts.len(), 5);
    assert!(
        parts
            .iter()
            .all(|p| p.leader == 0 && p.isr == vec![0] && !p.offline)
    );

    // One broker, RF 1: stopping it takes every partition offline, but RF <= min-ISR never blocks.
    let risk = admin
        .restart_risk(RestartRiskRequest { broker: 0 })
        .await
        .expect("risk")
        .into_inner();
    assert!(risk.safe, "{}", risk.reason);
    assert!(risk.would_go_offline.len() >= 5);
    let err = admin
        .restart_risk(RestartRiskRequest { broker: 7 })
        .await
        .expect_err("unknown broker");
    assert_eq!(err.code(), Code::NotFound);
    let drain = admin
        .drain(DrainRequest { broker: 0 })
        .await
        .expect("drain")
        .into_inner();
    assert!(
        !drain.done
            && drain.leaderships_remaining == drain.leaderships_before
            && !drain.blocked.is_empty()
    );

    let err = admin
        .group_lag(GroupLagRequest {
            group: "nobody".into(),
            ..Default::default()
        })
        .await
        .expect_err("no such group");
    assert_eq!(err.code(), Code::NotFound);

    admin
        .delete_topic(DeleteTopicRequest {
            name: "orders".into(),
        })
        .await
        .expect("delete");
    let names: Vec<String> = admin
        .list_topics(ListTopicsRequest {})
        .await
        .expect("list")
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"orders".to_string()), "{names:?}");
    let err = admin
        .delete_topic(DeleteTopicRequest {
            name: "__consumer_offsets".into(),
        })
        .await
        .expect_err("internal");
    assert_eq!(err.code(), Code::InvalidArgument);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_configs_change_defaults_at_runtime() {
    let (dir, running, mut admin) = start_one().await;
    let set = |pairs: &[(&str, &str)]| AlterClusterConfigsRequest {
        set_configs: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        delete_configs: Vec::new(),
    };

    let err = admin
        .alter_cluster_configs(set(&[("segment.bytes", "1")]))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("segment.bytes"), "{}", err.message());
    let err = admin
        .alter_cluster_configs(set(&[("num.partitions", "0")]))
        .await
        .expect_err("invalid");
    assert!(
        err.message().contains("num.partitions"),
        "{}",
        err.message()
    );

    let after = admin
        .alter_cluster_configs(set(&[
            ("num.partitions", "4"),
            ("log.retention.ms", "3600000"),
            ("auto.create.topics.enable", "false"),
        ]))
        .await
        .expect("alter")
        .into_inner();
    assert_eq!(after.configs.len(), 3);
    let described = admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(
        described
            .cluster_configs
            .get("num.partitions")
            .map(String::as_str),
        Some("4")
    );

    // A topic created with the defaults gets the new partition count, and its
    // log the new retention, with no restart.
    let created = admin
        .create_topic(CreateTopicRequest {
            name: "defaults".into(),
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.partitions, 4);
    let broker = &running.ctx.broker;
    let topic = broker.image().topics["defaults"].clone();
    assert_eq!(
        broker.topic_configs(&topic).log_config().retention_ms,
        3_600_000
    );
    assert!(!broker.defaults(&broker.image()).auto_create_topics);
    let partition = broker.partition("defaults", 0).expect("open");
    assert_eq!(partition.log().config().retention_ms, 3_600_000);

    // Changing it again reaches the open log; deleting it restores the flag's value.
    admin
        .alter_cluster_configs(set(&[("log.retention.ms", "-1")]))
        .await
        .expect("alter");
    assert_eq!(partition.log().config().retention_ms, -1);
    admin
        .alter_cluster_configs(AlterClusterConfigsRequest {
            set_configs: HashMap::new(),
            delete_configs: vec!["log.retention.ms".into()],
        })
        .await
        .expect("delete");
    assert_eq!(
        partition.log().config().retention_ms,
        BrokerConfig::for_tests(dir.path().to_path_buf())
            .log_defaults
            .retention_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_is_checked_and_needs_a_reloadable_subscriber() {
    let (_dir, _running, mut admin) = start_one().await;
    let err = admin
        .set_log_filter(SetLogFilterRequest {
            filter: "tideway_broker=loud".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("tideway_broker=loud"),
        "{}",
        err.message()
    );
    // A broker embedded in a test has no reloadable filter (tideway-broker installs one).
    let err = admin
        .set_log_filter(SetLogFilterRequest {
            filter: "debug".into(),
        })
        .await
        .expect_err("not reloadable");
    assert_eq!(err.code(), Code::FailedPrecondition);
}

/// GroupLag as the ConsumerAutoscaler asks it: named topics answer for a
/// group that never committed (or does not exist), per reset policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lag_of_named_topics_follows_the_reset_policy() {
    use tideway_broker::group::offsets::Committed;

    let (_dir, running, mut admin) = start_one().await;
    let broker = running.ctx.broker.clone();
    broker
        .create_topic("backlog", 2, 1, Default::default(), Default::default())
        .await
        .expect("create");
    let p0 = broker.partition("backlog", 0).expect("hosted");
    broker
        .append(&p0, super::wire::batch(5), false)
        .await
        .expect("append");
    let ask = |group: &str, topics: &[&str], reset: OffsetResetPolicy| GroupLagRequest {
        group: group.into(),
        topics: topics.iter().map(|t| t.to_string()).collect(),
        reset_policy: reset as i32,
    };

    // The high watermark reaches 5 once the single in-sync replica has it.
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let earliest = loop {
        let answer = admin
            .group_lag(ask("never", &["backlog"], OffsetResetPolicy::Earliest))
            .await;
        match answer {
            Ok(r) if r.get_ref().total_lag == 5 => break r.into_inner(),
            other => assert!(
                tokio::time::Instant::now() < until,
                "no lag of 5 for an uncommitted group: {other:?}"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((earliest.state.as_str(), earliest.members), ("Dead", 0));
    let seen: Vec<(i32, i64, i64, i64, i64)> = earliest
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition,
                p.committed_offset,
                p.high_watermark,
                p.log_start_offset,
                p.lag,
            )
        })
        .collect();
    assert_eq!(seen, vec![(0, -1, 5, 0, 5), (1, -1, 0, 0, 0)]);
    let unspecified = admin
        .group_lag(ask("never", &["backlog"], OffsetResetPolicy::Unspecified))
        .await
        .expect("unspecified")
        .into_inner();
    assert_eq!(unspecified.total_lag, 5, "UNSPECIFIED counts as EARLIEST");
    let latest = admin
        .group_lag(ask("never", &["backlog"], OffsetResetPolicy::Latest))
        .await
        .expect("latest")
        .into_inner();
    assert_eq!(latest.total_lag, 0);

    // A commit counts from itself under either policy; only named topics are shown.
    running
        .ctx
        .coordinator()
        .expect("coordinator")
        .commit(
            "committed",
            -1,
            "",
            None,
            vec![(
                ("backlog".to_string(), 0),
                Committed {
                    offset: 2,
                    leader_epoch: -1,
                    metadata: None,
                    commit_ms: 0,
                    topic_id: None,
                },
            )],
        )
        .await
        .expect("commit");
    for reset in [OffsetResetPolicy::Earliest, OffsetResetPolicy::Latest] {
        let lag = admin
            .group_lag(ask("committed", &["backlog"], reset))
            .await
            .expect("lag")
            .into_inner();
        assert_eq!(
            (lag.state.as_str(), lag.total_lag),
            ("Empty", 3),
            "{reset:?}"
        );
    }
    let default = admin
        .group_lag(ask("committed", &[], OffsetResetPolicy::Unspecified))
        .await
        .expect("default")
        .into_inner();
    assert_eq!(
        default.partitions.len(),
        1,
        "without topics: the committed partition"
    );

    let err = admin
        .group_lag(ask(
            "never",
            &["backlog", "nope"],
            OffsetResetPolicy::Latest,
        ))
        .await
        .expect_err("unknown topic");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("'nope'"), "{}", err.message());
    let err = admin
        .group_lag(ask("never", &[], OffsetResetPolicy::Latest))
        .await
        .expect_err("no topics, no group");
    assert_eq!(err.code(), Code::NotFound);
    let err = admin
        .group_lag(GroupLagRequest {
            group: "never".into(),
            topics: vec![],
            reset_policy: 7,
        })
        .await
        .expect_err("bad policy");
    assert_eq!(err.code(), Code::InvalidArgument);
    running.stop().await;
}
