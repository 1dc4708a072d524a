//! The tenants section of the report page: per key, what the cluster
//! admitted per wall-clock minute and in the worst sliding minute against
//! its limits, by node, during each fault window, and the credits ledger.

use std::fmt::Write as _;

use crate::tenants::{TenantsReport, TopupResult};

/// The Markdown section of a tenants case.
pub fn section(t: &TenantsReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Tenants\n\nAdmitted = answered 2xx, counted cluster-wide by due time; minutes are UTC wall-clock minutes (the first and last partial).\n"
    );
    if !t.topups.is_empty() {
        let count =
            |f: &dyn Fn(&TopupResult) -> bool| t.topups.iter().filter(|u| f(&u.result)).count();
        let _ = writeln!(
            s,
            "Top-ups: {} made ({} retried); {} acknowledged ({} of them `applied: false`, an earlier try had counted), {} rejected, {} ambiguous.\n",
            t.topups.len(),
            t.topups.iter().filter(|u| u.tries > 1).count(),
            count(&|r| matches!(r, TopupResult::Acked { .. })),
            count(&|r| matches!(r, TopupResult::Acked { applied: false })),
            count(&|r| matches!(r, TopupResult::Rejected(_))),
            count(&|r| matches!(r, TopupResult::Ambiguous(_))),
        );
    }
    for k in &t.keys {
        let limit = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        let _ = writeln!(
            s,
            "### Key `{}` (rpm {}, tpm {})\n\n{} sent, {} admitted, refused {:?}, {} failed otherwise; admitted by node: {:?}.\n\nWorst minute: {} requests wall-clock, {} sliding; {} tokens wall-clock, {} sliding.\n\n| minute (UTC s) | covered s | requests | tokens |\n|---|---|---|---|",
            k.key,
            limit(k.rpm),
            limit(k.tpm),
            k.offered,
            k.admitted,
            k.refused,
            k.failed,
            k.admitted_by_node,
            k.worst_clock_minute_requests,
            k.worst_sliding_minute_requests,
            k.worst_clock_minute_tokens,
            k.worst_sliding_minute_tokens
        );
        for m in &k.minutes {
            let _ = writeln!(
                s,
                "| {:02}:{:02} | {:.1} | {} | {} |",
                m.unix_s % 86_400 / 3_600,
                m.unix_s % 3_600 / 60,
                m.covered_s,
                m.requests,
                m.tokens
            );
        }
        for w in &k.windows {
            let _ = writeln!(
                s,
                "\nDuring `{}` on {} ({:.1}–{:.1} s): {} admitted ({:?}){}.",
                w.label,
                w.target,
                w.start_s,
                w.end_s,
                w.admitted,
                w.admitted_by_node,
                w.rpm_pro_rata
                    .map_or(String::new(), |r| format!(", rpm pro rata {r:.0}"))
            );
        }
        if let Some(c) = &k.credits {
            let _ = writeln!(
                s,
                "\nCredits: opening {:.6} USD, {} acknowledged top-ups ({:.6} USD), {} ambiguous ({:.6} USD); answered cost {:.6} USD; nodes agree: {}.\n\n| node | added_usd | spent_usd | balance_usd |\n|---|---|---|---|",
                c.opening_usd,
                c.acked_topups,
                c.acked_usd,
                c.ambiguous_topups,
                c.ambiguous_usd,
                c.answered_cost_usd,
                c.nodes_agree
            );
            for l in &c.ledgers {
                let _ = writeln!(
                    s,
                    "| n{} | {:.6} | {:.6} | {:.6} |",
                    l.node, l.added_usd, l.spent_usd, l.balance_usd
                );
            }
        }
        if let Some(u) = &k.usage {
            let _ = writeln!(
                s,
                "\nUsage ledger (today): {} requests, {} tokens, {:.6} USD.",
                u.requests, u.tokens, u.cost_usd
            );
        }
    }
    s
}
