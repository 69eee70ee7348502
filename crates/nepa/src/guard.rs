//! Divergence guard for training loops, shared by the native trainer and the page.
//!
//! A step whose loss or gradient norm is not finite must not reach the weights: the caller
//! keeps the model and optimizer state from before the step (tensors are reference-counted,
//! so a clone is cheap) and puts them back when the guard says [`StepVerdict::Skip`]. Several
//! non-finite steps in a row mean the run has diverged (too high a learning rate, bad data)
//! and the guard says [`StepVerdict::Stop`] with a message for the user.

/// What to do with the step just computed.
#[derive(Clone, Debug, PartialEq)]
pub enum StepVerdict {
    /// Loss and gradient norm are finite: keep the update.
    Apply,
    /// Non-finite: discard the update (restore the state from before the step) and go on.
    Skip,
    /// Too many non-finite steps in a row: discard the update and stop the run.
    Stop(String),
}

/// What a training driver did with a step after the guard's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    Applied,
    /// Not finite: undone (weights and optimizer state from before it), counted, and the
    /// run goes on.
    Skipped,
    /// The run must stop; the model is the one from before this step. The message says why.
    Diverged(String),
}

/// Counts non-finite steps; see the module docs.
#[derive(Clone, Debug)]
pub struct DivergenceGuard {
    max_consecutive: usize,
    consecutive: usize,
    skipped: usize,
}

/// How many non-finite steps in a row stop a run by default: one bad batch is skipped, a
/// diverged model (every step non-finite) stops quickly.
pub const DEFAULT_MAX_CONSECUTIVE_NON_FINITE: usize = 5;

impl Default for DivergenceGuard {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CONSECUTIVE_NON_FINITE)
    }
}

impl DivergenceGuard {
    /// A guard that stops after `max_consecutive` non-finite steps in a row (at least 1).
    pub fn new(max_consecutive: usize) -> Self {
        Self {
            max_consecutive: max_consecutive.max(1),
            consecutive: 0,
            skipped: 0,
        }
    }

    /// Judges step `step` (0-based) from its loss and, where the optimizer computes one, its
    /// gradient norm before clipping.
    pub fn check(&mut self, step: usize, loss: f32, grad_norm: Option<f32>) -> StepVerdict {
        let grad_ok = grad_norm.is_none_or(f32::is_finite);
        if loss.is_finite() && grad_ok {
            self.consecutive = 0;
            return StepVerdict::Apply;
        }
        self.consecutive += 1;
        self.skipped += 1;
        if self.consecutive >= self.max_consecutive {
            let what = if loss.is_finite() {
                format!("gradient norm {}", grad_norm.unwrap_or(f32::NAN))
            } else {
                format!("loss {loss}")
            };
            return StepVerdict::Stop(format!(
                "training diverged: {} non-finite steps in a row (last at step {}: {what}); \
                 the weights from before them are kept. Try a lower learning rate.",
                self.consecutive,
                step + 1
            ));
        }
        StepVerdict::Skip
    }

    /// Steps skipped so far because they were non-finite.
    pub fn skipped(&self) -> usize {
        self.skipped
    }
}

/// Whether every value is finite (no NaN, no ±∞).
pub fn all_finite(values: &[f32]) -> bool {
    values.iter().all(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finite_steps_apply_and_reset_the_run_of_bad_ones() {
        let mut guard = DivergenceGuard::new(3);
        assert_eq!(guard.check(0, 0.5, Some(1.0)), StepVerdict::Apply);
        assert_eq!(guard.check(1, f32::NAN, Some(1.0)), StepVerdict::Skip);
        assert_eq!(guard.check(2, 0.4, Some(f32::INFINITY)), StepVerdict::Skip);
        assert_eq!(guard.check(3, 0.4, None), StepVerdict::Apply);
        assert_eq!(guard.skipped(), 2);
        assert_eq!(guard.check(4, f32::NAN, None), StepVerdict::Skip);
        assert_eq!(guard.check(5, f32::NAN, None), StepVerdict::Skip);
        let StepVerdict::Stop(message) = guard.check(6, f32::NEG_INFINITY, None) else {
            panic!("three non-finite steps in a row must stop the run");
        };
        assert!(message.contains("3 non-finite steps"), "{message}");
        assert!(message.contains("step 7"), "{message}");
        assert_eq!(guard.skipped(), 5);
    }

    #[test]
    fn all_finite_rejects_nan_and_infinities() {
        assert!(all_finite(&[0.0, -1.0, f32::MAX]));
        assert!(!all_finite(&[0.0, f32::NAN]));
        assert!(!all_finite(&[f32::INFINITY]));
    }
}
