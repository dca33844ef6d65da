//! Restart risk: may a broker stop now without making acknowledged writes
//! unavailable? Pure; the admin service feeds it partition states.
//!
//! For every partition with a replica on broker B (Strimzi's rule, which its
//! users run in production):
//! 1. a partition whose replication factor is at most its min.insync.replicas
//!    can never be restarted safely, so it is reported but does not block;
//! 2. ISR < min-ISR and B holds a replica: already under min-ISR, blocks;
//! 3. B leads and no other replica is in sync: the partition goes offline, blocks;
//! 4. ISR == min-ISR and B is in the ISR: stopping B stops acks=all writes, blocks.

use tideway_admin_api::v1::{PartitionState, RestartRiskResponse};

pub fn plan_restart(broker: i32, partitions: &[PartitionState]) -> RestartRiskResponse {
    let mut out = RestartRiskResponse {
        broker,
        safe: true,
        ..Default::default()
    };
    let mut never_safe = 0usize;
    for p in partitions.iter().filter(|p| p.replicas.contains(&broker)) {
        let rf = p.replicas.len() as i32;
        let isr = p.isr.len() as i32;
        let in_isr = p.isr.contains(&broker);
        if rf <= p.min_insync_replicas {
            never_safe += 1;
            out.never_safe.push(p.clone());
            if p.leader == broker && !p.isr.iter().any(|&r| r != broker) {
                out.would_go_offline.push(p.clone());
            }
            continue;
        }
        if isr < p.min_insync_replicas {
            out.already_under_min_isr.push(p.clone());
            out.safe = false;
        } else if p.leader == broker && !p.isr.iter().any(|&r| r != broker) {
            out.would_go_offline.push(p.clone());
            out.safe = false;
        } else if isr == p.min_insync_replicas && in_isr {
            out.would_go_under_min_isr.push(p.clone());
            out.safe = false;
        }
    }
    out.reason = if !out.safe {
        format!(
            "stopping broker {broker} now would stop acks=all writes or leave partitions without a leader: {} already under min-ISR, {} would go under min-ISR, {} would go offline",
            out.already_under_min_isr.len(),
            out.would_go_under_min_isr.len(),
            out.would_go_offline.len()
        )
    } else if never_safe > 0 {
        format!(
            "{never_safe} partitions have a replication factor at most their min.insync.replicas; no restart order keeps them available, so they do not block"
        )
    } else {
        "every partition keeps min.insync.replicas and a leader without this broker".into()
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(replicas: &[i32], isr: &[i32], leader: i32, min_isr: i32) -> PartitionState {
        PartitionState {
            topic: "t".into(),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            min_insync_replicas: min_isr,
            ..Default::default()
        }
    }

    #[test]
    fn a_full_isr_above_min_isr_is_safe() {
        let r = plan_restart(1, &[p(&[0, 1, 2], &[0, 1, 2], 1, 2)]);
        assert!(r.safe, "{}", r.reason);
    }

    #[test]
    fn isr_at_min_isr_with_the_broker_in_it_blocks() {
        let r = plan_restart(1, &[p(&[0, 1, 2], &[0, 1], 0, 2)]);
        assert!(!r.safe);
        assert_eq!(r.would_go_under_min_isr.len(), 1);
        // A broker outside that ISR may restart: it is the one catching up.
        assert!(plan_restart(2, &[p(&[0, 1, 2], &[0, 1], 0, 2)]).safe);
    }

    #[test]
    fn already_under_min_isr_blocks_every_replica_holder() {
        let r = plan_restart(2, &[p(&[0, 1, 2], &[0], 0, 2)]);
        assert!(!r.safe);
        assert_eq!(r.already_under_min_isr.len(), 1);
    }

    #[test]
    fn a_sole_in_sync_leader_would_go_offline() {
        let r = plan_restart(0, &[p(&[0, 1, 2], &[0], 0, 1)]);
        assert!(!r.safe);
        assert_eq!(r.would_go_offline.len(), 1);
    }

    #[test]
    fn rf_at_most_min_isr_is_reported_but_does_not_block() {
        let r = plan_restart(0, &[p(&[0], &[0], 0, 1)]);
        assert!(r.safe, "{}", r.reason);
        assert_eq!(r.would_go_offline.len(), 1);
        assert_eq!(r.never_safe.len(), 1);
        assert!(r.reason.contains("do not block"));
    }

    #[test]
    fn partitions_elsewhere_are_ignored() {
        assert!(plan_restart(5, &[p(&[0, 1], &[0], 0, 2)]).safe);
    }
}
