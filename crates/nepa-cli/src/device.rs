//! Compute device selection: `--device wgpu|vulkan|cuda|flex`, default the best GPU.

use std::fs;
use std::path::Path;

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

/// A wgpu device and whether its adapter is a software rasteriser ([`is_software_adapter`]).
fn wgpu_device(vulkan_only: bool) -> Result<(Selected, bool)> {
    use burn::tensor::wgpu::WgpuBackend;
    quiet_mesa();
    let mut options = Device::wgpu_options();
    if vulkan_only {
        options = options.graphics_api(WgpuBackend::Vulkan);
    }
    let (device, setup) = options
        .init_with_setup()
        .map_err(|e| anyhow::anyhow!("wgpu could not start: {e:?}"))?;
    let info = setup.adapter.get_info();
    let adapter = format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type);
    let software = is_software_adapter(&info.name, &info.driver, info.device_type);
    let selected = Selected {
        device,
        backend: if vulkan_only { "vulkan" } else { "wgpu" }.into(),
        adapter,
    };
    Ok((selected, software))
}

/// Names (lower case) of the software rasterisers a machine without a GPU offers: Mesa's
/// llvmpipe (its Vulkan driver, lavapipe, names its adapter "llvmpipe" too), Google's
/// SwiftShader and Microsoft's WARP ("Microsoft Basic Render Driver").
const SOFTWARE_ADAPTERS: [&str; 5] = [
    "llvmpipe",
    "lavapipe",
    "swiftshader",
    "microsoft basic render driver",
    "warp",
];

/// Whether an adapter renders on the CPU: wgpu says so (device type `Cpu`), or its name or
/// driver is one of [`SOFTWARE_ADAPTERS`] (a driver may report a software rasteriser with
/// another type, e.g. `Other`). `warp` counts only as a whole word, so that no GPU name
/// containing those letters is taken for it.
pub fn is_software_adapter(
    name: &str,
    driver: &str,
    device_type: burn::tensor::wgpu::wgpu::DeviceType,
) -> bool {
    if device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu {
        return true;
    }
    [name, driver].iter().any(|text| {
        let text = text.to_lowercase();
        let words: Vec<&str> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        SOFTWARE_ADAPTERS.iter().any(|soft| {
            if soft.contains(' ') {
                text.contains(soft)
            } else if *soft == "warp" {
                words.contains(soft)
            } else {
                words.iter().any(|w| w.starts_with(soft))
            }
        })
    })
}

/// Mesa prints "XDG_RUNTIME_DIR is invalid or not set" on every step without a runtime
/// folder (a server, a container, a CI job). Give it a private one, as a login session would.
fn quiet_mesa() {
    let valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| Path::new(&d).is_dir());
    if valid {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nepa-runtime-{}", std::process::id()));
    if fs::create_dir_all(&dir).is_ok() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        }
        // SAFETY: called before any wgpu/Mesa thread exists (device selection is the first
        // thing a command does), so no other thread reads the environment concurrently.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

fn flex() -> Selected {
    Selected {
        device: Device::flex(),
        backend: "flex".into(),
        adapter: "CPU (Flex, pure Rust)".into(),
    }
}

/// What `--device auto` takes, given what wgpu offered: a real GPU, else Flex. A software
/// adapter renders on the CPU far slower than Flex computes there (measured in
/// docs/results/compare.md), so it is used only when named.
fn auto_choice(wgpu: Result<(Selected, bool)>) -> (Selected, String) {
    match wgpu {
        Ok((selected, false)) => (selected, "a GPU through wgpu".into()),
        Ok((software, true)) => (
            flex(),
            format!(
                "wgpu offers only a software adapter, {}, which is slower than Flex on the CPU \
                 (--device wgpu uses it anyway)",
                software.adapter
            ),
        ),
        Err(e) => (flex(), format!("no GPU through wgpu ({e})")),
    }
}

