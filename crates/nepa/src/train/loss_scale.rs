//! Dynamic loss scaling for f16 training (docs/performance.md §3), with the rule of
//! `torch.amp.GradScaler`: the loss is multiplied by a scale before backward so that small
//! gradients survive f16's narrow range (below ~6e-8 they flush to zero; LayerScale starts
//! the residual branches at 1e-5), and divided out of the gradients before clipping and the
//! update. A step whose gradients overflow is skipped and the scale halved; after
//! `growth_interval` good steps in a row it doubles.

use crate::guard::{DivergenceGuard, StepVerdict};

/// The verdict on a step of a run with `scaler` (f16) or without one: an overflow under too
/// large a scale is the scaler's to handle (undone, the scale shrunk, not counted as a
/// divergence); anything else goes to the divergence `guard`.
pub fn step_verdict(
    scaler: Option<&mut LossScaler>,
    guard: &mut DivergenceGuard,
    step: usize,
    loss: f32,
    grad_norm: Option<f32>,
) -> StepVerdict {
    let grad_finite = grad_norm.is_none_or(f32::is_finite);
    let overflow =
        loss.is_finite() && scaler.map(|s| s.update(grad_finite)) == Some(ScaleVerdict::Overflow);
    if overflow {
        StepVerdict::Skip
    } else {
        guard.check(step, loss, grad_norm)
    }
}

/// The scale and its schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct LossScaler {
    scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: usize,
    /// Below this an overflow is not the scale's fault: the step goes to the divergence
    /// guard like any other non-finite step.
    pub min_scale: f64,
    good_steps: usize,
    overflows: usize,
}

/// What the scaler makes of one step's gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleVerdict {
    /// Finite: apply the update.
    Finite,
    /// Overflowed under a scale that was too large: undo the update, the scale is now
    /// smaller, and the step does not count as a divergence.
    Overflow,
    /// Not finite even at the smallest scale: a real divergence, for the guard to judge.
    NotFinite,
}

impl Default for LossScaler {
    /// `torch.amp.GradScaler`'s defaults: 2¹⁶, ×2 after 2,000 good steps, ×0.5 on overflow.
    fn default() -> Self {
        Self::new(65536.0)
    }
}

impl LossScaler {
    pub fn new(initial_scale: f64) -> Self {
        Self {
            scale: initial_scale,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: 1.0,
            good_steps: 0,
            overflows: 0,
        }
    }

    /// The factor the loss is multiplied by before backward.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Steps skipped because their gradients overflowed.
    pub fn overflows(&self) -> usize {
        self.overflows
    }

    /// Updates the scale from whether the step's (unscaled) gradient norm is finite.
    pub fn update(&mut self, grad_norm_finite: bool) -> ScaleVerdict {
        if grad_norm_finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= self.growth_factor;
                self.good_steps = 0;
            }
            return ScaleVerdict::Finite;
        }
        self.good_steps = 0;
        if self.scale <= self.min_scale {
            return ScaleVerdict::NotFinite;
        }
        self.scale = (self.scale * self.backoff_factor).max(self.min_scale);
        self.overflows += 1;
        ScaleVerdict::Overflow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_good_steps_double() {
        let mut s = LossScaler::new(1024.0);
        s.growth_interval = 3;
        assert_eq!(s.update(false), ScaleVerdict::Overflow);
        assert_eq!(s.scale(), 512.0);
        for _ in 0..2 {
            assert_eq!(s.update(true), ScaleVerdict::Finite);
        }
        assert_eq!(s.scale(), 512.0, "two good steps: not yet");
        // An overflow resets the count of good steps.
        assert_eq!(s.update(false), ScaleVerdict::Overflow);
        assert_eq!(s.scale(), 256.0);
        for _ in 0..3 {
            s.update(true);
        }
        assert_eq!(s.scale(), 512.0, "three good steps in a row double it");
        assert_eq!(s.overflows(), 2);
    }

    #[test]
    fn at_the_floor_an_overflow_is_a_divergence() {
        let mut s = LossScaler::new(2.0);
        assert_eq!(s.update(false), ScaleVerdict::Overflow);
        assert_eq!(s.scale(), 1.0);
        assert_eq!(s.update(false), ScaleVerdict::NotFinite);
        assert_eq!(s.scale(), 1.0);
    }
}
