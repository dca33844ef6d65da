//! Mirror policies (docs/mirror-policies.md) as pure decisions over the
//! metadata image: which policy governs a topic, what it requires of the
//! topic now, whether a topic complies and why not, where a new topic's
//! replicas go, the replica set a partition moves to, and the controller's
//! next step for policies with `on_existing: Reconcile`. The broker applies
//! them to CreateTopics, auto-create, CreatePartitions and min-ISR changes
//! (`Broker::plan_create_topic` and friends); the admin API stores them as
//! metadata records; the controller loop runs [`plan_policy_step`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::controller::{BrokerId, BrokerInfo, plan_replica_placement};
use super::{MetadataImage, MetadataRecord, TopicMeta};

/// How a pattern names topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// The exact name.
    Literal,
    /// Names that start with the value.
    Prefix,
    /// Names the regular expression matches as a whole.
    Regex,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamePattern {
    pub kind: PatternType,
    pub value: String,
}

/// How many replicas a governed partition keeps, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ReplicaRule {
    /// One on every broker that is not leaving.
    All,
    /// `count` replicas on any brokers.
    Exactly { count: i32 },
    /// One on each of these brokers.
    Brokers { ids: Vec<BrokerId> },
    /// One on each broker of these racks.
    Racks { racks: Vec<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCreate {
    /// A client's creation that breaks the policy fails with POLICY_VIOLATION.
    Reject,
    /// A client's topic is created with the policy's settings instead.
    Adjust,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExisting {
    /// The controller moves replicas and sets min-ISR, one topic at a time.
    Reconcile,
    /// Only reported.
    Audit,
}

/// Who created a topic. `Admin`: the admin API (the operator's Topic
/// resources); `Client`: Kafka CreateTopics or auto-create (also topics
/// created before origins were recorded); `Internal`: the broker itself
/// (`__consumer_offsets`), which no policy governs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicOrigin {
    #[default]
    Client,
    Admin,
    Internal,
}

/// One policy as stored in the metadata (admin PutMirrorPolicy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorPolicy {
    /// The key, e.g. `<namespace>/<name>`.
    pub name: String,
    pub priority: i32,
    /// On a priority tie the older policy governs.
    pub created_ms: i64,
    pub topics: Vec<NamePattern>,
    #[serde(default)]
    pub exclude: Vec<NamePattern>,
    pub applies_to_admin: bool,
    pub applies_to_clients: bool,
    pub replicas: ReplicaRule,
    /// The governed topics' min.insync.replicas is at least this.
    pub min_insync_replicas: Option<i32>,
    pub max_per_rack: Option<i32>,
    pub on_create: OnCreate,
    pub on_existing: OnExisting,
    /// Pace of the replicas this policy's reassignments add (the cluster's
    /// follower.replication.throttled.rate still applies when lower).
    pub throttle_bytes_per_sec: Option<u64>,
}

impl MirrorPolicy {
    pub fn applies_to(&self, origin: TopicOrigin) -> bool {
        match origin {
            TopicOrigin::Admin => self.applies_to_admin,
            TopicOrigin::Client => self.applies_to_clients,
            TopicOrigin::Internal => false,
        }
    }

    /// "MirrorPolicy ns/name (Exactly 3 replicas, min-ISR 2)", for messages.
    pub fn describe(&self) -> String {
        let rule = match &self.replicas {
            ReplicaRule::All => "a replica on every broker".to_string(),
            ReplicaRule::Exactly { count } => format!("exactly {count} replicas"),
            ReplicaRule::Brokers { ids } => format!("a replica on each of brokers {ids:?}"),
            ReplicaRule::Racks { racks } => format!("a replica on every broker of racks {racks:?}"),
        };
        let mut parts = vec![rule];
        if let Some(m) = self.min_insync_replicas {
            parts.push(format!("min-ISR at least {m}"));
        }
        if let Some(m) = self.max_per_rack {
            parts.push(format!("at most {m} per rack"));
        }
        format!("MirrorPolicy {} ({})", self.name, parts.join(", "))
    }
}

