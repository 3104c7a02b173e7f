//! The training schedules of method §5.3 and §5.5.

use std::f64::consts::PI;

/// The sampling temperature after `step` optimiser steps of `steps`: a cosine from `start`
/// to `min`, held at `min` afterwards.
pub fn temperature(step: usize, steps: usize, start: f64, min: f64) -> f64 {
    let frac = if steps == 0 {
        1.0
    } else {
        (step as f64 / steps as f64).min(1.0)
    };
    min + 0.5 * (start - min) * (1.0 + (PI * frac).cos())
}

/// The learning rate after `step` optimiser steps of `steps`: a cosine ramp from `start` to
/// `end` over the first `warmup_ratio` of the steps, then `end`.
pub fn learning_rate(step: usize, steps: usize, start: f64, end: f64, warmup_ratio: f64) -> f64 {
    let warmup = warmup_ratio * steps as f64;
    if warmup <= 0.0 || step as f64 >= warmup {
        return end;
    }
    end + 0.5 * (start - end) * (1.0 + (PI * step as f64 / warmup).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperature_runs_from_start_to_min() {
        assert_eq!(temperature(0, 12, 10.0, 0.8), 10.0);
        assert!((temperature(6, 12, 10.0, 0.8) - 5.4).abs() < 1e-12);
        assert!((temperature(12, 12, 10.0, 0.8) - 0.8).abs() < 1e-12);
        assert!((temperature(50, 12, 10.0, 0.8) - 0.8).abs() < 1e-12);
        let ts: Vec<f64> = (0..=12).map(|s| temperature(s, 12, 10.0, 0.8)).collect();
        assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn learning_rate_ramps_then_holds() {
        // MMLU: 5e-3 → 2e-3 over the first 6 of 12 steps.
        assert!((learning_rate(0, 12, 5e-3, 2e-3, 0.5) - 5e-3).abs() < 1e-15);
        assert!((learning_rate(3, 12, 5e-3, 2e-3, 0.5) - 3.5e-3).abs() < 1e-15);
        for s in 6..20 {
            assert_eq!(learning_rate(s, 12, 5e-3, 2e-3, 0.5), 2e-3);
        }
        // MATH: start = end, so constant.
        for s in 0..12 {
            assert!((learning_rate(s, 12, 2e-3, 2e-3, 0.5) - 2e-3).abs() < 1e-15);
        }
    }
}