/// Starts the chosen device and says, on the run's first line, which one and why.
pub fn select(choice: DeviceChoice) -> Result<Selected> {
    // Before any device starts: cubecl reads its settings once.
    let cache = match choice {
        DeviceChoice::Flex => None,
        _ => Some(crate::kernel_cache::configure()),
    };
    let (selected, why) = match choice {
        DeviceChoice::Flex => (flex(), "asked for (--device flex)".to_string()),
        DeviceChoice::Wgpu => (wgpu_device(false)?.0, "asked for (--device wgpu)".into()),
        DeviceChoice::Vulkan => (wgpu_device(true)?.0, "asked for (--device vulkan)".into()),
        DeviceChoice::Cuda => (cuda()?, "asked for (--device cuda)".into()),
        DeviceChoice::Auto => match cuda() {
            Ok(selected) => (selected, "a CUDA GPU".into()),
            // Without the `cuda` feature there is nothing to say about CUDA.
            Err(e) if cfg!(feature = "cuda") => {
                let (selected, why) = auto_choice(wgpu_device(false));
                (selected, format!("{why}; CUDA: {e}"))
            }
            Err(_) => auto_choice(wgpu_device(false)),
        },
    };
    eprintln!(
        "device: {} — {} — {why}",
        selected.backend, selected.adapter
    );
    if selected.backend != "flex" {
        match cache.flatten() {
            Some(dir) => eprintln!("kernel cache: {} (NEPA_KERNEL_CACHE)", dir.display()),
            None => eprintln!("kernel cache: cubecl's default folder (no home folder)"),
        }
    }
    Ok(selected)
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Selected> {
    let device = Device::cuda(0usize);
    check_usable(&device).map_err(|message| {
        anyhow::anyhow!(
            "CUDA is not usable here ({message}). The CUDA build needs an NVIDIA driver \
             (libcuda.so.1) and NVRTC (libnvrtc.so, from the CUDA toolkit) at run time; \
             --device wgpu or --device flex run without them"
        )
    })?;
    Ok(Selected {
        device,
        backend: "cuda".into(),
        adapter: "CUDA device 0".into(),
    })
}

/// Runs one small sum on `device`. A backend that cannot start (cudarc panics when it cannot
/// load libcuda or libnvrtc) gives its message as an error instead of ending the process.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn check_usable(device: &Device) -> std::result::Result<(), String> {
    use burn::tensor::Tensor;
    let sum = catch_panic(|| Tensor::<1>::ones([4], device).sum().into_scalar::<f32>())?;
    if sum == 4.0 {
        Ok(())
    } else {
        Err(format!("a test sum of four ones gave {sum}"))
    }
}

/// `f()`, or the message of the panic it raised (printed by no panic hook meanwhile).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn catch_panic<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend panicked while starting".into())
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Selected> {
    bail!(
        "this build has no CUDA backend: rebuild with `cargo build --release -p nepa-cli --features cuda`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(adapter: &str, software: bool) -> Result<(Selected, bool)> {
        let selected = Selected {
            device: Device::flex(),
            backend: "wgpu".into(),
            adapter: adapter.into(),
        };
        Ok((selected, software))
    }

    /// What `--device cuda` does on a machine without a driver: cudarc's panic becomes the
    /// error's message, and the process goes on.
    #[test]
    fn a_backend_that_panics_while_starting_gives_an_error() {
        let err = catch_panic(|| -> f32 {
            panic!("Unable to dynamically load the \"cuda\" shared library")
        })
        .unwrap_err();
        assert!(err.contains("cuda\" shared library"), "{err}");
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(check_usable(&Device::flex()), Ok(()));
    }

    #[test]
    fn auto_never_takes_a_software_adapter() {
        let (chosen, why) = auto_choice(offered(
            "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)",
            true,
        ));
        assert_eq!(chosen.backend, "flex");
        assert!(
            why.contains("software adapter") && why.contains("llvmpipe"),
            "{why}"
        );
        let (chosen, _) = auto_choice(offered("NVIDIA H100 (Vulkan, DiscreteGpu)", false));
        assert_eq!(chosen.backend, "wgpu");
        let (chosen, why) = auto_choice(Err(anyhow::anyhow!("no adapter")));
        assert_eq!(chosen.backend, "flex");
        assert!(why.contains("no GPU"), "{why}");
    }

    #[test]
    fn software_adapters_are_known_by_type_and_by_name() {
        use burn::tensor::wgpu::wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu, Other};
        // (name, driver, type): adapter names as wgpu reports them.
        let software = [
            ("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe", Cpu),
            ("llvmpipe (LLVM 15.0.6, 256 bits)", "llvmpipe", Other),
            ("llvmpipe (LLVM 17.0.6, 256 bits)", "", IntegratedGpu),
            ("lavapipe", "", Other),
            ("Vulkan device", "lavapipe", Other),
            ("SwiftShader Device (Subzero)", "SwiftShader driver", Other),
            ("Google SwiftShader", "", DiscreteGpu),
            ("Microsoft Basic Render Driver", "", Other),
            ("WARP", "", IntegratedGpu),
            ("Some GPU", "", Cpu),
        ];
        for (name, driver, kind) in software {
            assert!(
                is_software_adapter(name, driver, kind),
                "{name} / {driver} / {kind:?} is a software adapter"
            );
        }
        let hardware = [
            ("NVIDIA H100 80GB HBM3", "NVIDIA", DiscreteGpu),
            ("AMD Radeon RX 7900 XTX (RADV NAVI31)", "radv", DiscreteGpu),
            (
                "Intel(R) UHD Graphics 620 (KBL GT2)",
                "Intel open-source Mesa driver",
                IntegratedGpu,
            ),
            ("Apple M2", "", IntegratedGpu),
            ("Warpath 9000", "", DiscreteGpu),
            ("NVIDIA GeForce RTX 4090", "NVIDIA", Other),
        ];
        for (name, driver, kind) in hardware {
            assert!(
                !is_software_adapter(name, driver, kind),
                "{name} / {driver} / {kind:?} is a GPU"
            );
        }
    }
}
