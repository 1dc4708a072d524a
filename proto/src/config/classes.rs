//! `[[classes]]`: priority classes, in the order they are served, and what
//! each may use of an upstream's capacity.
//!
//! A class's `reserved` share of every upstream's capacity may be used only
//! by that class and those above it, so with `pro` reserving 0.5 above
//! `free`, free traffic may fill at most half of an upstream's
//! `max_concurrency` and a pro request still finds room. Keys name their
//! class; a key without one (or naming a class this node does not know) is
//! in the last class.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::check_name;

/// One priority class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// What keys put in their `class`.
    pub name: String,
    /// Share (0 to 1) of every upstream's capacity that only this class and
    /// the classes above it may use.
    #[serde(default)]
    pub reserved: f64,
    /// How long a request may wait for capacity before it is shed; 0 sheds
    /// at once. Never longer than the request's own deadline.
    #[serde(default)]
    pub queue_ms: u64,
    /// The class's objective, reported with the error budget left.
    #[serde(default)]
    pub slo: Option<SloConfig>,
}

/// A class's service-level objective over the health window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Share of requests answered successfully, e.g. 0.999.
    pub success: f64,
    /// The p99 latency (to the first byte) the class is promised.
    #[serde(default)]
    pub p99_ms: Option<u64>,
}

/// The most classes a node keeps; each costs a counter per upstream.
pub const MAX_CLASSES: usize = 16;
/// The longest a request may queue for capacity.
pub const MAX_QUEUE_MS: u64 = 60_000;

/// Validates the class list: names unique, shares in `[0, 1]` summing to at
/// most 1, queues bounded, objectives in range.
pub(super) fn validate(classes: &[ClassConfig]) -> Result<(), ConfigError> {
    if classes.len() > MAX_CLASSES {
        return Err(ConfigError::new(
            "classes",
            format!("at most {MAX_CLASSES} classes"),
        ));
    }
    let mut total = 0.0;
    for (i, class) in classes.iter().enumerate() {
        let at = format!("classes[{i}]");
        check_name(&format!("{at}.name"), &class.name)?;
        if classes[..i].iter().any(|c| c.name == class.name) {
            return Err(ConfigError::new(
                format!("{at}.name"),
                format!("`{}` is named twice", class.name),
            ));
        }
        if !class.reserved.is_finite() || !(0.0..=1.0).contains(&class.reserved) {
            return Err(ConfigError::new(
                format!("{at}.reserved"),
                "must be a share between 0 and 1",
            ));
        }
        total += class.reserved;
        if total > 1.0 + 1e-9 {
            return Err(ConfigError::new(
                format!("{at}.reserved"),
                "the classes' reserved shares add up to more than 1",
            ));
        }
        if class.queue_ms > MAX_QUEUE_MS {
            return Err(ConfigError::new(
                format!("{at}.queue_ms"),
                format!("must be at most {MAX_QUEUE_MS}"),
            ));
        }
        if let Some(slo) = &class.slo {
            if !slo.success.is_finite() || !(0.0..1.0).contains(&slo.success) || slo.success <= 0.0
            {
                return Err(ConfigError::new(
                    format!("{at}.slo.success"),
                    "must be a share above 0 and below 1, e.g. 0.999",
                ));
            }
            if slo.p99_ms == Some(0) {
                return Err(ConfigError::new(
                    format!("{at}.slo.p99_ms"),
                    "must be above 0",
                ));
            }
        }
    }
    Ok(())
}

/// The position (0 = served first) of the class a key names: the last class
/// when it names none or one not in the list. With no classes configured,
/// every key is in class 0.
pub fn class_rank(classes: &[ClassConfig], name: Option<&str>) -> usize {
    let last = classes.len().saturating_sub(1);
    name.and_then(|n| classes.iter().position(|c| c.name == n))
        .unwrap_or(last)
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    fn class(name: &str, reserved: f64) -> ClassConfig {
        ClassConfig {
            name: name.into(),
            reserved,
            queue_ms: 0,
            slo: None,
        }
    }

    #[test]
    fn ranks_follow_the_list_and_unknown_is_last() {
        let classes = [class("pro", 0.5), class("team", 0.2), class("free", 0.0)];
        assert_eq!(class_rank(&classes, Some("pro")), 0);
        assert_eq!(class_rank(&classes, Some("team")), 1);
        assert_eq!(class_rank(&classes, None), 2);
        assert_eq!(class_rank(&classes, Some("gold")), 2);
        assert_eq!(class_rank(&[], Some("pro")), 0);
    }

    #[test]
    fn hostile_classes_are_named() {
        let cases: Vec<(Vec<ClassConfig>, &str)> = vec![
            (
                vec![class("pro", 0.5), class("pro", 0.0)],
                "classes[1].name",
            ),
            (vec![class("", 0.5)], "classes[0].name"),
            (vec![class("a b", 0.5)], "classes[0].name"),
            (vec![class("pro", f64::NAN)], "classes[0].reserved"),
            (vec![class("pro", -0.1)], "classes[0].reserved"),
            (vec![class("pro", 1.5)], "classes[0].reserved"),
            (
                vec![class("pro", 0.7), class("team", 0.4)],
                "classes[1].reserved",
            ),
            (
                vec![ClassConfig {
                    queue_ms: MAX_QUEUE_MS + 1,
                    ..class("pro", 0.5)
                }],
                "classes[0].queue_ms",
            ),
            (
                vec![ClassConfig {
                    slo: Some(SloConfig {
                        success: 1.0,
                        p99_ms: None,
                    }),
                    ..class("pro", 0.5)
                }],
                "classes[0].slo.success",
            ),
            (
                vec![ClassConfig {
                    slo: Some(SloConfig {
                        success: 0.999,
                        p99_ms: Some(0),
                    }),
                    ..class("pro", 0.5)
                }],
                "classes[0].slo.p99_ms",
            ),
        ];
        for (classes, field) in cases {
            let err = validate(&classes).expect_err(field);
            assert_eq!(err.field, field, "{classes:?}");
        }
        let many: Vec<ClassConfig> = (0..=MAX_CLASSES)
            .map(|i| class(&format!("c{i}"), 0.0))
            .collect();
        assert_eq!(validate(&many).expect_err("too many").field, "classes");
        validate(&[class("pro", 0.5), class("team", 0.5), class("free", 0.0)]).expect("valid");
    }
}
