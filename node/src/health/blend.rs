//! How much a node believes its own samples of an upstream against what the
//! other regions say, and when its newest samples mean the upstream changed.
//! Pure: figures and times (milliseconds on the caller's clock) go in, a
//! figure or a decision comes out; the recorder and the router call it.
//!
//! Why not a threshold: a node used to follow the cluster's figure until it
//! had 20 samples of its own in the 30 s window. A quiet region (0.5 req/s)
//! never has 20, so a grey failure seen only from a busy region (the
//! upstream slow from there, fast from here) moved the quiet region too,
//! although its own few samples said the upstream was fast for it. Here the
//! two figures are blended smoothly instead:
//!
//! - [`Freshness`] counts this node's samples, each worth less as it ages
//!   (half-life [`Blend::half_life_ms`]): ten samples a second ago count
//!   for ten, ten samples a minute ago for almost nothing.
//! - [`blend`] weighs the node's own figure `w = n / (n + k)` against the
//!   shared one, `n` that fresh count and `k` ([`Blend::shared_worth`])
//!   small: the cluster's figure is worth about half a sample of one's own,
//!   since it describes the upstream as *other* places reach it. Three fresh
//!   samples give `w ≈ 0.86`; none give 0 (the cluster's figure as it is).
//!   The blend is geometric (`own^w × shared^(1-w)`): latencies are
//!   compared by ratio, and an arithmetic mean would let a 10× slower
//!   shared figure outweigh a confident own one.
//! - [`changed`] tells when the newest samples (the last second or so,
//!   a short window beside the long one) disagree with the long window so
//!   plainly that the long window describes an upstream that no longer is:
//!   a brownout starting or ending. The recorder then forgets the long
//!   window, so the node routes on what the upstream is now within about a
//!   second, instead of after the 30 s the old samples take to age out.

use super::window::Quantiles;

/// How own and shared figures are weighed, and when a level change is
/// believed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blend {
    /// What the shared figure is worth, in fresh own samples (`k`).
    pub shared_worth: f64,
    /// Half-life of an own sample's weight, in milliseconds.
    pub half_life_ms: u64,
    /// Smallest ratio between the newest samples' median and the long
    /// window's that counts as a change of level (2: twice as slow or fast).
    pub level_ratio: f64,
    /// Samples the long window needs before its level can be left behind.
    pub min_long: u64,
}

impl Default for Blend {
    fn default() -> Self {
        Self {
            shared_worth: 0.5,
            half_life_ms: 10_000,
            level_ratio: 2.0,
            min_long: 3,
        }
    }
}

/// This node's samples of one upstream, counted with decaying weight: each
/// sample adds 1, and the sum halves every half-life. Time only scales the
/// sum, so it is kept as the sum at the last sample and that sample's time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Freshness {
    /// The weighted count as of `at_ms`.
    pub weight: f64,
    /// When the last sample came, on the recorder's clock.
    pub at_ms: u64,
}

