//! `tideway topics`: lists topics from a Metadata request (all topics, so
//! asking never auto-creates one), describes their partitions, or creates
//! one through CreateTopics and waits until every partition has a leader.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::metadata::{Metadata, MetadataTopic};

use crate::args::{Common, TopicsArgs};
use crate::client::{LogContext, build_config};
use crate::table;

pub async fn run(common: &Common, args: &TopicsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(common.timeout_ms);
    let admin: AdminClient<LogContext> = build_config(common, &[])
        .create_with_context(LogContext::default())
        .context("creating the admin client")?;
    match &args.create {
        Some(name) => {
            execute_create(&admin, args, name, timeout).await?;
            let metadata = fetch_topic_when_led(&admin, name, timeout)?;
            match metadata.topics().iter().find(|t| t.name() == name) {
                Some(t) => writeln!(
                    out,
                    "created topic {name}: {} partitions, replication factor {}",
                    t.partitions().len(),
                    replication_factor(t)
                )?,
                None => writeln!(out, "created topic {name} (not yet in the metadata)")?,
            }
        }
        None => {
            let metadata = fetch_metadata(&admin, timeout)?;
            let topics = select_topics(&metadata, &args.topics)?;
            let text = if args.describe {
                build_description(&topics)
            } else {
                build_listing(&topics)
            };
            out.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

fn fetch_metadata(admin: &AdminClient<LogContext>, timeout: Duration) -> anyhow::Result<Metadata> {
    admin.inner().fetch_metadata(None, timeout).context(
        "fetching the cluster's metadata from the brokers (--bootstrap) within --timeout-ms",
    )
}

/// The topics named in `wanted` (all when empty), sorted by name; fails on
/// a name the cluster does not have.
fn select_topics<'a>(
    metadata: &'a Metadata,
    wanted: &[String],
) -> anyhow::Result<Vec<&'a MetadataTopic>> {
    let mut topics: Vec<&MetadataTopic> = metadata
        .topics()
        .iter()
        .filter(|t| wanted.is_empty() || wanted.iter().any(|w| w == t.name()))
        .collect();
    if let Some(missing) = wanted
        .iter()
        .find(|w| !topics.iter().any(|t| t.name() == w.as_str()))
    {
        bail!("topic '{missing}' does not exist (--topic)");
    }
    topics.sort_by(|a, b| a.name().cmp(b.name()));
    Ok(topics)
}

fn replication_factor(topic: &MetadataTopic) -> usize {
    topic
        .partitions()
        .iter()
        .map(|p| p.replicas().len())
        .max()
        .unwrap_or(0)
}

fn build_listing(topics: &[&MetadataTopic]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            vec![
                t.name().to_string(),
                t.partitions().len().to_string(),
                replication_factor(t).to_string(),
            ]
        })
        .collect();
    table::render(&["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"], &rows)
}

fn build_description(topics: &[&MetadataTopic]) -> String {
    let mut rows = Vec::new();
    for t in topics {
        let mut partitions: Vec<_> = t.partitions().iter().collect();
        partitions.sort_by_key(|p| p.id());
        for p in partitions {
            let leader = if p.leader() < 0 {
                "none".to_string()
            } else {
                p.leader().to_string()
            };
            rows.push(vec![
                t.name().to_string(),
                p.id().to_string(),
                leader,
                table::ids(p.replicas()),
                table::ids(p.isr()),
            ]);
        }
    }
    table::render(&["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"], &rows)
}

async fn execute_create(
    admin: &AdminClient<LogContext>,
    args: &TopicsArgs,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    // -1: the cluster's num.partitions / default.replication.factor (KIP-464).
    let mut topic = NewTopic::new(
        name,
        args.partitions.unwrap_or(-1),
        TopicReplication::Fixed(args.replication_factor.unwrap_or(-1)),
    );
    for (key, value) in &args.configs {
        topic = topic.set(key, value);
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&topic], &options)
        .await
        .with_context(|| format!("creating topic {name}"))?;
    for result in results {
        if let Err((topic, code)) = result {
            bail!("creating topic {topic} (--create): {code}");
        }
    }
    Ok(())
}

/// Metadata once `name` shows with a leader for every partition, or the
/// last metadata seen when `timeout` passes first (creation is done; the
/// leaders are the cluster's business).
fn fetch_topic_when_led(
    admin: &AdminClient<LogContext>,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<Metadata> {
    let deadline = Instant::now() + timeout;
    loop {
        let metadata = fetch_metadata(admin, timeout)?;
        let led = metadata
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .is_some_and(|t| {
                !t.partitions().is_empty() && t.partitions().iter().all(|p| p.leader() >= 0)
            });
        if led || Instant::now() >= deadline {
            return Ok(metadata);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
