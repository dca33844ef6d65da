//! Three brokers in one process, a real Raft quorum on loopback ports, driven
//! through the admin gRPC API as the operator drives them: a replication
//! factor change (replicas added and removed, progress reaching 100 %),
//! Drain / Undrain moving leaderships without taking replicas out of sync, a
//! fourth broker joining and then emptied (EvacuateBrokers) and removed.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tideway_admin_api::AdminClient;
use tideway_admin_api::v1::*;
use tideway_broker::config::BrokerConfig;
use tonic::transport::Channel;

const DEADLINE: Duration = Duration::from_secs(60);

/// Retries `check` until it returns Some, failing with `what` after DEADLINE.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

async fn partitions(admin: &mut AdminClient<Channel>, topic: &str) -> Vec<PartitionState> {
    admin
        .describe_partitions(DescribePartitionsRequest {
            topics: vec![topic.into()],
            broker: -1,
            only_unhealthy: false,
        })
        .await
        .map(|r| r.into_inner().partitions)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_factor_changes_and_drain_through_the_admin_api() {
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().expect("dir")).collect();
    let ports = free_ports(4);
    let voters = |n: usize| -> BTreeMap<u64, String> {
        ports[..n]
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u64, format!("127.0.0.1:{p}")))
            .collect()
    };
    let config = |i: usize, n: usize| {
        let mut config = BrokerConfig::for_tests(dirs[i].path().to_path_buf());
        config.node_id = i as i32;
        config.admin_listen = format!("127.0.0.1:{}", ports[i]).parse().expect("addr");
        config.voters = Some(voters(n));
        config.broker_session_timeout = Duration::from_secs(3);
        config.leader_imbalance_check_interval = Some(Duration::from_millis(500));
        config
    };
    // Started together: each waits for a quorum before it is ready.
    let (b0, b1, b2) = tokio::join!(
        tideway_broker::start(config(0, 3)),
        tideway_broker::start(config(1, 3)),
        tideway_broker::start(config(2, 3)),
    );
    let running = [b0, b1, b2].map(|r| r.expect("start"));
    let mut admin = AdminClient::connect(format!("http://{}", running[0].admin_addr))
        .await
        .expect("connect");

    // RF 1 → 3: two replicas join each partition and catch up.
    admin
        .create_topic(CreateTopicRequest {
            name: "orders".into(),
            partitions: 3,
            replication_factor: 1,
            ..Default::default()
        })
        .await
        .expect("create");
    let grown = admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            replication_factor: 3,
            ..Default::default()
        })
        .await
        .expect("rf 3")
        .into_inner();
    assert_eq!(grown.replication_factor, 3);
    eventually("every partition with 3 replicas, all in sync", || {
        let mut a = admin.clone();
        async move {
            let ps = partitions(&mut a, "orders").await;
            (ps.len() == 3 && ps.iter().all(|p| p.replicas.len() == 3 && p.isr.len() == 3))
                .then_some(())
        }
    })
    .await;
    let described = admin
        .describe_topic(DescribeTopicRequest {
            name: "orders".into(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert_eq!(described.reassignment_percent, 100);

    // min-ISR 3 cannot go with RF 2; RF 2 removes one follower per partition.
    admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            min_insync_replicas: 2,
            ..Default::default()
        })
        .await
        .expect("min-isr 2");
    let err = admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            replication_factor: 1,
            ..Default::default()
        })
        .await
        .expect_err("rf below min-isr");
    assert!(
        err.message().contains("min.insync.replicas"),
        "{}",
        err.message()
    );
    admin
        .alter_topic(AlterTopicRequest {
            name: "orders".into(),
            replication_factor: 2,
            ..Default::default()
        })
        .await
        .expect("rf 2");
    let shrunk = eventually("2 replicas per partition, leaders kept", || {
        let mut a = admin.clone();
        async move {
            let ps = partitions(&mut a, "orders").await;
            ps.iter()
                .all(|p| {
                    p.replicas.len() == 2 && p.isr.len() == 2 && p.replicas.contains(&p.leader)
                })
                .then_some(ps)
        }
    })
    .await;

    // Drain the leader of partition 0: leaderships move, replicas stay in sync.
    let drained = shrunk[0].leader;
    let first = admin
        .drain(DrainRequest { broker: drained })
        .await
        .expect("drain")
        .into_inner();
    assert!(first.leaderships_before >= 1);
    eventually("the drained broker leads nothing", || {
        let mut a = admin.clone();
        async move {
            let r = a
                .drain(DrainRequest { broker: drained })
                .await
                .ok()?
                .into_inner();
            r.done.then_some(())
        }
    })
    .await;
    let ps = partitions(&mut admin, "orders").await;
    assert!(ps.iter().all(|p| p.leader != drained && p.isr.len() == 2));
    let cluster = admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("cluster")
        .into_inner();
    assert!(
        cluster
            .brokers
            .iter()
            .any(|b| b.id == drained && b.draining && b.alive)
    );
    admin
        .undrain(UndrainRequest { broker: drained })
        .await
        .expect("undrain");
    let cluster = admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("cluster")
        .into_inner();
    assert!(cluster.brokers.iter().all(|b| !b.draining));
    // Undrained, it leads its preferred partitions again (auto leader rebalance).
    eventually(
        "the undrained broker leads its preferred partitions again",
        || {
            let mut a = admin.clone();
            async move {
                let ps = partitions(&mut a, "orders").await;
                let preferred: Vec<_> = ps
                    .iter()
                    .filter(|p| p.replicas.first() == Some(&drained))
                    .collect();
                (!preferred.is_empty() && preferred.iter().all(|p| p.leader == drained))
                    .then_some(())
            }
        },
    )
    .await;

    // The cluster grows: a fourth broker, told about all four voters, joins
    // the quorum and takes replicas.
    let fourth = tideway_broker::start(config(3, 4))
        .await
        .expect("start 4th");
    // Registered is not yet alive: the controller fences the fourth until
    // its heartbeats arrive, which a loaded machine can delay (issue 13).
    eventually("four voters and four live brokers", || {
        let mut a = admin.clone();
        async move {
            let c = a
                .describe_cluster(DescribeClusterRequest {})
                .await
                .ok()?
                .into_inner();
            let q = c.quorum.clone()?;
            (q.voters.len() == 4 && c.brokers.len() == 4 && c.brokers.iter().all(|b| b.alive))
                .then_some(())
        }
    })
    .await;
    admin
        .create_topic(CreateTopicRequest {
            name: "wide".into(),
            partitions: 4,
            replication_factor: 4,
            ..Default::default()
        })
        .await
        .expect("RF 4 on four brokers");
    eventually("RF 4 in sync", || {
        let mut a = admin.clone();
        async move {
            let ps = partitions(&mut a, "wide").await;
            (ps.len() == 4 && ps.iter().all(|p| p.isr.len() == 4)).then_some(())
        }
    })
    .await;

    // A topic with RF 3 spread over four brokers has replicas on broker 3.
    admin
        .create_topic(CreateTopicRequest {
            name: "spread".into(),
            partitions: 4,
            replication_factor: 3,
            ..Default::default()
        })
        .await
        .expect("spread");
    let evacuate = || EvacuateBrokersRequest { brokers: vec![3] };
    // Moving everything off broker 3 is impossible while "wide" needs four brokers: nothing moves.
    let err = admin
        .evacuate_brokers(evacuate())
        .await
        .expect_err("RF 4 on 3 brokers");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("wide"), "{}", err.message());
    assert!(
        partitions(&mut admin, "spread")
            .await
            .iter()
            .all(|p| p.replicas.len() == 3)
    );

    // Scaled down again: refused while it runs or holds replicas, then forgotten.
    let err = admin
        .remove_broker(RemoveBrokerRequest { broker: 3 })
        .await
        .expect_err("still running");
    assert_eq!(
        err.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        err.message()
    );
    fourth.stop().await;
    eventually("broker 3 fenced", || {
        let mut a = admin.clone();
        async move {
            let c = a
                .describe_cluster(DescribeClusterRequest {})
                .await
                .ok()?
                .into_inner();
            c.brokers
                .iter()
                .any(|b| b.id == 3 && !b.alive)
                .then_some(())
        }
    })
    .await;
    let err = admin
        .remove_broker(RemoveBrokerRequest { broker: 3 })
        .await
        .expect_err("holds replicas");
    assert!(err.message().contains("replica"), "{}", err.message());
    admin
        .delete_topic(DeleteTopicRequest {
            name: "wide".into(),
        })
        .await
        .expect("delete wide");
    // Now the replicas move off broker 3 (stopped): each gets a replacement
    // that catches up before broker 3's copy is dropped, paced by the move throttle.
    admin
        .alter_cluster_configs(AlterClusterConfigsRequest {
            set_configs: [(
                "follower.replication.throttled.rate".to_string(),
                (1 << 20).to_string(),
            )]
            .into(),
            delete_configs: Vec::new(),
        })
        .await
        .expect("throttle");
    eventually("no replica left on broker 3", || {
        let mut a = admin.clone();
        async move {
            let r = a.evacuate_brokers(evacuate()).await.ok()?.into_inner();
            (r.replicas_remaining == 0 && r.partitions_moving == 0).then_some(())
        }
    })
    .await;
    let ps = partitions(&mut admin, "spread").await;
    assert!(
        ps.iter()
            .all(|p| p.replicas.len() == 3 && !p.replicas.contains(&3) && p.isr.len() == 3),
        "{ps:?}"
    );
    let removed = admin
        .remove_broker(RemoveBrokerRequest { broker: 3 })
        .await
        .expect("remove")
        .into_inner();
    assert!(removed.removed);
    let c = admin
        .describe_cluster(DescribeClusterRequest {})
        .await
        .expect("cluster")
        .into_inner();
    assert_eq!(c.brokers.len(), 3);
    assert_eq!(c.quorum.map(|q| q.voters.len()), Some(3));
    for r in running {
        r.stop().await;
    }
}
