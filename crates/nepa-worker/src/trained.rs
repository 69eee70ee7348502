//! The fine-tuned classifier: restoring it from browser storage, exporting it, classifying
//! images with it, and loading it again on another device.

use std::rc::Rc;

use burn::tensor::Device;
use nepa::checkpoint::{classes_from_metadata, infer_config, load_classifier};
use nepa::finetune::class_probabilities;
use nepa::{LoadOptions, NepaClassifier, NepaConfig, NepaError};
use nepa_protocol::{Prediction, Reply, TrainedInfo, WebError};
use wasm_bindgen::JsValue;

use crate::bridge::Responder;
use crate::state::{ComputeDevice, Engine, Trained};
use crate::{files, images, platform, storage};

/// Where the last trained model is kept (OPFS): one file, whose metadata carries the config
/// and the class names, so weights and labels cannot disagree.
pub const STORED_MODEL: &str = "nepa-finetuned.safetensors";
/// The class list of the old two-file layout; removed when a new model is stored.
pub const OLD_STORED_INFO: &str = "nepa-finetuned.json";

/// A classifier from its safetensors bytes: config, class names, weights, all checked.
fn parse(
    bytes: &[u8],
    device: &Device,
) -> Result<(NepaClassifier, NepaConfig, Vec<String>), String> {
    let config = infer_config(bytes).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    let classes = match classes_from_metadata(bytes) {
        Ok(Some(classes)) if !classes.is_empty() => classes,
        Ok(_) => return Err("it names no classes".into()),
        Err(e) => return Err(e.to_string()),
    };
    let loaded = load_classifier(
        bytes,
        &config,
        Some(classes.len()),
        device,
        LoadOptions::default(),
    );
    match loaded {
        Ok((model, _)) => Ok((model, config, classes)),
        Err(NepaError::ShapeMismatch { key, found, .. }) if key == "classifier.weight" => {
            Err(format!(
                "it names {} classes ({}) but its head has {} outputs",
                classes.len(),
                classes.join(", "),
                found.first().copied().unwrap_or(0)
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How a run ended, beside its summary: a status line, and a problem to show as an error.
#[derive(Default)]
pub struct Ending {
    pub status: Option<String>,
    pub error: Option<String>,
}

/// Makes `trained` the engine's classifier and describes it.
pub fn install(engine: &Engine, trained: Trained, ending: Ending) -> Reply {
    let reply = Reply::Trained(TrainedInfo {
        summary: trained.summary.clone(),
        classes: trained.classes.clone(),
        status: ending.status,
        error: ending.error,
    });
    *engine.trained.borrow_mut() = Some(Rc::new(trained));
    reply
}

/// `RestoreFinetuned`: the last trained model from browser storage (`Done` if none). A bad
/// entry is reported, naming the file and the fault, and left in place.
pub async fn restore(engine: Rc<Engine>) -> Result<Reply, WebError> {
    let device = engine.ready_device().await?;
    let Some(bytes) = storage::load(STORED_MODEL)
        .await
        .map_err(WebError::storage)?
    else {
        return Ok(Reply::Done);
    };
    let (model, config, classes) = parse(&bytes, &device.device).map_err(|what| {
        WebError::storage(format!(
            "the model kept in browser storage (OPFS file {STORED_MODEL}, {} bytes) is not \
             usable: {what}. It was not loaded, and it is left in storage until the next \
             completed training run replaces it.",
            bytes.len()
        ))
    })?;
    let summary = format!(
        "restored from browser storage: {} classes ({}) · D {}, {} layers",
        classes.len(),
        classes.join(", "),
        config.hidden_size,
        config.num_hidden_layers
    );
    let trained = Trained {
        model,
        config,
        classes,
        bytes: Rc::new(bytes),
        summary,
    };
    Ok(install(&engine, trained, Ending::default()))
}

/// `ExportFinetuned`: the classifier's safetensors bytes in the payload.
pub fn export(engine: &Engine, r: Responder) -> Result<(), WebError> {
    let trained = engine.trained()?;
    r.reply_with_bytes(
        Reply::Exported {
            name: STORED_MODEL.into(),
        },
        &trained.bytes,
    );
    Ok(())
}

/// `Classify`: class probabilities of the payload's images. A file that cannot be read or
/// decoded gets a prediction with no probabilities and its error.
pub async fn classify(
    engine: Rc<Engine>,
    names: Vec<String>,
    payload: JsValue,
) -> Result<Reply, WebError> {
    let trained = engine.trained()?;
    let device = engine.ready_device().await?;
    let mut out = vec![];
    for (i, file) in files::from_payload(&payload).into_iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| file.name());
        let decoded = async {
            let bytes = files::read(&file, |_, _| {}).await?;
            let (image, _) = images::decode_upload(&name, &bytes)?;
            class_probabilities(&trained.model, &trained.config, &image, &device.device)
                .await
                .map_err(|e| WebError::model(format!("{name}: {e}")))
        }
        .await;
        out.push(match decoded {
            Ok(probabilities) => Prediction {
                name,
                probabilities,
                error: None,
            },
            Err(e) => Prediction {
                name,
                probabilities: vec![],
                error: Some(e),
            },
        });
        platform::sleep(0).await;
    }
    Ok(Reply::Predictions(out))
}

/// After a device switch: the classifier again on the new device (dropped if it fails).
pub fn reload_on_device(engine: &Engine, device: &ComputeDevice) {
    let Some(current) = engine.trained.borrow().clone() else {
        return;
    };
    let reloaded = parse(&current.bytes, &device.device)
        .ok()
        .map(|(model, config, classes)| {
            Rc::new(Trained {
                model,
                config,
                classes,
                bytes: current.bytes.clone(),
                summary: current.summary.clone(),
            })
        });
    *engine.trained.borrow_mut() = reloaded;
}
