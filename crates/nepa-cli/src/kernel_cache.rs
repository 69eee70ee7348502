//! The GPU backends' on-disk caches (Burn's `persistence`, docs/performance.md §1): cubecl
//! keeps its autotune results, and the kernels its SPIR-V and CUDA compilers produced, in one
//! environment folder, so a second run of the same shapes skips most of the first step's
//! compiling and autotuning. (WGSL kernels, which wgpu compiles itself, are not kept; the
//! fusion plans are not either.)
//!
//! Where: `$NEPA_KERNEL_CACHE`, else `$XDG_CACHE_HOME/nepa/kernels`, else
//! `~/.cache/nepa/kernels` (with none of them, cubecl's own default).

use std::path::{Path, PathBuf};

use burn::cubecl::config::cache::CacheConfig;
use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

/// Where the caches go, from the environment's values (`None`: cubecl's own default).
pub fn cache_dir(
    nepa_kernel_cache: Option<&str>,
    xdg_cache_home: Option<&str>,
    home: Option<&Path>,
) -> Option<PathBuf> {
    match (nepa_kernel_cache, xdg_cache_home) {
        (Some(dir), _) if !dir.is_empty() => Some(PathBuf::from(dir)),
        (_, Some(dir)) if !dir.is_empty() => Some(Path::new(dir).join("nepa/kernels")),
        _ => home.map(|h| h.join(".cache/nepa/kernels")),
    }
}

/// Points cubecl's caches (autotune results, compiled kernels) at [`cache_dir`]. Must run
/// before any device starts: cubecl reads its configuration once. A `cubecl.toml` or
/// `burn.toml` in the working directory still gives everything else; its cache folder is
/// replaced by nepa's.
pub fn configure() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let dir = cache_dir(
        std::env::var("NEPA_KERNEL_CACHE").ok().as_deref(),
        std::env::var("XDG_CACHE_HOME").ok().as_deref(),
        home.as_deref(),
    );
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    if let Some(dir) = &dir {
        config.environment.path = CacheConfig::Directory(dir.clone());
    }
    config.compilation.cache = true;
    // `false` when a device already read the configuration (tests that start several): the
    // first caller's settings stay.
    let _ = CubeClRuntimeConfig::try_set(config);
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_folder_follows_the_environment() {
        let home = Some(Path::new("/home/u"));
        assert_eq!(
            cache_dir(None, None, home),
            Some(PathBuf::from("/home/u/.cache/nepa/kernels"))
        );
        assert_eq!(
            cache_dir(None, Some("/x"), home),
            Some(PathBuf::from("/x/nepa/kernels"))
        );
        assert_eq!(
            cache_dir(Some("/c"), Some("/x"), home),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_dir(Some(""), None, home),
            Some(PathBuf::from("/home/u/.cache/nepa/kernels"))
        );
        assert_eq!(cache_dir(None, None, None), None);
    }
}
