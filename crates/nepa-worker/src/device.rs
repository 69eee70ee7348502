//! Picking the compute device: WebGPU on a hardware adapter, else Flex (the CPU), with the
//! reason said (docs/web-architecture.md, "Picking the device").

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::tensor::Device;
use burn::tensor::wgpu::wgpu;
use nepa_protocol::{DeviceInfo, DevicePreference, Reply, WebError};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::bridge::{self, Responder};
use crate::state::{ComputeDevice, Engine};

#[wasm_bindgen(inline_js = r#"
export function has_webgpu() {
  const nav = globalThis.navigator;
  return !!(nav && nav.gpu);
}
// The adapter's name when it is a software rasteriser, else null.
export async function software_adapter() {
  const gpu = globalThis.navigator && globalThis.navigator.gpu;
  if (!gpu) return null;
  let adapter = null;
  try { adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }); } catch (e) { return null; }
  if (!adapter) return null;
  let info = adapter.info;
  if (!info && typeof adapter.requestAdapterInfo === 'function') {
    try { info = await adapter.requestAdapterInfo(); } catch (e) { info = null; }
  }
  info = info || {};
  const text = [info.vendor, info.architecture, info.device, info.description]
    .filter((s) => typeof s === 'string' && s.length > 0).join(' ');
  const soft = /swiftshader|llvmpipe|lavapipe|\bwarp\b|basic render/i.test(text);
  if (adapter.isFallbackAdapter || info.isFallbackAdapter || soft) return text || 'a fallback adapter';
  return null;
}
"#)]
extern "C" {
    fn has_webgpu() -> bool;
    fn software_adapter() -> js_sys::Promise;
}

/// The WebGPU device, initialised once (burn refuses a second initialisation).
struct WebGpu {
    device: Device,
    adapter: String,
    wgpu: wgpu::Device,
}

thread_local! {
    static WEBGPU: RefCell<Option<Rc<WebGpu>>> = const { RefCell::new(None) };
    static LOST: Cell<bool> = const { Cell::new(false) };
}

const CPU: &str = "CPU (Flex, wasm)";

fn flex(reason: impl Into<String>) -> ComputeDevice {
    ComputeDevice {
        device: Device::flex(),
        backend: CPU,
        adapter: "no GPU".into(),
        fallback_reason: Some(reason.into()),
        software_adapter: None,
    }
}

fn adapter_text(setup: &burn::tensor::wgpu::WgpuSetup) -> String {
    let info = setup.adapter.get_info();
    let limits = setup.adapter.limits();
    let f16 = setup
        .adapter
        .features()
        .contains(wgpu::Features::SHADER_F16);
    let name = if info.name.is_empty() {
        format!("{:?}", info.backend)
    } else {
        info.name.clone()
    };
    let driver = if info.driver.is_empty() {
        "driver unknown"
    } else {
        &info.driver
    };
    format!(
        "{name} ({driver}; max buffer {} MiB, max workgroup {} invocations, f16 {})",
        limits.max_buffer_size >> 20,
        limits.max_compute_invocations_per_workgroup,
        if f16 { "yes" } else { "no" }
    )
}

/// The WebGPU device, initialising it on first use.
async fn webgpu() -> Result<Rc<WebGpu>, String> {
    if let Some(gpu) = WEBGPU.with(|g| g.borrow().clone()) {
        return Ok(gpu);
    }
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("{e:?}"))?;
    // wgpu wants a Send callback: it captures nothing and posts the event itself.
    setup.device.set_device_lost_callback(|reason, message| {
        LOST.with(|l| l.set(true));
        bridge::event(Reply::DeviceLost {
            reason: format!("{reason:?}: {message}"),
        });
    });
    let gpu = Rc::new(WebGpu {
        device,
        adapter: adapter_text(&setup),
        wgpu: setup.device.clone(),
    });
    WEBGPU.with(|g| *g.borrow_mut() = Some(gpu.clone()));
    Ok(gpu)
}

/// The software adapter's name, if the browser's adapter is one.
async fn software_name() -> Option<String> {
    JsFuture::from(software_adapter()).await.ok()?.as_string()
}

/// Picks the device for `preference`; `switching`: not the first pick (a loss or the user).
async fn pick(preference: DevicePreference, switching: bool) -> ComputeDevice {
    let lost = LOST.with(|l| l.get());
    if preference == DevicePreference::Cpu {
        return flex(match (switching, lost) {
            (_, true) => "the GPU device was lost",
            (false, false) => "the page was opened with ?cpu",
            (true, false) => "switched to the CPU on request",
        });
    }
    if !has_webgpu() {
        return flex("this browser has no WebGPU (navigator.gpu is missing)");
    }
    if lost {
        return flex("the GPU device was lost; reload the page to use WebGPU again");
    }
    if preference == DevicePreference::Auto
        && let Some(name) = software_name().await
    {
        let mut cpu = flex(format!(
            "the browser's WebGPU adapter is a software rasteriser ({name}), slower than the \
             CPU backend; use it anyway with the switch"
        ));
        cpu.software_adapter = Some(name);
        return cpu;
    }
    match webgpu().await {
        Ok(gpu) => ComputeDevice {
            device: gpu.device.clone(),
            backend: "WebGPU",
            adapter: gpu.adapter.clone(),
            fallback_reason: None,
            software_adapter: None,
        },
        Err(e) => flex(format!("WebGPU could not start: {e}")),
    }
}

/// `Start` and `SwitchDevice`: picks the device, loads the model (and the fine-tuned
/// classifier) again on it, announcing the model (`ModelUpdated`), then answers `Started`.
pub async fn start(engine: Rc<Engine>, r: Responder, preference: DevicePreference) {
    let switching = engine.device.borrow().is_some();
    engine.starting.set(true);
    let device = Rc::new(pick(preference, switching).await);
    *engine.device.borrow_mut() = Some(device.clone());
    engine.starting.set(false);
    crate::models::reload_on_device(&engine, &r, &device);
    r.reply(Reply::Started(DeviceInfo {
        backend: device.backend.into(),
        adapter: device.adapter.clone(),
        fallback_reason: device.fallback_reason.clone(),
        software_adapter: device.software_adapter.clone(),
        compare_description: crate::compare::run_description(),
    }));
}

/// `LoseDevice`: destroys the WebGPU device (a real loss, to test the recovery path).
pub fn lose(engine: &Engine) -> Result<Reply, WebError> {
    let on_gpu = engine
        .device
        .borrow()
        .as_ref()
        .is_some_and(|d| d.fallback_reason.is_none());
    let gpu = WEBGPU.with(|g| g.borrow().clone());
    match gpu {
        Some(gpu) if on_gpu => {
            gpu.wgpu.destroy();
            Ok(Reply::Done)
        }
        _ => Err(WebError::not_ready(
            "the engine is not on WebGPU: there is no GPU device to lose",
        )),
    }
}
