//! "Adapt to my images": NEPA pretraining steps on the held images, the model replaced every
//! few steps (`ModelUpdated`) so the maps follow the learning.

use std::rc::Rc;

use burn::module::Module;
use nepa::StepOutcome;
use nepa::data::ImageSet;
use nepa::pretrain::Pretrainer;
use nepa_protocol::{ErrorKind, ImageId, Progress, Reply, WebError};

use crate::bridge::Responder;
use crate::state::{Engine, LoadedModel};
use crate::tasks::Control;
use crate::{models, platform};

const REFRESH_EVERY: usize = 5;

fn gallery(engine: &Engine, images: &[ImageId]) -> Result<ImageSet, WebError> {
    if images.is_empty() {
        return Err(WebError::bad_input("add images to the gallery first"));
    }
    let images = images
        .iter()
        .map(|&id| engine.image(id).map(|u| u.image.clone()))
        .collect::<Result<_, _>>()?;
    Ok(ImageSet {
        images,
        source: "the gallery".into(),
        ..ImageSet::default()
    })
}

/// `Adapt`: answers `Done` after the last step (progress lines meanwhile).
pub async fn adapt(
    engine: Rc<Engine>,
    r: Responder,
    steps: usize,
    images: Vec<ImageId>,
    control: Rc<Control>,
) -> Result<Reply, WebError> {
    let base = engine.model()?;
    let device = engine.ready_device().await?;
    let gallery = gallery(&engine, &images)?;
    let steps = steps.clamp(1, 10_000);
    r.progress(Progress::counted(
        "adapting: starting…",
        0,
        Some(steps as u64),
    ));
    let autodiff = device.device.clone().autodiff();
    // The crate's pretraining loop, as `nepa pretrain` runs it, with the adaptation preset.
    let (mut trainer, sampler) =
        Pretrainer::adaptation(&base.model, &base.config, gallery.len(), &autodiff)
            .map_err(|e| WebError::model(e.to_string()))?;
    let batch = sampler.batch_size();
    let mut first_loss = None;
    for step in 0..steps {
        platform::sleep(0).await;
        if control.cancelled() {
            return Err(WebError::new(
                ErrorKind::Cancelled,
                format!("adapting stopped after {step}/{steps} steps (cancelled)"),
            ));
        }
        let record = trainer
            .step(&gallery, &sampler)
            .await
            .map_err(|e| WebError::model(e.to_string()))?;
        if let StepOutcome::Diverged(message) = &record.outcome {
            return Err(WebError::model(format!("adapting stopped: {message}")));
        }
        let (loss, done) = (record.loss, step + 1);
        let first = *first_loss.get_or_insert(loss);
        if done % REFRESH_EVERY == 0 || done == steps {
            let adapted = LoadedModel {
                model: trainer.model().valid(),
                config: base.config.clone(),
                label: format!("{} + adapted {done} NEPA steps on your images", base.label),
                trained: base.trained,
                source: base.source.clone(),
                name: base.name.clone(),
                hub_files: base.hub_files.clone(),
                // The head was trained on the backbone before adaptation.
                classifier: None,
            };
            models::announce(&engine, &r, adapted);
        }
        r.progress(Progress::counted(
            format!(
                "adapted {done}/{steps} steps · NEPA loss {first:.3} → {loss:.3} (batches of \
                 {batch} random crops)"
            ),
            done as u64,
            Some(steps as u64),
        ));
    }
    Ok(Reply::Done)
}