/// Why a policy cannot be stored, naming the field.
pub fn validate_policy(p: &MirrorPolicy) -> Result<(), String> {
    if p.name.is_empty() {
        return Err("name must not be empty".into());
    }
    if p.topics.is_empty() {
        return Err("topics must name at least one pattern".into());
    }
    for (field, patterns) in [("topics", &p.topics), ("exclude", &p.exclude)] {
        for pat in patterns {
            if pat.value.is_empty() {
                return Err(format!("{field}: a pattern's value must not be empty"));
            }
            if pat.kind == PatternType::Regex
                && let Err(e) = full_match_regex(&pat.value)
            {
                return Err(format!(
                    "{field}: regex {:?} does not compile: {e}",
                    pat.value
                ));
            }
        }
    }
    if !p.applies_to_admin && !p.applies_to_clients {
        return Err("applies_to: choose topic resources, client-created topics or both".into());
    }
    let bound = match &p.replicas {
        ReplicaRule::All => None,
        ReplicaRule::Exactly { count } => {
            if *count < 1 {
                return Err(format!("count must be at least 1, got {count}"));
            }
            Some(*count)
        }
        ReplicaRule::Brokers { ids } => {
            if ids.is_empty() {
                return Err("brokers or racks must not be empty for mode Brokers".into());
            }
            if ids.iter().collect::<BTreeSet<_>>().len() != ids.len() {
                return Err(format!("brokers {ids:?} names a broker twice"));
            }
            Some(ids.len() as i32)
        }
        ReplicaRule::Racks { racks } => {
            if racks.is_empty() || racks.iter().any(String::is_empty) {
                return Err("racks must name at least one rack, none empty".into());
            }
            None
        }
    };
    if let Some(m) = p.min_insync_replicas {
        if m < 1 {
            return Err(format!("min_insync_replicas must be at least 1, got {m}"));
        }
        if let Some(n) = bound
            && m > n
        {
            return Err(format!(
                "min_insync_replicas {m} exceeds the {n} replicas the policy keeps: acks=all writes could never succeed"
            ));
        }
    }
    if let Some(m) = p.max_per_rack
        && m < 1
    {
        return Err(format!("max_per_rack must be at least 1, got {m}"));
    }
    Ok(())
}

fn full_match_regex(value: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{value})$"))
}

enum Compiled {
    Literal(String),
    Prefix(String),
    Regex(regex::Regex),
    /// A regex that does not compile (refused when stored): matches nothing.
    Never,
}

impl Compiled {
    fn new(p: &NamePattern) -> Compiled {
        match p.kind {
            PatternType::Literal => Compiled::Literal(p.value.clone()),
            PatternType::Prefix => Compiled::Prefix(p.value.clone()),
            PatternType::Regex => {
                full_match_regex(&p.value).map_or(Compiled::Never, Compiled::Regex)
            }
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Compiled::Literal(v) => name == v,
            Compiled::Prefix(v) => name.starts_with(v.as_str()),
            Compiled::Regex(r) => r.is_match(name),
            Compiled::Never => false,
        }
    }
}

/// The stored policies with their patterns compiled, in precedence order:
/// highest priority first, then the oldest, then by name.
pub struct PolicySet<'a> {
    entries: Vec<(&'a MirrorPolicy, Vec<Compiled>, Vec<Compiled>)>,
}

impl<'a> PolicySet<'a> {
    pub fn new(policies: impl IntoIterator<Item = &'a MirrorPolicy>) -> Self {
        let mut entries: Vec<_> = policies
            .into_iter()
            .map(|p| {
                (
                    p,
                    p.topics.iter().map(Compiled::new).collect(),
                    p.exclude.iter().map(Compiled::new).collect(),
                )
            })
            .collect();
        entries.sort_by_key(|(p, _, _)| (Reverse(p.priority), p.created_ms, p.name.clone()));
        PolicySet { entries }
    }

