//! Reading the `File`s the page hands over (uploads, a checkpoint): size cap first, then
//! the bytes, read as a stream with progress and copied once into wasm memory.

use nepa_protocol::{ErrorKind, WebError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::fetch::{into_wasm_memory, stream_chunk};
use crate::platform::describe;

/// The most a file may hold: wasm32 memory (4 GiB at most) must also hold the parsed model.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// The `File`s of a payload: one `File`, or an array of them (other entries are skipped).
pub fn from_payload(payload: &JsValue) -> Vec<web_sys::File> {
    if let Some(file) = payload.dyn_ref::<web_sys::File>() {
        return vec![file.clone()];
    }
    if js_sys::Array::is_array(payload) {
        return js_sys::Array::from(payload)
            .iter()
            .filter_map(|f| f.dyn_into().ok())
            .collect();
    }
    vec![]
}

/// Reads a `File`, reporting bytes read; refused before reading when over the cap.
pub async fn read(file: &web_sys::File, progress: impl Fn(u64, u64)) -> Result<Vec<u8>, WebError> {
    let chunks = read_chunks(file, progress).await?;
    into_wasm_memory(&file.name(), &chunks, MAX_FILE_BYTES)
}

/// [`read`], the bytes left in JS memory as the chunks the stream gave.
pub async fn read_chunks(
    file: &web_sys::File,
    progress: impl Fn(u64, u64),
) -> Result<Vec<js_sys::Uint8Array>, WebError> {
    let name = file.name();
    let size = file.size();
    if size > MAX_FILE_BYTES as f64 {
        return Err(WebError::new(
            ErrorKind::TooLarge,
            format!(
                "{name}: the file is too large ({:.1} MB); the page accepts at most {} GiB (the \
                 browser's wasm32 memory, 4 GiB at most, must also hold the parsed model)",
                size / 1e6,
                MAX_FILE_BYTES >> 30
            ),
        ));
    }
    let cannot = |e: &JsValue| {
        WebError::bad_input(format!("{name}: cannot read the file ({})", describe(e)))
    };
    let reader: web_sys::ReadableStreamDefaultReader = file
        .stream()
        .get_reader()
        .dyn_into()
        .map_err(|e| cannot(&e))?;
    let mut chunks = vec![];
    let mut received = 0u64;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| cannot(&e))?;
        let Some(array) = stream_chunk(&name, &chunk)? else {
            break;
        };
        received += u64::from(array.length());
        chunks.push(array);
        progress(received, size as u64);
    }
    Ok(chunks)
}
