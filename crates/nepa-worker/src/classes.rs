//! `TopClasses`: the most probable classes of an image under the current model's classifier
//! head (a hub classifier), with the crate's classification and the model's own
//! preprocessing (`preprocessor_config.json`: docs/hub.md).

use std::rc::Rc;

use nepa::finetune::class_probabilities_with;
use nepa::viz::top_k;
use nepa_protocol::{ClassScore, ImageId, Reply, TOP_CLASSES, TopClasses, WebError};

use crate::state::Engine;

/// Answers `Done` when the model is no longer version `model_version` (a stale request).
pub async fn top_classes(
    engine: Rc<Engine>,
    model_version: u32,
    image: ImageId,
) -> Result<Reply, WebError> {
    if engine.version.get() != model_version {
        return Ok(Reply::Done);
    }
    let model = engine.model()?;
    let classifier = model.classifier.clone().ok_or_else(|| {
        WebError::not_ready(format!(
            "{} has no classifier head: load a fine-tuned (-sft) model for classes",
            model.name
        ))
    })?;
    let device = engine.ready_device().await?;
    let upload = engine.image(image)?;
    let probabilities = class_probabilities_with(
        &classifier.model,
        &model.config,
        &upload.image,
        |image| classifier.preprocessor.apply(&model.config, image),
        &device.device,
    )
    .await
    .map_err(|e| WebError::model(format!("{}: {e}", upload.name)))?;
    if engine.version.get() != model_version {
        return Ok(Reply::Done);
    }
    let classes = top_k(&probabilities, TOP_CLASSES)
        .into_iter()
        .map(|i| ClassScore {
            name: classifier
                .classes
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            probability: probabilities[i],
        })
        .collect();
    Ok(Reply::TopClasses(TopClasses {
        model_version,
        image,
        classes,
    }))
}