    pub fn of(image: &'a MetadataImage) -> Self {
        Self::new(image.mirror_policies.values())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Policies that select `topic` and apply to its origin, in precedence order.
    fn matching(&self, topic: &str, origin: TopicOrigin) -> impl Iterator<Item = &'a MirrorPolicy> {
        self.entries
            .iter()
            .filter(move |(p, include, exclude)| {
                p.applies_to(origin)
                    && include.iter().any(|c| c.matches(topic))
                    && !exclude.iter().any(|c| c.matches(topic))
            })
            .map(|(p, _, _)| *p)
    }

    /// The one policy that governs `topic`: the first in precedence order.
    pub fn governing(&self, topic: &str, origin: TopicOrigin) -> Option<&'a MirrorPolicy> {
        self.matching(topic, origin).next()
    }

    /// Every matching policy with the governing policy's priority, when
    /// there is more than one (a tie; the first governs).
    pub fn ties(&self, topic: &str, origin: TopicOrigin) -> Vec<&'a MirrorPolicy> {
        let mut it = self.matching(topic, origin);
        let Some(first) = it.next() else {
            return vec![];
        };
        let mut tied = vec![first];
        tied.extend(it.take_while(|p| p.priority == first.priority));
        if tied.len() > 1 { tied } else { vec![] }
    }
}

/// What a policy requires of each governed partition now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub count: usize,
    /// Brokers a replica may be on.
    pub allowed: BTreeSet<BrokerId>,
    pub max_per_rack: Option<usize>,
    pub min_isr: Option<i32>,
}

/// The registered brokers as placement sees them, and the racks they are in.
pub struct Brokers<'a> {
    pub all: &'a [BrokerInfo],
    pub leaving: &'a BTreeSet<BrokerId>,
}

impl Brokers<'_> {
    fn rack_of(&self, id: BrokerId) -> Option<&str> {
        self.all
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.as_deref())
    }

    fn alive(&self, id: BrokerId) -> bool {
        self.all.iter().any(|b| b.id == id && b.alive) && !self.leaving.contains(&id)
    }
}

/// What `policy` asks for on these brokers, or why it cannot be met.
pub fn plan_requirement(policy: &MirrorPolicy, brokers: &Brokers) -> Result<Requirement, String> {
    let staying: BTreeSet<BrokerId> = brokers
        .all
        .iter()
        .map(|b| b.id)
        .filter(|b| !brokers.leaving.contains(b))
        .collect();
    let (count, allowed) = match &policy.replicas {
        ReplicaRule::All => (staying.len(), staying),
        ReplicaRule::Exactly { count } => (*count as usize, staying),
        ReplicaRule::Brokers { ids } => {
            if let Some(missing) = ids.iter().find(|b| !staying.contains(b)) {
                return Err(format!(
                    "{} names broker {missing}, which is not in the cluster (or is leaving it)",
                    policy.describe()
                ));
            }
            (ids.len(), ids.iter().copied().collect())
        }
        ReplicaRule::Racks { racks } => {
            let allowed: BTreeSet<BrokerId> = staying
                .into_iter()
                .filter(|b| {
                    brokers
                        .rack_of(*b)
                        .is_some_and(|r| racks.iter().any(|x| x == r))
                })
                .collect();
            (allowed.len(), allowed)
        }
    };
    if count == 0 {
        return Err(format!("{} selects no broker", policy.describe()));
    }
    Ok(Requirement {
        count,
        allowed,
        max_per_rack: policy.max_per_rack.map(|m| m.max(1) as usize),
        min_isr: policy.min_insync_replicas,
    })
}

/// Racks of `replicas` holding more than the cap: (rack, count).
fn over_cap(
    req: &Requirement,
    replicas: &[BrokerId],
    brokers: &Brokers,
) -> Option<(String, usize)> {
    let cap = req.max_per_rack?;
    let mut per_rack: BTreeMap<&str, usize> = BTreeMap::new();
    for r in replicas {
        if let Some(rack) = brokers.rack_of(*r) {
            *per_rack.entry(rack).or_default() += 1;
        }
    }
    per_rack
        .into_iter()
        .find(|(_, n)| *n > cap)
        .map(|(r, n)| (r.to_string(), n))
}

