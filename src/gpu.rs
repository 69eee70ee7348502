//! Compute device selection in the browser: WebGPU when the browser has it, else Flex (CPU).

use burn::tensor::Device;

/// The device the page computes on, and what the user should be told about it.
pub struct ComputeDevice {
    pub device: Device,
    /// "WebGPU" or "CPU (Flex, wasm)".
    pub backend: &'static str,
    /// Adapter name, limits of interest and f16 support, as WebGPU reports them.
    pub adapter: String,
    /// Why WebGPU is not used, when it is not.
    pub fallback_reason: Option<String>,
}

/// Name of the JS hook the device-lost callback calls (the app registers it).
pub const DEVICE_LOST_HOOK: &str = "nepaDeviceLost";
/// Name of a JS function that destroys the GPU device: a real device loss, on demand, so
/// the recovery path can be tested (and tried by users from the console).
pub const LOSE_DEVICE_HOOK: &str = "nepaLoseDevice";

/// The CPU device, with the reason the page is not on WebGPU.
pub fn flex(reason: String) -> ComputeDevice {
    ComputeDevice {
        device: Device::flex(),
        backend: "CPU (Flex, wasm)",
        adapter: "no GPU".into(),
        fallback_reason: Some(reason),
    }
}

/// Initialises WebGPU asynchronously (the browser cannot block); falls back to Flex.
pub async fn init_device() -> ComputeDevice {
    let has_webgpu = web_sys::window()
        .map(|w| {
            let gpu = js_sys::Reflect::get(&w.navigator(), &"gpu".into())
                .unwrap_or(wasm_bindgen::JsValue::UNDEFINED);
            !gpu.is_undefined() && !gpu.is_null()
        })
        .unwrap_or(false);
    if crate::platform::has_flag("cpu") {
        return flex("the page was opened with ?cpu".into());
    }
    if !has_webgpu {
        return flex("this browser has no WebGPU (navigator.gpu is missing)".into());
    }
    match Device::wgpu_options().init_with_setup_async().await {
        Ok((device, setup)) => {
            let info = setup.adapter.get_info();
            let limits = setup.adapter.limits();
            let f16 = setup
                .adapter
                .features()
                .contains(burn::tensor::wgpu::wgpu::Features::SHADER_F16);
            // wgpu wants a Send callback; it cannot hold the page's state, so it calls a JS
            // hook that the app registers.
            setup.device.set_device_lost_callback(|reason, message| {
                crate::platform::signal(DEVICE_LOST_HOOK, &format!("{reason:?}: {message}"));
            });
            let lose = setup.device.clone();
            crate::platform::expose(
                LOSE_DEVICE_HOOK,
                wasm_bindgen::closure::Closure::new(move |_| lose.destroy()),
            );
            let name = if info.name.is_empty() {
                format!("{:?}", info.backend)
            } else {
                info.name.clone()
            };
            ComputeDevice {
                device,
                backend: "WebGPU",
                adapter: format!(
                    "{name} ({}; max buffer {} MiB, max workgroup {} invocations, f16 {})",
                    if info.driver.is_empty() {
                        "driver unknown"
                    } else {
                        &info.driver
                    },
                    limits.max_buffer_size >> 20,
                    limits.max_compute_invocations_per_workgroup,
                    if f16 { "yes" } else { "no" }
                ),
                fallback_reason: None,
            }
        }
        Err(e) => flex(format!("WebGPU could not start: {e:?}")),
    }
}
