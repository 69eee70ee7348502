//! The images the engine holds: uploads, the bundled photos and the Fashion-MNIST sample
//! set, decoded once and referred to by id; their thumbnails go back as RGBA in the payload.

use std::collections::BTreeMap;
use std::rc::Rc;

use nepa::image::{RgbImage, decode_with_warnings, resize_bilinear};
use nepa_protocol::{ClassImages, ImageInfo, ImagesAdded, Pixels, Reply, WebError};
use wasm_bindgen::JsValue;

use crate::bridge::Responder;
use crate::state::{Engine, Upload};
use crate::{fetch, files, platform};

const SAMPLE_MANIFEST: &str = "samples/fashion-mnist/manifest.json";
/// Thumbnails are scaled to this many pixels on their longer side.
const THUMB: usize = 64;

/// RGBA pictures packed into one payload buffer.
#[derive(Default)]
pub struct PixelBuffer {
    pub bytes: Vec<u8>,
}

impl PixelBuffer {
    pub fn push(&mut self, image: &RgbImage) -> Pixels {
        let pixels = Pixels {
            width: image.width,
            height: image.height,
            offset: self.bytes.len(),
        };
        self.bytes.extend_from_slice(&image.to_rgba());
        pixels
    }
}

/// Decodes an image. Damage the decoder worked around (a truncated JPEG, its missing part
/// grey) comes back as warnings naming the file: the image is still usable.
pub fn decode_upload(name: &str, bytes: &[u8]) -> Result<(RgbImage, Vec<WebError>), WebError> {
    let (image, warnings) =
        decode_with_warnings(bytes).map_err(|e| WebError::bad_input(format!("{name}: {e}")))?;
    let warnings = warnings
        .into_iter()
        .map(|w| WebError::bad_input(format!("{name}: {w} (the image was added)")))
        .collect();
    Ok((image, warnings))
}

fn thumbnail(image: &RgbImage) -> RgbImage {
    let scale = THUMB as f64 / image.width.max(image.height).max(1) as f64;
    let w = ((image.width as f64 * scale) as usize).max(1);
    let h = ((image.height as f64 * scale) as usize).max(1);
    resize_bilinear(image, w, h)
}

/// Keeps an image and describes it, its thumbnail added to `buffer`.
fn keep(engine: &Engine, name: String, image: RgbImage, buffer: &mut PixelBuffer) -> ImageInfo {
    let thumb = buffer.push(&thumbnail(&image));
    let (width, height) = (image.width, image.height);
    let id = engine.add_image(Upload {
        name: name.clone(),
        image,
    });
    ImageInfo {
        id,
        name,
        width,
        height,
        thumb,
    }
}

/// Decodes `(name, bytes)` results into the store; refused files become errors.
async fn ingest(
    engine: &Engine,
    inputs: Vec<(String, Result<Vec<u8>, WebError>)>,
) -> (ImagesAdded, PixelBuffer) {
    let mut added = ImagesAdded::default();
    let mut buffer = PixelBuffer::default();
    for (name, bytes) in inputs {
        match bytes.and_then(|b| decode_upload(&name, &b)) {
            Ok((image, warnings)) => {
                added.errors.extend(warnings);
                added.images.push(keep(engine, name, image, &mut buffer));
            }
            Err(e) => added.errors.push(e),
        }
        platform::sleep(0).await;
    }
    (added, buffer)
}

/// `AddImages`: the payload's `File`s, named in order by `names`.
pub async fn add_images(engine: Rc<Engine>, r: Responder, names: Vec<String>, payload: JsValue) {
    let mut inputs = vec![];
    for (i, file) in files::from_payload(&payload).into_iter().enumerate() {
        let name = names.get(i).cloned().unwrap_or_else(|| file.name());
        inputs.push((name, files::read(&file, |_, _| {}).await));
    }
    let (added, buffer) = ingest(&engine, inputs).await;
    r.reply_with_bytes(Reply::ImagesAdded(added), &buffer.bytes);
}

/// `AddBundledImages`: the app's own photos, by URL (named by their file name).
pub async fn add_bundled(engine: Rc<Engine>, r: Responder, urls: Vec<String>) {
    let mut inputs = vec![];
    for url in urls {
        let name = url.rsplit('/').next().unwrap_or(&url).to_string();
        inputs.push((name, fetch::fetch_bytes(&url).await));
    }
    let (added, buffer) = ingest(&engine, inputs).await;
    r.reply_with_bytes(Reply::ImagesAdded(added), &buffer.bytes);
}

/// The sample manifest: class name → PNG files, classes sorted by name (the order `nepa
/// eval` gives a folder of class folders).
async fn sample_manifest() -> Result<BTreeMap<String, Vec<String>>, WebError> {
    let manifest = fetch::fetch_bytes(SAMPLE_MANIFEST).await?;
    serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|v| serde_json::from_value(v["classes"].clone()).ok())
        .ok_or_else(|| WebError::bad_input("the sample manifest is malformed"))
}

/// `LoadSampleClasses`: the bundled Fashion-MNIST classes, their images added to the store.
pub async fn load_sample_classes(engine: Rc<Engine>, r: Responder) {
    let result = async {
        let base = SAMPLE_MANIFEST.trim_end_matches("manifest.json");
        let mut buffer = PixelBuffer::default();
        let mut classes = vec![];
        for (name, files) in sample_manifest().await? {
            r.stage(format!("loading the sample class {name}…"));
            let mut images = vec![];
            for file in files {
                let bytes = fetch::fetch_bytes(&format!("{base}{file}")).await?;
                let (image, _) = decode_upload(&file, &bytes)?;
                images.push(keep(&engine, file, image, &mut buffer));
            }
            classes.push(ClassImages { name, images });
        }
        Ok::<_, WebError>((classes, buffer))
    }
    .await;
    match result {
        Ok((classes, buffer)) => r.reply_with_bytes(Reply::SampleClasses(classes), &buffer.bytes),
        Err(e) => r.fail(WebError::new(e.kind, format!("sample set: {e}"))),
    }
}