/// Why one partition's replica set breaks the requirement, if it does.
pub fn check_replicas(
    req: &Requirement,
    replicas: &[BrokerId],
    brokers: &Brokers,
) -> Option<String> {
    if replicas.len() != req.count {
        return Some(format!(
            "{} replica(s), the policy requires {}",
            replicas.len(),
            req.count
        ));
    }
    if let Some(b) = replicas.iter().find(|b| !req.allowed.contains(b)) {
        return Some(format!(
            "a replica on broker {b}, outside the brokers the policy allows {:?}",
            req.allowed
        ));
    }
    over_cap(req, replicas, brokers).map(|(rack, n)| {
        format!(
            "{n} replicas in rack {rack}, the policy allows {}",
            req.max_per_rack.unwrap_or(n)
        )
    })
}

/// The min.insync.replicas a governed topic should have: its current
/// `min_isr` raised to the policy's and capped at the replica count.
pub fn plan_min_isr(req: &Requirement, min_isr: i32) -> i32 {
    let hi = req.count as i32;
    let lo = req.min_isr.unwrap_or(1).min(hi);
    min_isr.clamp(lo.max(1), hi.max(1))
}

/// Why `topic` (with effective min-ISR `min_isr`) breaks the requirement:
/// the first offending partition and how many there are, or the min-ISR.
pub fn check_topic(
    req: &Requirement,
    topic: &TopicMeta,
    min_isr: i32,
    brokers: &Brokers,
) -> Option<String> {
    let bad: Vec<(i32, String)> = (0..topic.partitions)
        .filter_map(|p| check_replicas(req, topic.replicas(p), brokers).map(|why| (p, why)))
        .collect();
    if let Some((p, why)) = bad.first() {
        return Some(format!(
            "partition {p}: {why} ({} of {} partitions)",
            bad.len(),
            topic.partitions
        ));
    }
    match req.min_isr {
        Some(m) if min_isr < m => Some(format!(
            "min.insync.replicas {min_isr}, the policy requires at least {m}"
        )),
        _ if min_isr > req.count as i32 => Some(format!(
            "min.insync.replicas {min_isr} exceeds the {} replicas: acks=all writes fail",
            req.count
        )),
        _ => None,
    }
}

/// Replicas each broker holds now, for brokers in `of`.
pub fn replica_load(
    image: &MetadataImage,
    of: impl IntoIterator<Item = BrokerId>,
) -> BTreeMap<BrokerId, usize> {
    let mut load: BTreeMap<BrokerId, usize> = of.into_iter().map(|b| (b, 0)).collect();
    for t in image.topics.values() {
        for replicas in &t.assignments {
            for b in replicas {
                if let Some(n) = load.get_mut(b) {
                    *n += 1;
                }
            }
        }
    }
    load
}

