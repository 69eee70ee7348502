//! `nepa visualize` and the page's Explore tab draw the same pixels: the PNGs the binary writes
//! are decoded and compared byte for byte with `nepa::viz::render_panels(analyse(…))` computed
//! here on Flex. The page draws the `RgbImage`s of that same `render_panels` call on its
//! canvases, so equal bytes here mean the CLI and the page show the same pictures.

mod common;

use std::path::Path;
use std::process::Command;

use burn::tensor::Device;
use common::{image_folder, latest, nepa, pretrain, run_ok};
use nepa::image::decode;
use nepa::viz::{
    Analysis, HeadSel, LayerSel, Selection, SimilarityMode, analyse, display_scale, first_query,
    render_panels,
};
use nepa::{LoadOptions, NepaConfig, load_backbone};

/// What `nepa visualize` computes for `image`: the same checkpoint and config the CLI reads (the
/// run's latest.json), analysed on Flex.
fn analysis_of(run: &Path, image: &Path) -> (NepaConfig, Analysis) {
    let sidecar = latest(run);
    let config: NepaConfig = serde_json::from_value(sidecar["config"].clone()).unwrap();
    let bytes = std::fs::read(run.join(sidecar["model_file"].as_str().unwrap())).unwrap();
    let device = Device::flex();
    let (model, _) = load_backbone(&bytes, &config, &device, LoadOptions::default()).unwrap();
    let image = decode(&std::fs::read(image).unwrap()).unwrap();
    let analysis =
        futures_lite::future::block_on(analyse(&model, &config, &image, &device)).unwrap();
    (config, analysis)
}

/// `nepa visualize` of `image` under `run` on Flex, writing into `out`, with `extra` flags.
fn visualize(run: &Path, image: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = nepa();
    cmd.args(["visualize", "--checkpoint"])
        .arg(run)
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .args(["--device", "flex"])
        .args(extra);
    cmd
}

#[test]
fn visualize_writes_exactly_the_panels_of_render_panels() {
    let tmp = tempfile::tempdir().unwrap();
    let data = image_folder(tmp.path(), 8, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 1, &[]));
    let image_path = data.join("a/000.png");
    let out = tmp.path().join("viz");
    // A layer and a head other than the defaults, so the selection is passed through too.
    let flags = ["--row", "2", "--col", "1", "--layer", "1", "--head", "0"];
    run_ok(&mut visualize(&run, &image_path, &out, &flags));

    let (config, analysis) = analysis_of(&run, &image_path);
    let selection = Selection {
        query: (2, 1),
        layer: LayerSel::Layer(1),
        head: HeadSel::Head(0),
        similarity: SimilarityMode::Softmax,
    };
    let scale = display_scale(&config);
    // 16-px model input → ×16 → 256-px panels.
    assert_eq!(scale, 16);
    let shown = render_panels(&analysis, &selection, scale).unwrap();

    let names: Vec<String> = shown.panels.iter().map(|p| p.file_name()).collect();
    assert_eq!(
        names,
        [
            "query.png",
            "attention.png",
            "similarity.png",
            "predictability.png",
            "pca_z.png",
            "pca_z_hat.png"
        ]
    );
    for panel in &shown.panels {
        let written = decode(&std::fs::read(out.join(panel.file_name())).unwrap()).unwrap();
        assert_eq!((written.width, written.height), (256, 256), "{}", panel.id);
        // Real content: the pixels vary.
        assert!(
            written.pixels.iter().any(|&p| p != written.pixels[0]),
            "{} is flat",
            panel.id
        );
        assert!(
            written == panel.image,
            "{}: the CLI's PNG differs from render_panels in {} of {} bytes",
            panel.id,
            written
                .pixels
                .iter()
                .zip(&panel.image.pixels)
                .filter(|(a, b)| a != b)
                .count(),
            written.pixels.len()
        );
    }
}

#[test]
fn without_a_patch_visualize_takes_the_first_views_choice() {
    let tmp = tempfile::tempdir().unwrap();
    // 16-px images with 4-px patches: a 4×4 grid, so the rule has a centre to choose in.
    let data = image_folder(tmp.path(), 8, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut pretrain(&data, &run, 1, &[]));
    let image_path = data.join("b/001.png");
    let out = tmp.path().join("viz");
    let stdout =
        String::from_utf8_lossy(&run_ok(&mut visualize(&run, &image_path, &out, &[])).stdout)
            .into_owned();

    let (_, analysis) = analysis_of(&run, &image_path);
    let (row, col) = first_query(&analysis.maps);
    assert!(
        stdout.contains(&format!("query patch ({row}, {col})")),
        "expected ({row}, {col}): {stdout}"
    );
    // Each panel's file is printed with its caption.
    assert!(
        stdout.contains("  attention.png: Where the model looks"),
        "{stdout}"
    );

    // --row without --col is refused, naming the missing one.
    let out = visualize(&run, &image_path, &out, &["--row", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--col"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
