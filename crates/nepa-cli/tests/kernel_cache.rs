//! The kernel cache (docs/performance.md §1, "The kernel cache"): a run on wgpu (Mesa lavapipe
//! on a CPU-only machine) names the folder on its second line and leaves cubecl's autotune
//! results there, and nowhere else (not in the working directory, not in cubecl's folder under
//! the home folder), so that the next run of the same shapes skips autotuning.

mod common;

use std::path::{Path, PathBuf};

use common::{nepa, run_ok};

/// Every file under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .flat_map(|e| match e.path() {
            p if p.is_dir() => files(&p),
            p => vec![p],
        })
        .collect()
}

#[test]
fn a_wgpu_run_keeps_its_autotune_results_in_the_kernel_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let [cache, work, home] = ["kernels", "work", "home"].map(|d| tmp.path().join(d));
    for dir in [&work, &home] {
        std::fs::create_dir_all(dir).unwrap();
    }
    // A small training bench: 2 layers, D 32, 32 px, patch 8.
    let out = run_ok(
        nepa()
            .current_dir(&work)
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .env("NEPA_KERNEL_CACHE", &cache)
            .args(["bench", "--device", "wgpu", "--dim", "32", "--depth", "2"])
            .args(["--heads", "2", "--image-size", "32", "--patch-size", "8"])
            .args([
                "--batch", "2", "--steps", "1", "--warmup", "1", "--runs", "1",
            ]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("kernel cache: {}", cache.display())),
        "{stderr}"
    );
    let kept = files(&cache);
    println!("kept {} files: {kept:?}", kept.len());
    assert!(
        !kept.is_empty(),
        "nothing kept in {}:\n{stderr}",
        cache.display()
    );
    assert_eq!(
        files(&work),
        Vec::<PathBuf>::new(),
        "in the working directory"
    );
    assert_eq!(files(&home), Vec::<PathBuf>::new(), "under the home folder");
}