/// The replica set partition `replicas` (led by `leader`, in sync `isr`)
/// moves to so that it meets `req`:
/// 1. replicas on brokers the policy does not allow go;
/// 2. while a rack holds more than `max_per_rack`, one of its replicas goes;
/// 3. while there are too many, one goes: out of sync first, never the
///    leader while another can go, the last in replica order first;
/// 4. while there are too few, a live allowed broker is added: one in a rack
///    the others do not use first, then the least loaded, then the lowest id.
///
/// `load` counts additions, so consecutive partitions spread.
pub fn plan_partition_target(
    req: &Requirement,
    replicas: &[BrokerId],
    leader: BrokerId,
    isr: &[BrokerId],
    brokers: &Brokers,
    load: &mut BTreeMap<BrokerId, usize>,
) -> Result<Vec<BrokerId>, String> {
    let mut keep: Vec<BrokerId> = replicas
        .iter()
        .copied()
        .filter(|b| req.allowed.contains(b))
        .collect();
    // The replica to drop among `candidates`: out of sync, then not the leader, then the last.
    let victim = |keep: &[BrokerId], candidates: &dyn Fn(BrokerId) -> bool| {
        let pick = |f: &dyn Fn(BrokerId) -> bool| {
            keep.iter().rev().copied().find(|b| candidates(*b) && f(*b))
        };
        pick(&|b| b != leader && !isr.contains(&b))
            .or_else(|| pick(&|b| b != leader))
            .or_else(|| pick(&|_| true))
    };
    while let Some((rack, _)) = over_cap(req, &keep, brokers) {
        let Some(v) = victim(&keep, &|b| brokers.rack_of(b) == Some(rack.as_str())) else {
            break;
        };
        keep.retain(|b| *b != v);
    }
    while keep.len() > req.count {
        let Some(v) = victim(&keep, &|_| true) else {
            break;
        };
        keep.retain(|b| *b != v);
    }
    while keep.len() < req.count {
        let used: BTreeSet<Option<&str>> = keep.iter().map(|b| brokers.rack_of(*b)).collect();
        let rack_full = |b: BrokerId| {
            req.max_per_rack.is_some_and(|cap| {
                brokers.rack_of(b).is_some_and(|r| {
                    keep.iter()
                        .filter(|k| brokers.rack_of(**k) == Some(r))
                        .count()
                        >= cap
                })
            })
        };
        let pick = req
            .allowed
            .iter()
            .copied()
            .filter(|b| !keep.contains(b) && brokers.alive(*b) && !rack_full(*b))
            .min_by_key(|b| {
                let rack = brokers.rack_of(*b);
                (
                    rack.is_some() && used.contains(&rack),
                    load.get(b).copied().unwrap_or(0),
                    *b,
                )
            });
        let Some(add) = pick else {
            return Err(format!(
                "the policy requires {} replicas on brokers {:?}{}; only {} can be placed on live brokers",
                req.count,
                req.allowed,
                req.max_per_rack
                    .map(|c| format!(" with at most {c} per rack"))
                    .unwrap_or_default(),
                keep.len()
            ));
        };
        *load.entry(add).or_default() += 1;
        keep.push(add);
    }
    Ok(keep)
}

/// Replica lists for `partitions` new partitions of a governed topic:
/// Kafka's rack-alternating placement over the live allowed brokers, each
/// partition then corrected for `max_per_rack`.
pub fn plan_placement(
    req: &Requirement,
    brokers: &Brokers,
    load: &mut BTreeMap<BrokerId, usize>,
    partitions: i32,
    start: usize,
) -> Result<Vec<Vec<BrokerId>>, String> {
    let eligible: Vec<BrokerInfo> = brokers
        .all
        .iter()
        .filter(|b| req.allowed.contains(&b.id))
        .map(|b| BrokerInfo {
            alive: brokers.alive(b.id),
            ..b.clone()
        })
        .collect();
    let placed = plan_replica_placement(&eligible, partitions, req.count as i32, start)
        .map_err(|e| format!("the policy requires {} replicas: {e}", req.count))?;
    placed
        .into_iter()
        .map(|replicas| {
            let leader = replicas.first().copied().unwrap_or(-1);
            plan_partition_target(req, &replicas, leader, &replicas, brokers, load)
        })
        .collect()
}

