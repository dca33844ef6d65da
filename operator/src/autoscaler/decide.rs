//! The autoscaler's decision: given a group's lag, the workload's replicas and
//! what the ConsumerAutoscaler remembers (recent recommendations, recent
//! scales, the last time it had work), how many replicas the workload should
//! have now. Pure: no I/O, no clock; `reconcile` gathers the input, writes the
//! scale subresource when the answer differs and keeps the memory in status.
//!
//! [`decide`], in order:
//! 1. paused (annotation), or the lag cannot be read: keep the replicas;
//! 2. the recommendation: ceil(total lag / lagPerReplica), raised so that the
//!    backlog drains within `drainWithinSeconds` at the consume rate measured
//!    per replica, at least 1 while the lag is above `activationLag`;
//! 3. capped by the partitions of the topics (a consumer beyond them idles),
//!    then clamped to `minReplicas..=maxReplicas` (ScalingLimited says which);
//! 4. stabilization like the HorizontalPodAutoscaler: up to the lowest
//!    recommendation of the scale-up window, down to the highest of the
//!    scale-down window; step limits (replicas per period);
//! 5. to zero only after `cooldownSeconds` without lag above `activationLag`;
//! 6. frozen (the MessageCluster rolling or a broker down): never down, never
//!    to zero; up is still allowed, the lag was read.

/// How a partition the group never committed counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetPolicy {
    Earliest,
    Latest,
}

/// The group's lag, as the broker computed it from one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lag {
    pub total: i64,
    /// Partitions of the topics consumed.
    pub partitions: i32,
    /// Sum of the committed offsets (partitions with a commit): its growth is the consume rate.
    pub committed_sum: i64,
}

/// At most `replicas` added (or removed) within any `period_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepLimit {
    pub replicas: i32,
    pub period_seconds: i64,
}

/// Scaling rules of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: i64,
    pub step: Option<StepLimit>,
}

/// The spec, as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub lag_per_replica: i64,
    pub activation_lag: i64,
    pub drain_within_seconds: Option<i64>,
    pub scale_up: Rules,
    pub scale_down: Rules,
    pub cooldown_seconds: i64,
}

/// A recommendation made at `at` (unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recommendation {
    pub at: i64,
    pub replicas: i32,
}

/// A scale written at `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    pub at: i64,
    pub from: i32,
    pub to: i32,
}

/// What the autoscaler remembers between evaluations (kept in status).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Memory {
    pub recommendations: Vec<Recommendation>,
    pub scales: Vec<ScaleEvent>,
    /// Last time the lag was above `activationLag`.
    pub last_active: Option<i64>,
    /// Records per second one replica consumed, as last measured.
    pub rate_per_replica: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input<'a> {
    pub now: i64,
    pub policy: &'a Policy,
    pub current: i32,
    /// None: the lag could not be read (the reason is in `frozen`).
    pub lag: Option<Lag>,
    /// Why scaling down is not safe now (cluster rolling, broker down, lag unreadable).
    pub frozen: Option<String>,
    pub paused: bool,
    pub memory: &'a Memory,
}

/// Why the recommendation was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// More consumers than partitions would idle.
    Partitions(i32),
    MaxReplicas(i32),
    MinReplicas(i32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The replicas the workload should have now.
    pub replicas: i32,
    /// The recommendation before stabilization, step limits, cooldown and freezing.
    pub recommended: i32,
    pub limit: Option<Limit>,
    /// Lag above `activationLag`.
    pub active: bool,
    /// Why `replicas` is what it is, for the Event and status.
    pub reason: String,
    pub memory: Memory,
}

fn ceil_div(a: i64, b: i64) -> i64 {
    if b <= 0 { 0 } else { (a.max(0) + b - 1) / b }
}