impl Freshness {
    /// Counts one sample taken at `now_ms`.
    pub fn add(&mut self, now_ms: u64, half_life_ms: u64) {
        self.weight = self.at(now_ms, half_life_ms) + 1.0;
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// The weighted count at `now_ms` (a time before the last sample reads
    /// as that sample's time).
    pub fn at(&self, now_ms: u64, half_life_ms: u64) -> f64 {
        let age = now_ms.saturating_sub(self.at_ms) as f64;
        self.weight * (-age / half_life_ms.max(1) as f64).exp2()
    }
}

/// The figure to route on: this node's own (`own`, with `weight` fresh
/// samples behind it, [`Freshness::at`]) blended with the shared one
/// geometrically, `own^w × shared^(1-w)` with `w = weight / (weight + k)`;
/// either alone when the other is missing; `None` when both are.
pub fn blend(
    own: &Quantiles,
    weight: f64,
    shared: Option<&Quantiles>,
    policy: &Blend,
) -> Option<Quantiles> {
    let has_own = own.count > 0;
    match shared.filter(|s| s.count > 0) {
        None => has_own.then_some(*own),
        Some(shared) if !has_own => Some(*shared),
        Some(shared) => {
            let weight = weight.max(0.0);
            let w = weight / (weight + policy.shared_worth.max(f64::MIN_POSITIVE));
            let mix = |o: f64, s: f64| {
                if o > 0.0 && s > 0.0 {
                    o.powf(w) * s.powf(1.0 - w)
                } else {
                    o.max(s)
                }
            };
            Some(Quantiles {
                // The samples behind whichever figure leads.
                count: if w >= 0.5 { own.count } else { shared.count },
                p50: mix(own.p50, shared.p50),
                p90: mix(own.p90, shared.p90),
                p95: mix(own.p95, shared.p95),
                p99: mix(own.p99, shared.p99),
                p999: mix(own.p999, shared.p999),
            })
        }
    }
}

/// Standard deviations the newest samples' median must be away from the
/// long window's before a change of level is believed: a heavy-tailed
/// upstream's median of a few samples wanders, and forgetting its window
/// on noise would throw its history away.
const Z: f64 = 4.0;
/// The spread assumed of an upstream that answers in nearly constant time
/// (a log-normal σ), so that one clear sample can still tell a change.
const MIN_SIGMA: f64 = 0.05;

/// Whether the newest samples (`recent`: the last second or so) show that
/// the upstream's level moved away from what the long window holds: their
/// median at least [`Blend::level_ratio`] times above or below the long
/// window's, and further than noise would take it. The noise is judged on
/// the long window's own spread (σ ≈ ln(p99 / p50) / 2.33 for a
/// log-normal), the median of `n` samples wandering by about 1.25 σ / √n:
/// one sample is enough for an upstream that always answered in 20 ms and
/// now takes 250, dozens are needed for one whose tail is 25 times its
/// median. The median, not the p99, because a second's samples hold the
/// tail by chance only.
pub fn changed(long: &Quantiles, recent: &Quantiles, policy: &Blend) -> bool {
    if recent.count == 0 || long.count < policy.min_long || long.p50 <= 0.0 || recent.p50 <= 0.0 {
        return false;
    }
    let shift = (recent.p50 / long.p50).ln().abs();
    let sigma = ((long.p99 / long.p50).ln() / 2.33).max(MIN_SIGMA);
    let noise = Z * 1.25 * sigma / (recent.count as f64).sqrt();
    shift >= policy.level_ratio.max(1.0).ln().max(noise)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn q(count: u64, p50: f64, p99: f64) -> Quantiles {
        Quantiles {
            count,
            p50,
            p90: p99,
            p95: p99,
            p99,
            p999: p99,
        }
    }

    #[test]
    fn freshness_halves_every_half_life_and_counts_each_sample() {
        let mut f = Freshness::default();
        for t in [0, 0, 0] {
            f.add(t, 10_000);
        }
        assert!((f.at(0, 10_000) - 3.0).abs() < 1e-9);
        assert!((f.at(10_000, 10_000) - 1.5).abs() < 1e-9);
        assert!((f.at(30_000, 10_000) - 0.375).abs() < 1e-9);
        f.add(10_000, 10_000);
        assert!((f.at(10_000, 10_000) - 2.5).abs() < 1e-9);
        // A reader whose clock read a moment before the last sample.
        assert!((f.at(9_000, 10_000) - 2.5).abs() < 1e-9);
    }

    /// The quiet region: 0.5 req/s, three samples of its own in the last
    /// few seconds, all fast; the cluster's figure (another region's grey
    /// failure) says the upstream is ten times slower. The blend stays
    /// near the own figure, well under a second target at 45 ms.
    #[test]
    fn a_few_fresh_own_samples_outweigh_a_slow_cluster_figure() {
        let policy = Blend::default();
        let mut f = Freshness::default();
        for t in [0, 2_000, 4_000] {
            f.add(t, policy.half_life_ms);
        }
        let own = q(3, 20.0, 20.0);
        let cluster = q(1_500, 20.0, 270.0);
        let now = 4_500;
        let blended = blend(
            &own,
            f.at(now, policy.half_life_ms),
            Some(&cluster),
            &policy,
        )
        .unwrap();
        assert!(blended.p99 < 35.0, "{blended:?}");
        assert!(blended.p99 * 1.2 < 45.0, "{blended:?}");
        assert_eq!(blended.count, 3);
    }

    #[test]
    fn no_own_samples_follow_the_cluster_and_old_ones_fade_into_it() {
        let policy = Blend::default();
        let cluster = q(1_500, 100.0, 300.0);
        let none = Quantiles::default();
        assert_eq!(blend(&none, 0.0, Some(&cluster), &policy), Some(cluster));
        assert_eq!(blend(&none, 0.0, None, &policy), None);
        let own = q(5, 10.0, 30.0);
        assert_eq!(blend(&own, 5.0, None, &policy), Some(own));
        // The same own figure weighs less as its samples age.
        let mut f = Freshness::default();
        for _ in 0..5 {
            f.add(0, policy.half_life_ms);
        }
        let at = |t| {
            blend(&own, f.at(t, policy.half_life_ms), Some(&cluster), &policy)
                .unwrap()
                .p99
        };
        assert!(at(0) < 40.0, "{}", at(0));
        assert!(at(0) < at(20_000) && at(20_000) < at(60_000));
        assert!(at(120_000) > 290.0, "{}", at(120_000));
    }

    #[test]
    fn the_blend_is_smooth_in_the_number_of_samples() {
        let policy = Blend::default();
        let (own, cluster) = (q(1, 20.0, 20.0), q(100, 200.0, 200.0));
        let mut last = f64::MAX;
        for n in 0..50 {
            let p99 = blend(&own, n as f64, Some(&cluster), &policy).unwrap().p99;
            assert!(p99 < last, "each sample brings it closer to the own figure");
            assert!(p99 >= 20.0);
            if n > 1 {
                // No cliff: the first own sample takes two thirds of the
                // way (it is what this node measured), each next one less.
                assert!(last / p99 < 1.5, "{n}: {last} -> {p99}");
            }
            last = p99;
        }
        assert!(last < 21.0);
    }

    #[test]
    fn a_brownout_and_its_end_are_changes_of_level() {
        let policy = Blend::default();
        // 20 ms steady for 30 s, then a second of 250 ms answers.
        let steady = q(1_000, 20.0, 21.0);
        assert!(changed(&steady, &q(1, 250.0, 250.0), &policy));
        // Its end: the window since the brownout holds slow answers only.
        let browned = q(20, 250.0, 260.0);
        assert!(changed(&browned, &q(1, 20.0, 20.0), &policy));
        // The same level, or a small drift, is no change.
        assert!(!changed(&steady, &q(40, 21.0, 25.0), &policy));
        assert!(!changed(&steady, &q(40, 35.0, 40.0), &policy));
        // Nothing to leave behind, or nothing new.
        assert!(!changed(&q(2, 20.0, 20.0), &q(5, 250.0, 250.0), &policy));
        assert!(!changed(&steady, &Quantiles::default(), &policy));
    }

    #[test]
    fn a_heavy_tail_needs_many_samples_before_its_level_is_said_to_move() {
        let policy = Blend::default();
        // Median 20 ms, p99 500 ms: σ ≈ 1.4.
        let heavy = q(1_500, 20.0, 500.0);
        assert!(!changed(&heavy, &q(3, 8.0, 12.0), &policy));
        assert!(!changed(&heavy, &q(30, 9.0, 60.0), &policy));
        // A real tenfold slowdown is seen once a second holds enough.
        assert!(changed(&heavy, &q(50, 200.0, 900.0), &policy));
    }
}