/// The controller's next step towards the policies with `on_existing:
/// Reconcile`, one topic at a time and only while no reassignment runs:
/// 1. a topic whose min.insync.replicas exceeds the replicas it will keep
///    lowers it first (so a shrink never blocks acks=all writes);
/// 2. otherwise a topic with partitions to move gets a reassignment for each
///    (target per [`plan_partition_target`]; new replicas are added now and
///    the old ones dropped by `plan_reassignment_completion` once the new
///    ones are in sync);
/// 3. otherwise a topic whose replicas comply gets the policy's min-ISR.
///
/// `min_isr_of` gives a topic's effective min.insync.replicas. Topics whose
/// policy cannot be met now are skipped (DescribeMirrorPolicies says why).
pub fn plan_policy_step(
    image: &MetadataImage,
    brokers: &Brokers,
    min_isr_of: impl Fn(&TopicMeta) -> i32,
) -> Vec<MetadataRecord> {
    if image.mirror_policies.is_empty() || image.topics.values().any(|t| !t.targets.is_empty()) {
        return vec![];
    }
    let policies = PolicySet::of(image);
    let mut load = replica_load(image, brokers.all.iter().map(|b| b.id));
    for t in image.topics.values() {
        let Some(policy) = policies.governing(&t.name, t.origin) else {
            continue;
        };
        if policy.on_existing != OnExisting::Reconcile {
            continue;
        }
        let Ok(req) = plan_requirement(policy, brokers) else {
            continue;
        };
        let min_isr = min_isr_of(t);
        let want_min_isr = plan_min_isr(&req, min_isr);
        let set_min_isr = || {
            let mut configs = t.configs.clone();
            configs.insert("min.insync.replicas".into(), want_min_isr.to_string());
            vec![MetadataRecord::TopicConfigsReplaced {
                name: t.name.clone(),
                configs,
            }]
        };
        if min_isr > want_min_isr {
            return set_min_isr();
        }
        let mut records = Vec::new();
        let mut possible = true;
        for p in 0..t.partitions {
            let replicas = t.replicas(p);
            if check_replicas(&req, replicas, brokers).is_none() {
                continue;
            }
            let st = t.state(p);
            match plan_partition_target(&req, replicas, st.leader, &st.isr, brokers, &mut load) {
                Ok(target) => {
                    let mut grown = replicas.to_vec();
                    grown.extend(target.iter().filter(|b| !replicas.contains(b)));
                    records.push(MetadataRecord::ReassignmentChanged {
                        topic: t.name.clone(),
                        partition: p,
                        target: Some(target),
                    });
                    if grown != replicas {
                        records.push(MetadataRecord::ReplicasChanged {
                            topic: t.name.clone(),
                            partition: p,
                            replicas: grown,
                        });
                    }
                }
                Err(_) => possible = false,
            }
        }
        if !possible {
            continue;
        }
        if !records.is_empty() {
            return records;
        }
        if min_isr != want_min_isr {
            return set_min_isr();
        }
    }
    vec![]
}

/// One policy's report (admin DescribeMirrorPolicies).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyReport {
    pub governed: Vec<String>,
    pub non_compliant: Vec<(String, String)>,
    /// (topic, partitions, partitions moving).
    pub reassignments: Vec<(String, i32, i32)>,
    pub ties: BTreeSet<String>,
    /// Replicas per partition it asks for now; 0 when it cannot be met.
    pub required: usize,
}

/// The report of every stored policy, by name.
pub fn describe_policies(
    image: &MetadataImage,
    brokers: &Brokers,
    min_isr_of: impl Fn(&TopicMeta) -> i32,
) -> BTreeMap<String, PolicyReport> {
    let policies = PolicySet::of(image);
    let mut reports: BTreeMap<String, PolicyReport> = BTreeMap::new();
    let mut requirements = BTreeMap::new();
    for p in image.mirror_policies.values() {
        let req = plan_requirement(p, brokers);
        reports.insert(
            p.name.clone(),
            PolicyReport {
                required: req.as_ref().map_or(0, |r| r.count),
                ..PolicyReport::default()
            },
        );
        requirements.insert(p.name.clone(), req);
    }
    for t in image.topics.values() {
        let tied = policies.ties(&t.name, t.origin);
        for a in &tied {
            if let Some(r) = reports.get_mut(&a.name) {
                r.ties.extend(
                    tied.iter()
                        .filter(|b| b.name != a.name)
                        .map(|b| b.name.clone()),
                );
            }
        }
        let Some(policy) = policies.governing(&t.name, t.origin) else {
            continue;
        };
        let Some(report) = reports.get_mut(&policy.name) else {
            continue;
        };
        report.governed.push(t.name.clone());
        let why = match &requirements[&policy.name] {
            Err(e) => Some(e.clone()),
            Ok(req) => check_topic(req, t, min_isr_of(t), brokers),
        };
        if let Some(why) = why {
            report.non_compliant.push((t.name.clone(), why));
        }
        if !t.targets.is_empty() {
            report
                .reassignments
                .push((t.name.clone(), t.partitions, t.targets.len() as i32));
        }
    }
    reports
}

#[cfg(test)]
mod tests;
