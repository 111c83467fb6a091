//! The choice of a target region among the candidates, and why each other
//! candidate lost.
//!
//! Eligible candidates come first. Among them, those whose health is
//! within `score_margin` of the best are "as good as the best"; they are
//! ordered by the operator's `standby_order` (listed before unlisted),
//! then a warm standby (something running) before a pilot light (nothing
//! running), then health, then response time. Eligible candidates clearly
//! less healthy follow, by health. Ineligible candidates come last.

use std::cmp::Ordering;

use rg_proto::v1::RegionCandidate;

use crate::plan::PlanError;

/// A pilot light: declared capacity with nothing running.
fn pilot_light(c: &RegionCandidate) -> bool {
    c.running_capacity == 0
}

fn standby_key(c: &RegionCandidate) -> u32 {
    if c.standby_rank == 0 {
        u32::MAX
    } else {
        c.standby_rank
    }
}

fn best_eligible_score(candidates: &[RegionCandidate]) -> Option<f64> {
    candidates
        .iter()
        .filter(|c| c.eligible)
        .map(|c| c.health_score)
        .max_by(f64::total_cmp)
}

/// Orders `candidates` best first.
pub fn rank(candidates: &mut [RegionCandidate], margin: f64) {
    let best = best_eligible_score(candidates).unwrap_or(0.0);
    let contender = |c: &RegionCandidate| c.eligible && c.health_score >= best - margin - 1e-9;
    candidates.sort_by(|a, b| {
        b.eligible
            .cmp(&a.eligible)
            .then(contender(b).cmp(&contender(a)))
            .then_with(|| {
                if contender(a) && contender(b) {
                    standby_key(a)
                        .cmp(&standby_key(b))
                        .then(pilot_light(a).cmp(&pilot_light(b)))
                } else {
                    Ordering::Equal
                }
            })
            .then(b.health_score.total_cmp(&a.health_score))
            .then(a.avg_response_time_us.cmp(&b.avg_response_time_us))
            .then(a.region.cmp(&b.region))
    });
}

/// Why `other` lost to `chosen`, in words.
fn why_lost(other: &RegionCandidate, chosen: &RegionCandidate, margin: f64) -> String {
    if !other.eligible {
        return format!("not eligible: {}", other.note);
    }
    if other.health_score < chosen.health_score - margin - 1e-9 {
        return format!(
            "health {:.2} is clearly below {}'s {:.2}",
            other.health_score, chosen.region, chosen.health_score
        );
    }
    if standby_key(chosen) < standby_key(other) {
        return if other.standby_rank == 0 {
            format!("{} is in standby_order, it is not", chosen.region)
        } else {
            format!("{} comes before it in standby_order", chosen.region)
        };
    }
    if pilot_light(other) && !pilot_light(chosen) {
        return format!(
            "a pilot light (nothing running); {} is a warm standby",
            chosen.region
        );
    }
    if other.health_score < chosen.health_score {
        return format!(
            "health {:.2} is below {}'s {:.2}",
            other.health_score, chosen.region, chosen.health_score
        );
    }
    format!(
        "{:.1} ms average against {}'s {:.1} ms",
        other.avg_response_time_us as f64 / 1000.0,
        chosen.region,
        chosen.avg_response_time_us as f64 / 1000.0
    )
}

/// Why `chosen` won, in words.
fn why_chosen(chosen: &RegionCandidate) -> String {
    let mut why = Vec::new();
    if chosen.standby_rank > 0 {
        why.push(format!("number {} in standby_order", chosen.standby_rank));
    }
    match chosen.running_capacity {
        0 => why.push("a pilot light (nothing running now)".into()),
        n if n > 0 => why.push(format!("a warm standby ({n} running)")),
        _ => {}
    }
    why.push(chosen.note.clone());
    why.join(", ")
}

