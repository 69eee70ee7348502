//! Compute device selection in the browser: WebGPU when the browser has it, else Flex (CPU).

use burn::tensor::Device;

/// The device the page computes on, and what the user should be told about it.
pub struct ComputeDevice {
    pub device: Device,
    /// "WebGPU" or "CPU (Flex)".
    pub backend: &'static str,
    /// Why WebGPU is not used, when it is not.
    pub fallback_reason: Option<String>,
}

/// Initialises WebGPU asynchronously (the browser cannot block); falls back to Flex.
pub async fn init_device() -> ComputeDevice {
    let has_webgpu = web_sys::window()
        .map(|w| js_sys_has_gpu(&w.navigator()))
        .unwrap_or(false);
    if !has_webgpu {
        return ComputeDevice {
            device: Device::flex(),
            backend: "CPU (Flex)",
            fallback_reason: Some("this browser has no WebGPU (navigator.gpu is missing)".into()),
        };
    }
    match Device::wgpu_options().init_async().await {
        Ok(device) => ComputeDevice {
            device,
            backend: "WebGPU",
            fallback_reason: None,
        },
        Err(e) => ComputeDevice {
            device: Device::flex(),
            backend: "CPU (Flex)",
            fallback_reason: Some(format!("WebGPU could not start: {e:?}")),
        },
    }
}

fn js_sys_has_gpu(navigator: &web_sys::Navigator) -> bool {
    let gpu =
        js_sys::Reflect::get(navigator, &"gpu".into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
    !gpu.is_undefined() && !gpu.is_null()
}
