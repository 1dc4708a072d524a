//! Reading the usage ledger: totals per key over a range of days, grouped
//! by day, model or upstream, for the admin API, the CLI, the dashboard
//! and a key's own `GET /v1/usage`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Counters, UsageBucket};
use crate::calendar::{civil_from_days, days_from_civil};

/// What the usage rows are grouped by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One row per key and day.
    #[default]
    Day,
    /// One row per key and model.
    Model,
    /// One row per key and upstream.
    Upstream,
}

/// Which cells to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageQuery {
    /// Only this key; `None`: every key.
    pub key: Option<String>,
    /// First day included (days since 1970-01-01); `None`: from the first.
    pub from: Option<u32>,
    /// Last day included; `None`: up to the newest.
    pub to: Option<u32>,
    /// How rows are grouped.
    pub by: GroupBy,
}

/// One row of a usage answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    /// The key holder's name.
    pub key: String,
    /// The day, model or upstream, as the query grouped by (a day as
    /// `YYYY-MM-DD`).
    pub group: String,
    /// What was used.
    pub counters: Counters,
}

/// The rows a query asks for, ordered by key then group.
pub fn usage(cells: &BTreeMap<UsageBucket, Counters>, q: &UsageQuery) -> Vec<UsageRow> {
    let mut rows: BTreeMap<(String, String), Counters> = BTreeMap::new();
    for (cell, counters) in cells {
        if q.key.as_ref().is_some_and(|k| k != &cell.key)
            || q.from.is_some_and(|from| cell.day < from)
            || q.to.is_some_and(|to| cell.day > to)
        {
            continue;
        }
        let group = match q.by {
            GroupBy::Day => day_to_date(cell.day),
            GroupBy::Model => cell.model.clone(),
            GroupBy::Upstream => cell.upstream.clone(),
        };
        rows.entry((cell.key.clone(), group))
            .or_default()
            .add(counters);
    }
    rows.into_iter()
        .map(|((key, group), counters)| UsageRow {
            key,
            group,
            counters,
        })
        .collect()
}

/// A day number as `YYYY-MM-DD` (UTC).
pub fn day_to_date(day: u32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD` as a day number, or `None` when it is not a valid date
/// from 1970 on.
pub fn date_to_day(date: &str) -> Option<u32> {
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    if !(y.bytes().chain(m.bytes()).chain(d.bytes())).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let day = u32::try_from(days_from_civil(y, m, d)).ok()?;
    // 2023-02-31 and the like do not round-trip.
    (day_to_date(day) == date).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(day_to_date(0), "1970-01-01");
        assert_eq!(date_to_day("1970-01-01"), Some(0));
        assert_eq!(date_to_day("2026-11-30"), Some(20_787));
        assert_eq!(day_to_date(20_787), "2026-11-30");
        assert_eq!(date_to_day("2024-02-29"), Some(19_782));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "1969-12-31",
            "x",
            "",
            "2026-11-30-1",
            "+026-11-30",
        ] {
            assert_eq!(date_to_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn rows_group_and_filter() {
        let cell = |key: &str, day, model: &str, upstream: &str| UsageBucket {
            key: key.into(),
            day,
            model: model.into(),
            upstream: upstream.into(),
        };
        let one = Counters {
            requests: 1,
            input_tokens: 10,
            output_tokens: 5,
            cost_nanos: 7,
        };
        let cells = BTreeMap::from([
            (cell("a", 1, "fast", "x"), one),
            (cell("a", 1, "fast", "y"), one),
            (cell("a", 2, "big", "x"), one),
            (cell("b", 2, "fast", "x"), one),
        ]);
        let q = |key: Option<&str>, from, to, by| UsageQuery {
            key: key.map(str::to_owned),
            from,
            to,
            by,
        };
        let rows = usage(&cells, &q(Some("a"), None, None, GroupBy::Model));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].group, "fast");
        assert_eq!(rows[1].counters.requests, 2);
        let rows = usage(&cells, &q(None, Some(2), Some(2), GroupBy::Upstream));
        assert_eq!(
            rows.iter()
                .map(|r| (r.key.as_str(), r.group.as_str()))
                .collect::<Vec<_>>(),
            [("a", "x"), ("b", "x")]
        );
        let rows = usage(&cells, &q(None, None, None, GroupBy::Day));
        assert_eq!(rows[0].group, "1970-01-02");
        assert_eq!(rows[0].counters.cost_nanos, 14);
    }
}
