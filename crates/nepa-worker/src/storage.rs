//! The origin-private file system (OPFS), where the last fine-tuned model is kept. A few
//! lines of JS: the web-sys bindings for OPFS are still behind unstable flags.

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::platform::describe;

#[wasm_bindgen(inline_js = r#"
// Writes `name` so that a crash or a full disk never leaves it half-written: the bytes go to
// a temporary entry first, which is then moved into place.
async function write_atomic(name, bytes) {
  const root = await navigator.storage.getDirectory();
  const partial = name + '.partial';
  const tmp = await root.getFileHandle(partial, { create: true });
  const writable = await tmp.createWritable();
  try {
    await writable.write(bytes);
    await writable.close();
  } catch (e) {
    await writable.abort().catch(() => {});
    await root.removeEntry(partial).catch(() => {});
    throw e;
  }
  if (typeof tmp.move === 'function') {
    try {
      await tmp.move(name);
      return;
    } catch (e) {
      if (e?.name !== 'InvalidModificationError' && e?.name !== 'NoModificationAllowedError') throw e;
    }
    await root.removeEntry(name).catch(() => {});
    await tmp.move(name);
    return;
  }
  const target = await root.getFileHandle(name, { create: true });
  const out = await target.createWritable();
  await out.write(await tmp.getFile());
  await out.close();
  await root.removeEntry(partial);
}
export function opfs_write_atomic(name, bytes) {
  // Copied before the first await: the view points into wasm memory.
  return write_atomic(name, bytes.slice());
}
export async function opfs_remove(name) {
  const root = await navigator.storage.getDirectory();
  await root.removeEntry(name).catch((e) => { if (e?.name !== 'NotFoundError') throw e; });
}
export async function opfs_read(name) {
  try {
    const root = await navigator.storage.getDirectory();
    const handle = await root.getFileHandle(name);
    return new Uint8Array(await (await handle.getFile()).arrayBuffer());
  } catch (e) {
    if (e && e.name === 'NotFoundError') return null;
    throw e;
  }
}
"#)]
extern "C" {
    fn opfs_write_atomic(name: &str, bytes: &[u8]) -> js_sys::Promise;
    fn opfs_remove(name: &str) -> js_sys::Promise;
    fn opfs_read(name: &str) -> js_sys::Promise;
}

/// Writes a file through a temporary entry moved into place, so the previous file stays
/// whole if writing fails.
pub async fn store(name: &str, bytes: &[u8]) -> Result<(), String> {
    JsFuture::from(opfs_write_atomic(name, bytes))
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "browser storage (OPFS) refused to save {name}: {}",
                describe(&e)
            )
        })
}

/// Reads a file; `None` if there is none.
pub async fn load(name: &str) -> Result<Option<Vec<u8>>, String> {
    let value = JsFuture::from(opfs_read(name)).await.map_err(|e| {
        format!(
            "browser storage (OPFS) could not read {name}: {}",
            describe(&e)
        )
    })?;
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    Ok(Some(js_sys::Uint8Array::new(&value).to_vec()))
}

/// Removes a file (no error if there is none).
pub async fn remove(name: &str) -> Result<(), String> {
    JsFuture::from(opfs_remove(name))
        .await
        .map(|_| ())
        .map_err(|e| {
            format!(
                "browser storage (OPFS) could not remove {name}: {}",
                describe(&e)
            )
        })
}
