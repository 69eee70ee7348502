//! Compute device selection: `--device wgpu|vulkan|cuda|flex`, default the best GPU.

use anyhow::{Result, bail};
use burn::tensor::Device;
use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The best available: a GPU through wgpu, else Flex (CPU).
    Auto,
    /// wgpu with its automatic graphics API (Vulkan, Metal, DX12 or GL).
    Wgpu,
    /// wgpu on Vulkan only.
    Vulkan,
    /// CUDA (build with `--features cuda`).
    Cuda,
    /// Flex, the pure-Rust CPU backend.
    Flex,
}

/// An initialised device and a human-readable description of it.
pub struct Selected {
    pub device: Device,
    pub backend: String,
    pub adapter: String,
}

fn wgpu_device(vulkan_only: bool) -> Result<Selected> {
    use burn::tensor::wgpu::WgpuBackend;
    let mut options = Device::wgpu_options();
    if vulkan_only {
        options = options.graphics_api(WgpuBackend::Vulkan);
    }
    let (device, setup) = options
        .init_with_setup()
        .map_err(|e| anyhow::anyhow!("wgpu could not start: {e:?}"))?;
    let info = setup.adapter.get_info();
    let adapter = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
    Ok(Selected {
        device,
        backend: if vulkan_only { "vulkan" } else { "wgpu" }.into(),
        adapter,
    })
}

fn flex() -> Selected {
    Selected {
        device: Device::flex(),
        backend: "flex".into(),
        adapter: "CPU (Flex, pure Rust)".into(),
    }
}

pub fn select(choice: DeviceChoice) -> Result<Selected> {
    match choice {
        DeviceChoice::Flex => Ok(flex()),
        DeviceChoice::Wgpu => wgpu_device(false),
        DeviceChoice::Vulkan => wgpu_device(true),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Auto => match wgpu_device(false) {
            Ok(selected) => Ok(selected),
            Err(e) => {
                eprintln!("note: no GPU through wgpu ({e}); using Flex on the CPU");
                Ok(flex())
            }
        },
    }
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Selected> {
    Ok(Selected {
        device: Device::cuda(0usize),
        backend: "cuda".into(),
        adapter: "CUDA device 0".into(),
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Selected> {
    bail!(
        "this build has no CUDA backend: rebuild with `cargo build --release -p nepa-cli --features cuda`"
    )
}