/// Marks `target` chosen and every other candidate with why it lost;
/// returns the plan's rationale.
pub fn verdicts(candidates: &mut [RegionCandidate], target: &str, margin: f64) -> String {
    let Some(chosen) = candidates.iter().find(|c| c.region == target).cloned() else {
        return String::new();
    };
    for c in candidates.iter_mut() {
        c.verdict = if c.region == target {
            format!("chosen: {}", why_chosen(&chosen))
        } else {
            why_lost(c, &chosen, margin)
        };
    }
    let others: Vec<String> = candidates
        .iter()
        .filter(|c| c.region != target)
        .map(|c| format!("{} ({})", c.region, c.verdict))
        .collect();
    if others.is_empty() {
        format!("{target}: {}", why_chosen(&chosen))
    } else {
        format!(
            "{target}: {}; not chosen: {}",
            why_chosen(&chosen),
            others.join("; ")
        )
    }
}

/// The error when no candidate can take the traffic, naming each.
pub fn none_can(candidates: &[RegionCandidate]) -> PlanError {
    let why = candidates
        .iter()
        .map(|c| format!("{}: {}", c.region, c.note))
        .collect::<Vec<_>>()
        .join("; ");
    PlanError::NoTarget(if why.is_empty() {
        "no region is known".into()
    } else {
        why
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(region: &str, score: f64, running: i64, rank: u32) -> RegionCandidate {
        RegionCandidate {
            region: region.into(),
            health_score: score,
            avg_response_time_us: 1000,
            eligible: true,
            note: format!("health {score:.2}"),
            verdict: String::new(),
            standby_rank: rank,
            running_capacity: running,
            ..Default::default()
        }
    }

    fn order(cs: &[RegionCandidate]) -> Vec<&str> {
        cs.iter().map(|c| c.region.as_str()).collect()
    }

    #[test]
    fn a_warm_standby_comes_before_a_slightly_healthier_pilot_light() {
        let mut cs = vec![c("eu-west-1", 1.0, 0, 0), c("us-west-2", 0.99, 2, 0)];
        rank(&mut cs, 0.1);
        assert_eq!(order(&cs), ["us-west-2", "eu-west-1"]);
        let why = verdicts(&mut cs, "us-west-2", 0.1);
        assert!(why.contains("a warm standby (2 running)"), "{why}");
        assert_eq!(
            cs[1].verdict,
            "a pilot light (nothing running); us-west-2 is a warm standby"
        );
        // Clearly less healthy, the warm standby loses.
        let mut cs = vec![c("eu-west-1", 1.0, 0, 0), c("us-west-2", 0.85, 2, 0)];
        rank(&mut cs, 0.1);
        assert_eq!(order(&cs), ["eu-west-1", "us-west-2"]);
        verdicts(&mut cs, "eu-west-1", 0.1);
        assert!(cs[1].verdict.contains("clearly below"), "{}", cs[1].verdict);
    }

    #[test]
    fn the_standby_order_decides_among_candidates_as_good_as_the_best() {
        let mut cs = vec![
            c("us-west-2", 1.0, 2, 2),
            c("eu-west-1", 0.95, 0, 1),
            c("ap-south-1", 1.0, 5, 0),
        ];
        rank(&mut cs, 0.1);
        assert_eq!(order(&cs), ["eu-west-1", "us-west-2", "ap-south-1"]);
        verdicts(&mut cs, "eu-west-1", 0.1);
        assert_eq!(cs[1].verdict, "eu-west-1 comes before it in standby_order");
        assert_eq!(cs[2].verdict, "eu-west-1 is in standby_order, it is not");
    }

    #[test]
    fn ineligible_candidates_come_last_with_their_reason() {
        let mut bad = c("us-east-1", 1.0, 4, 1);
        bad.eligible = false;
        bad.note = "the failing region".into();
        let mut cs = vec![bad, c("us-west-2", 0.9, -1, 0)];
        rank(&mut cs, 0.1);
        assert_eq!(order(&cs), ["us-west-2", "us-east-1"]);
        verdicts(&mut cs, "us-west-2", 0.1);
        assert_eq!(cs[1].verdict, "not eligible: the failing region");
    }
}
