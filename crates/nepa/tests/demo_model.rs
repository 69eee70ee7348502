//! What a visitor sees first: the bundled demo model (static/nepa-demo.safetensors) and the
//! page's first view (docs/nepa.md §6.6) on the three bundled photos (static/photos).
//!
//! The model: a 12×12 grid or finer, at most 8 MB, and the record of how it was made
//! (scripts/make-demo-checkpoint.sh) in its metadata and in static/nepa-demo.md, with no image
//! that may not ship among its training data.
//!
//! The first view: the rule's query must be inside each photo's subject, off the border, the
//! same on a second run, and where it was (or next to it) when every pixel of the photo is one
//! level brighter, and not the same patch on all three photos.

use burn::tensor::Device;
use futures_lite::future::block_on;
use nepa::LoadOptions;
use nepa::checkpoint::{infer_config, load_backbone};
use nepa::image::{RgbImage, decode};
use nepa::viz::{analyse, first_query};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Each photo's subject as boxes `[x0, x1, y0, y1]` in fractions of the centre square the
/// model sees (the evaluation transform crops the shorter side), drawn by eye: the astronaut's
/// head and her suit below the shoulders (not the flag on the left, the shuttle model on the
/// right or the helmet at the bottom right), the cat's face, the cup (rim, coffee, body, handle).
const SUBJECTS: [(&str, &[[f64; 4]]); 3] = [
    (
        "astronaut.jpg",
        &[[0.28, 0.62, 0.03, 0.42], [0.05, 0.70, 0.42, 1.0]],
    ),
    ("chelsea.jpg", &[[0.05, 0.95, 0.05, 1.0]]),
    ("coffee.jpg", &[[0.18, 0.78, 0.03, 0.72]]),
];

#[test]
fn the_demo_model_has_a_fine_grid_fits_8_mb_and_records_how_it_was_made() {
    let bytes = std::fs::read(format!("{ROOT}/static/nepa-demo.safetensors")).unwrap();
    assert!(bytes.len() <= 8_000_000, "{} bytes", bytes.len());
    let (rows, cols) = infer_config(&bytes).unwrap().grid();
    assert!(rows >= 12 && cols >= 12, "grid {rows}×{cols}");

    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().clone().unwrap_or_default();
    let record = |key: &str| {
        metadata
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in the checkpoint's metadata"))
            .clone()
    };
    let (command, data, licences) = (
        record("nepa_demo_command"),
        record("nepa_demo_data"),
        record("nepa_demo_licences"),
    );
    assert!(command.starts_with("nepa pretrain "), "{command}");
    // One `SHA-256  path` line per training image; every one shippable and under a licence listed.
    let images: Vec<&str> = data.lines().collect();
    assert!(images.len() >= 20, "{} training images", images.len());
    for line in &images {
        let (sha, path) = line.split_once("  ").unwrap();
        assert_eq!(sha.len(), 64, "{line}");
        let name = path.rsplit('/').next().unwrap();
        assert!(
            !name.starts_with("motorcycle_left"),
            "{path}: research data, not to ship"
        );
        assert!(licences.contains(name), "{path}: no licence listed");
    }
    // static/nepa-demo.md says the same, for readers of the repository.
    let note = std::fs::read_to_string(format!("{ROOT}/static/nepa-demo.md")).unwrap();
    assert!(
        note.contains(&command) && note.contains(&data),
        "static/nepa-demo.md is stale"
    );
}

fn brighter(image: &RgbImage) -> RgbImage {
    let pixels = image.pixels.iter().map(|&v| v.saturating_add(1)).collect();
    RgbImage::new(image.width, image.height, pixels)
}

#[test]
fn the_first_view_opens_inside_each_bundled_photos_subject() {
    let device = Device::flex();
    let bytes = std::fs::read(format!("{ROOT}/static/nepa-demo.safetensors")).unwrap();
    let config = infer_config(&bytes).unwrap();
    let (model, _) = load_backbone(&bytes, &config, &device, LoadOptions::default()).unwrap();
    let (rows, cols) = config.grid();
    let choose = |image: &RgbImage| {
        let analysis = block_on(analyse(&model, &config, image, &device)).unwrap();
        first_query(&analysis.maps)
    };
    let mut chosen = vec![];
    for (name, boxes) in SUBJECTS {
        let image =
            decode(&std::fs::read(format!("{ROOT}/static/photos/{name}")).unwrap()).unwrap();
        let (r, c) = choose(&image);
        let (x, y) = (
            (c as f64 + 0.5) / cols as f64,
            (r as f64 + 0.5) / rows as f64,
        );
        println!("{name}: query patch ({r}, {c}) of {rows}×{cols}, centre at ({x:.2}, {y:.2})");
        assert!(
            boxes
                .iter()
                .any(|&[x0, x1, y0, y1]| (x0..=x1).contains(&x) && (y0..=y1).contains(&y)),
            "{name}: patch ({r}, {c}) is outside the subject"
        );
        assert!(
            r > 0 && c > 0 && r + 1 < rows && c + 1 < cols,
            "{name}: patch ({r}, {c}) is on the border"
        );
        assert_eq!(
            choose(&image),
            (r, c),
            "{name}: a second run chose otherwise"
        );
        chosen.push((r, c));
        let (r2, c2) = choose(&brighter(&image));
        assert!(
            r.abs_diff(r2) <= 1 && c.abs_diff(c2) <= 1,
            "{name}: one level brighter moved the query from ({r}, {c}) to ({r2}, {c2})"
        );
    }
    // The choice follows each photo, not a fixed place: the centre prior alone (say, the first
    // centre patch) would put all three queries on one patch.
    chosen.dedup();
    assert!(
        chosen.len() > 1,
        "every photo got the same query {chosen:?}"
    );
}
