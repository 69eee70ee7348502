//! Where one pretraining step's time goes (`nepa bench --profile`, docs/performance.md §2).
//!
//! The step is cut into the parts a reader can act on: uploading the batch, the forward
//! pass, the loss, backward, gathering and clipping the gradients, the AdamW update and the
//! read-back of the loss. Each part ends with a device sync, so on a GPU its time is its
//! kernels' time and not only their launch; on Flex (eager, on the CPU) the sync costs
//! nothing. Syncing between parts stops the device from overlapping them, so the parts add
//! up to a little more than an unprofiled step: the split says where, the bench says how long.

use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use web_time::Instant;

use crate::error::NepaError;
use crate::loss::{LossOptions, prediction_loss};
use crate::model::{ForwardOptions, NepaModel};
use crate::train::{AdamW, pretrain_group, read_scalar};

/// One part of the step and its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepPart {
    pub name: String,
    pub ms: f64,
}

/// The parts timed so far, each ended by a device sync.
struct Laps<'d> {
    device: &'d Device,
    clock: Instant,
    parts: Vec<StepPart>,
}

impl Laps<'_> {
    fn end(&mut self, name: &str, at: Instant) {
        self.parts.push(StepPart {
            name: name.into(),
            ms: (at - self.clock).as_secs_f64() * 1e3,
        });
        self.clock = at;
    }

    fn lap(&mut self, name: &str) -> Result<(), NepaError> {
        self.device
            .sync()
            .map_err(|e| NepaError::Readback(format!("device sync: {e:?}")))?;
        self.end(name, Instant::now());
        Ok(())
    }
}

/// Times the parts of one pretraining step of `model` on the host batch `pixels`, with a
/// copy of `optim` (the caller's model and optimizer are not advanced).
pub async fn profile_step(
    model: &NepaModel,
    optim: &AdamW,
    pixels: &TensorData,
    lr: f64,
    weight_decay: f64,
) -> Result<Vec<StepPart>, NepaError> {
    let device = model.embeddings.cls_token.val().device();
    let mut laps = Laps {
        device: &device,
        clock: Instant::now(),
        parts: Vec::new(),
    };
    let pixels = Tensor::<4>::from_data(pixels.clone(), &device);
    laps.lap("upload batch")?;
    let out = model.forward(pixels, &ForwardOptions::eval());
    laps.lap("forward")?;
    let loss = prediction_loss(
        out.last_hidden_state,
        out.input_embedding,
        LossOptions::default(),
    );
    laps.lap("loss")?;
    let grads = loss.backward();
    laps.lap("backward")?;
    let policy = |key: &str| pretrain_group(key, lr, weight_decay);
    let mut clipped = None;
    let _ = optim
        .clone()
        .step_marked(model.clone(), &grads, policy, &mut || {
            if device.sync().is_ok() {
                clipped = Some(Instant::now());
            }
        });
    if let Some(at) = clipped {
        laps.end("gather + clip gradients", at);
    }
    laps.lap("AdamW update")?;
    read_scalar(loss.detach()).await?;
    laps.lap("read loss")?;
    Ok(laps.parts)
}
