//! Files the user picks or drops. The page never reads an image or a checkpoint itself: it
//! hands the `File` handles to the engine worker (docs/web-architecture.md), which reads them.

use js_sys::Array;
use nepa_protocol::WebError;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, FileList, HtmlInputElement};
use yew::prelude::*;

/// The files of a picker or a drop, in order.
pub fn file_list(list: Option<FileList>) -> Vec<File> {
    list.map(|list| (0..list.length()).filter_map(|i| list.get(i)).collect())
        .unwrap_or_default()
}

/// The files a file input's change event carries; the input is cleared so that picking the
/// same files again fires another change.
pub fn take_input_files(e: &Event) -> Vec<File> {
    let input: HtmlInputElement = e.target_unchecked_into();
    let files = file_list(input.files());
    input.set_value("");
    files
}

/// The files of a drop.
pub fn dropped_files(e: &DragEvent) -> Vec<File> {
    file_list(e.data_transfer().and_then(|d| d.files()))
}

/// Names and the payload (a JS array of the `File` handles) of a request carrying files.
pub fn files_payload(files: &[File]) -> (Vec<String>, JsValue) {
    let names = files.iter().map(|f| f.name()).collect();
    let array: Array = files.iter().collect();
    (names, array.into())
}

/// Whether a file is a checkpoint rather than an image (by name; the engine checks content).
pub fn is_checkpoint(file: &File) -> bool {
    file.name().to_ascii_lowercase().ends_with(".safetensors")
}

/// The most a text file (a run report) may hold before the page reads it.
const MAX_TEXT_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// Reads a small text file (a run report).
pub async fn read_text(file: &File) -> Result<String, WebError> {
    if file.size() > MAX_TEXT_BYTES {
        return Err(WebError::new(
            nepa_protocol::ErrorKind::TooLarge,
            format!(
                "{}: {:.1} MB is too large for a run report",
                file.name(),
                file.size() / 1e6
            ),
        ));
    }
    JsFuture::from(file.text())
        .await
        .ok()
        .and_then(|t| t.as_string())
        .ok_or_else(|| {
            WebError::bad_input(format!("{}: cannot read the file as text", file.name()))
        })
}
