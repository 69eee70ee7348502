//! The input pipeline of `nepa pretrain` (docs/performance.md §6): a loader thread decodes and
//! augments the next batches while the device computes the current step, and the loop measures
//! how long it waited for data, so the progress bar shows whether the device starves.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::Scope;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use nepa::NepaConfig;
use nepa::data::{ImageSet, Sampler};
use nepa::pretrain::{PreparedBatch, PretrainOptions, prepare_batch};

/// Batches prepared ahead of the device: enough to hide one slow batch, few enough that
/// their pixels cost little memory.
const AHEAD: usize = 2;

/// Batches from the loader thread, in step order, and the time spent waiting for them.
pub struct Prefetch {
    batches: Receiver<Result<PreparedBatch, nepa::NepaError>>,
    pub waited: Duration,
}

impl Prefetch {
    /// Starts preparing steps `start..total` on a thread of `scope` (which joins it).
    /// Dropping the result stops the thread at its next batch.
    pub fn start<'scope, 'env>(
        scope: &'scope Scope<'scope, 'env>,
        data: &'env ImageSet,
        sampler: &'env Sampler,
        config: &'env NepaConfig,
        options: PretrainOptions,
        (start, total): (usize, usize),
    ) -> Self {
        let (send, batches) = sync_channel(AHEAD);
        scope.spawn(move || {
            for step in start..total {
                let batch = prepare_batch(data, sampler, config, &options, step);
                // The receiver is gone: the run ended early (Ctrl-C, divergence).
                if send.send(batch).is_err() {
                    return;
                }
            }
        });
        Self {
            batches,
            waited: Duration::ZERO,
        }
    }

    /// The next batch, waiting for the loader if it is behind.
    pub fn next(&mut self) -> Result<PreparedBatch> {
        let asked = Instant::now();
        let batch = self
            .batches
            .recv()
            .map_err(|_| anyhow!("the data loader thread stopped"))?;
        self.waited += asked.elapsed();
        Ok(batch?)
    }
}