fn to_i32(n: i64) -> i32 {
    i32::try_from(n.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
}

/// The replicas the workload should have now; see the module doc.
pub fn decide(input: &Input<'_>) -> Decision {
    let policy = input.policy;
    let current = input.current.max(0);
    let mut memory = input.memory.clone();
    let keep = |memory: Memory, reason: String, active: bool| Decision {
        replicas: current,
        recommended: current,
        limit: None,
        active,
        reason,
        memory,
    };
    // 1.
    if input.paused {
        return keep(
            memory,
            "paused by the tideway.dev/autoscaler-paused annotation".to_owned(),
            false,
        );
    }
    let Some(lag) = &input.lag else {
        let why = input
            .frozen
            .clone()
            .unwrap_or_else(|| "the lag cannot be read".to_owned());
        return keep(memory, format!("keeping {current} replicas: {why}"), false);
    };
    // 2.
    let active = lag.total > policy.activation_lag;
    if active {
        memory.last_active = Some(input.now);
    }
    let by_lag = ceil_div(lag.total, policy.lag_per_replica);
    let by_drain = match (policy.drain_within_seconds, memory.rate_per_replica) {
        (Some(within), Some(rate)) if within > 0 && rate > 0.0 => {
            ((lag.total.max(0) as f64) / (rate * within as f64)).ceil() as i64
        }
        _ => 0,
    };
    let mut wanted = by_lag.max(by_drain);
    if active {
        wanted = wanted.max(1);
    } else if current == 0 {
        // At or below activationLag a workload at zero stays at zero.
        wanted = 0;
    }
    let mut why = if by_drain > by_lag {
        format!(
            "lag {} drains within {} s at {:.0} records/s per replica with {by_drain}",
            lag.total,
            policy.drain_within_seconds.unwrap_or_default(),
            memory.rate_per_replica.unwrap_or_default()
        )
    } else {
        format!(
            "lag {} / lagPerReplica {} = {by_lag}",
            lag.total, policy.lag_per_replica
        )
    };
    // 3.
    let mut limit = None;
    let mut recommended = to_i32(wanted);
    if lag.partitions > 0 && recommended > lag.partitions {
        recommended = lag.partitions;
        limit = Some(Limit::Partitions(lag.partitions));
    }
    if recommended > policy.max_replicas {
        recommended = policy.max_replicas;
        limit = Some(Limit::MaxReplicas(policy.max_replicas));
    }
    if recommended < policy.min_replicas {
        recommended = policy.min_replicas;
        limit = Some(Limit::MinReplicas(policy.min_replicas));
    }
    match limit {
        Some(Limit::Partitions(n)) => why.push_str(&format!(", capped at {n} partitions")),
        Some(Limit::MaxReplicas(n)) => why.push_str(&format!(", capped at maxReplicas {n}")),
        Some(Limit::MinReplicas(n)) => why.push_str(&format!(", raised to minReplicas {n}")),
        None => {}
    }
    // 4. Recommendations are remembered for the longest window.
    let horizon = policy
        .scale_up
        .stabilization_window_seconds
        .max(policy.scale_down.stabilization_window_seconds);
    memory
        .recommendations
        .retain(|r| input.now - r.at < horizon);
    memory.recommendations.push(Recommendation {
        at: input.now,
        replicas: recommended,
    });
    let within = |window: i64| {
        memory
            .recommendations
            .iter()
            .filter(move |r| input.now - r.at < window || r.at == input.now)
            .map(|r| r.replicas)
    };
    let mut replicas = current;
    if recommended > current {
        let stable = within(policy.scale_up.stabilization_window_seconds)
            .min()
            .unwrap_or(recommended);
        replicas = stable.max(current);
        if let Some(step) = policy.scale_up.step {
            let added: i32 = memory
                .scales
                .iter()
                .filter(|s| input.now - s.at < step.period_seconds && s.to > s.from)
                .map(|s| s.to - s.from)
                .sum();
            replicas = replicas.min(current + (step.replicas - added).max(0));
        }
        if replicas < recommended {
            why.push_str(&format!(
                "; {replicas} for now (scale-up stabilization or step limit)"
            ));
        }
    } else if recommended < current {
        let stable = within(policy.scale_down.stabilization_window_seconds)
            .max()
            .unwrap_or(recommended);
        replicas = stable.min(current);
        if let Some(step) = policy.scale_down.step {
            let removed: i32 = memory
                .scales
                .iter()
                .filter(|s| input.now - s.at < step.period_seconds && s.to < s.from)
                .map(|s| s.from - s.to)
                .sum();
            replicas = replicas.max(current - (step.replicas - removed).max(0));
        }
        // 5.
        if replicas == 0 {
            let quiet_since = memory.last_active.unwrap_or(i64::MIN);
            if input.now.saturating_sub(quiet_since) < policy.cooldown_seconds {
                replicas = 1;
                why.push_str(&format!(
                    "; 1 until {} s without lag above activationLag {} (cooldown)",
                    policy.cooldown_seconds, policy.activation_lag
                ));
            }
        }
        if replicas > recommended && !why.contains("cooldown") {
            why.push_str(&format!(
                "; {replicas} for now (scale-down stabilization or step limit)"
            ));
        }
        // 6.
        if let Some(frozen) = &input.frozen {
            replicas = current;
            why = format!("keeping {current} replicas, not scaling down: {frozen}");
        }
    }
    if replicas != current {
        memory.scales.push(ScaleEvent {
            at: input.now,
            from: current,
            to: replicas,
        });
    }
    let longest_step = [policy.scale_up.step, policy.scale_down.step]
        .iter()
        .flatten()
        .map(|s| s.period_seconds)
        .max()
        .unwrap_or(0);
    memory.scales.retain(|s| input.now - s.at < longest_step);
    Decision {
        replicas,
        recommended,
        limit,
        active,
        reason: why,
        memory,
    }
}

/// Records per second one replica consumed between two samples of the
/// group's committed offsets, when the replicas did not change between them
/// (a replica starting up would read as a slow one). None when nothing can be
/// said: no replicas, no time passed, or offsets went back (a reset).
pub fn rate_per_replica(
    committed_before: i64,
    committed_now: i64,
    seconds: f64,
    replicas: i32,
) -> Option<f64> {
    if replicas <= 0 || seconds <= 0.0 || committed_now < committed_before {
        return None;
    }
    Some((committed_now - committed_before) as f64 / seconds / f64::from(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            min_replicas: 0,
            max_replicas: 10,
            lag_per_replica: 10_000,
            activation_lag: 0,
            drain_within_seconds: None,
            scale_up: Rules {
                stabilization_window_seconds: 0,
                step: None,
            },
            scale_down: Rules {
                stabilization_window_seconds: 300,
                step: None,
            },
            cooldown_seconds: 300,
        }
    }

    fn lag(total: i64, partitions: i32) -> Option<Lag> {
        Some(Lag {
            total,
            partitions,
            committed_sum: 0,
        })
    }

    fn run(policy: &Policy, current: i32, lag: Option<Lag>, memory: &Memory, now: i64) -> Decision {
        decide(&Input {
            now,
            policy,
            current,
            lag,
            frozen: None,
            paused: false,
            memory,
        })
    }

    #[test]
    fn a_backlog_scales_from_zero_capped_by_the_partitions() {
        let d = run(&policy(), 0, lag(200_000, 6), &Memory::default(), 1000);
        assert_eq!(d.replicas, 6);
        assert_eq!(d.recommended, 6);
        assert_eq!(d.limit, Some(Limit::Partitions(6)));
        assert!(d.active);
        assert!(d.reason.contains("capped at 6 partitions"), "{}", d.reason);
        assert_eq!(d.memory.last_active, Some(1000));
    }

    #[test]
    fn desired_is_total_lag_over_lag_per_replica_rounded_up_and_capped_at_max() {
        let p = policy();
        assert_eq!(
            run(&p, 1, lag(30_001, 100), &Memory::default(), 0).replicas,
            4
        );
        let d = run(&p, 1, lag(1_000_000, 100), &Memory::default(), 0);
        assert_eq!((d.replicas, d.limit), (10, Some(Limit::MaxReplicas(10))));
        // a little lag still needs one consumer
        assert_eq!(run(&p, 0, lag(5, 6), &Memory::default(), 0).replicas, 1);
    }

    #[test]
    fn activation_lag_keeps_a_workload_at_zero() {
        let p = Policy {
            activation_lag: 50,
            ..policy()
        };
        let d = run(&p, 0, lag(50, 6), &Memory::default(), 0);
        assert_eq!((d.replicas, d.active), (0, false));
        assert_eq!(run(&p, 0, lag(51, 6), &Memory::default(), 0).replicas, 1);
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window_then_the_cooldown_to_zero() {
        let p = Policy {
            scale_down: Rules {
                stabilization_window_seconds: 60,
                step: None,
            },
            cooldown_seconds: 120,
            ..policy()
        };
        // backlog at t=0 with 6 replicas
        let mut m = run(&p, 0, lag(200_000, 6), &Memory::default(), 0).memory;
        // drained at t=30: the window still holds the 6 of t=0
        let d = run(&p, 6, lag(0, 6), &m, 30);
        assert_eq!(d.replicas, 6);
        m = d.memory;
        // t=70: the 6 left the window; to zero would need the cooldown: 1
        let d = run(&p, 6, lag(0, 6), &m, 70);
        assert_eq!(d.replicas, 1, "{}", d.reason);
        assert!(d.reason.contains("cooldown"), "{}", d.reason);
        m = d.memory;
        // t=119: still cooling down
        let d = run(&p, 1, lag(0, 6), &m, 119);
        assert_eq!(d.replicas, 1);
        m = d.memory;
        // t=120: 120 s since the lag was last above activationLag
        let d = run(&p, 1, lag(0, 6), &m, 120);
        assert_eq!(d.replicas, 0, "{}", d.reason);
    }

    #[test]
    fn scale_up_is_immediate_by_default_and_stabilized_when_asked() {
        let p = policy();
        assert_eq!(
            run(&p, 2, lag(80_000, 12), &Memory::default(), 0).replicas,
            8
        );
        let slow = Policy {
            scale_up: Rules {
                stabilization_window_seconds: 60,
                step: None,
            },
            ..policy()
        };
        let m = run(&slow, 2, lag(20_000, 12), &Memory::default(), 0).memory;
        // a spike at t=10: the lowest recommendation in the window (2) wins
        let d = run(&slow, 2, lag(80_000, 12), &m, 10);
        assert_eq!((d.replicas, d.recommended), (2, 8));
    }

    #[test]
    fn step_limits_bound_the_change_per_period() {
        let p = Policy {
            scale_up: Rules {
                stabilization_window_seconds: 0,
                step: Some(StepLimit {
                    replicas: 2,
                    period_seconds: 60,
                }),
            },
            ..policy()
        };
        let d = run(&p, 0, lag(100_000, 12), &Memory::default(), 0);
        assert_eq!(d.replicas, 2);
        let d = run(&p, 2, lag(100_000, 12), &d.memory, 30);
        assert_eq!(d.replicas, 2, "2 added in the last 60 s already");
        let d = run(&p, 2, lag(100_000, 12), &d.memory, 60);
        assert_eq!(d.replicas, 4);
    }

    #[test]
    fn frozen_never_scales_down_or_to_zero_but_may_scale_up() {
        let p = Policy {
            scale_down: Rules {
                stabilization_window_seconds: 0,
                step: None,
            },
            cooldown_seconds: 0,
            ..policy()
        };
        // KEDA #4098: scaled a workload to zero during a broker replacement
        let frozen = |current, lag| {
            decide(&Input {
                now: 1000,
                policy: &p,
                current,
                lag,
                frozen: Some("MessageCluster demo is rolling".to_owned()),
                paused: false,
                memory: &Memory::default(),
            })
        };
        let d = frozen(4, Some(Lag::default()));
        assert_eq!(d.replicas, 4);
        assert!(d.reason.contains("rolling"), "{}", d.reason);
        assert_eq!(frozen(2, None).replicas, 2, "lag unreadable: keep");
        assert_eq!(frozen(0, None).replicas, 0);
        assert_eq!(frozen(2, lag(60_000, 12)).replicas, 6, "up is allowed");
    }

    #[test]
    fn paused_keeps_the_replicas() {
        let p = policy();
        let d = decide(&Input {
            now: 0,
            policy: &p,
            current: 3,
            lag: lag(1_000_000, 12),
            frozen: None,
            paused: true,
            memory: &Memory::default(),
        });
        assert_eq!(d.replicas, 3);
        assert!(d.reason.contains("paused"));
    }

    #[test]
    fn keda_2612_2033_a_group_that_never_committed_with_latest_has_no_lag() {
        // The broker counts never-committed partitions as 0 under `latest`; the
        // decision then neither scales up to the maximum nor keeps replicas.
        let d = run(&policy(), 0, lag(0, 6), &Memory::default(), 0);
        assert_eq!((d.replicas, d.active), (0, false));
    }

    #[test]
    fn min_replicas_is_kept_and_said() {
        let p = Policy {
            min_replicas: 2,
            ..policy()
        };
        let d = run(&p, 2, lag(0, 6), &Memory::default(), 0);
        assert_eq!((d.replicas, d.limit), (2, Some(Limit::MinReplicas(2))));
    }

    #[test]
    fn drain_within_raises_the_replicas_from_the_measured_rate() {
        let p = Policy {
            drain_within_seconds: Some(60),
            ..policy()
        };
        let m = Memory {
            rate_per_replica: Some(100.0),
            ..Memory::default()
        };
        // 30,000 / 10,000 = 3 by lag; at 100/s per replica, 60 s needs 5
        let d = run(&p, 3, lag(30_000, 12), &m, 0);
        assert_eq!(d.replicas, 5, "{}", d.reason);
        assert!(d.reason.contains("drains within 60 s"), "{}", d.reason);
    }

    #[test]
    fn rate_is_measured_per_replica_and_never_from_a_reset() {
        assert_eq!(rate_per_replica(1000, 4000, 10.0, 3), Some(100.0));
        assert_eq!(rate_per_replica(4000, 1000, 10.0, 3), None);
        assert_eq!(rate_per_replica(0, 10, 10.0, 0), None);
    }
}
