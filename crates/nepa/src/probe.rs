//! What a pretrained backbone's features carry, without training a head: the held-out NEPA
//! loss and a weighted k-NN classifier on the mean-pooled ẑ of the patch tokens (the usual
//! self-supervised probe: cosine similarity, the k = 20 nearest neighbours vote with weight
//! exp(s / τ), τ = 0.07). `nepa eval` runs it on a pretraining checkpoint.
//!
//! Reads are asynchronous (`into_data_async`) so the same code runs in the browser; native
//! callers block on the futures.

use burn::tensor::{Device, Tensor};

use crate::data::{ImageSet, build_batch};
use crate::error::NepaError;
use crate::image::preprocess_eval;
use crate::loss::{LossOptions, l2_normalize, prediction_loss};
use crate::model::{ForwardOptions, NepaModel};
use crate::train::{argmax_rows, read_f32};

/// The features of a set of images: one L2-normalised row of `dim` values per image, and the
/// mean NEPA loss over the set (`None` for features no model made, [`pixel_features`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    pub dim: usize,
    pub rows: Vec<f32>,
    pub loss: Option<f64>,
}

/// The baseline a model's features must beat: each image's pixels under the same evaluation
/// transform as [`pooled_features`] (shorter side resized, centre crop to `image_size`,
/// normalised to [−1, 1]), flattened and L2-normalised.
pub fn pixel_features(set: &ImageSet, image_size: [usize; 2]) -> Result<Features, NepaError> {
    let [h, w] = image_size;
    if h == 0 || w == 0 {
        return Err(NepaError::Input(format!(
            "pixel features need a size, not {h}×{w}"
        )));
    }
    let mut rows = Vec::with_capacity(set.len() * 3 * h * w);
    for image in &set.images {
        let pixels = preprocess_eval(image, h, w);
        let norm = pixels
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        rows.extend(pixels.iter().map(|&v| (f64::from(v) / norm) as f32));
    }
    Ok(Features {
        dim: 3 * h * w,
        rows,
        loss: None,
    })
}

/// Mean-pooled, L2-normalised ẑ of the patch tokens of every image of `set` (the evaluation
/// transform: shorter side resized, centre crop), `batch_size` images per forward pass.
pub async fn pooled_features(
    model: &NepaModel,
    image_size: [usize; 2],
    set: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> Result<Features, NepaError> {
    let mut rows = Vec::new();
    let (mut loss_sum, mut dim) = (0.0, 0);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let images: Vec<_> = chunk.iter().map(|&i| &set.images[i]).collect();
        let pixels = build_batch(&images, image_size, |image, h, w| {
            Ok(preprocess_eval(image, h, w))
        })?;
        let out = model.forward(Tensor::from_data(pixels, device), &ForwardOptions::eval());
        let [b, t, d] = out.last_hidden_state.dims();
        dim = d;
        let loss = prediction_loss(
            out.last_hidden_state.clone(),
            out.input_embedding,
            LossOptions::default(),
        );
        loss_sum += read_f32(loss).await?[0] as f64 * b as f64;
        let pooled = l2_normalize(out.last_hidden_state.narrow(1, 1, t - 1).mean_dim(1), 1e-12)
            .reshape([b * d]);
        rows.extend(read_f32(pooled).await?);
    }
    Ok(Features {
        dim,
        rows,
        loss: Some(loss_sum / set.len().max(1) as f64),
    })
}

/// The k-NN probe's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnProbe {
    /// Neighbours that vote (fewer when the memory is smaller).
    pub k: usize,
    /// τ of the vote weight exp(similarity / τ).
    pub temperature: f32,
}

impl Default for KnnProbe {
    fn default() -> Self {
        Self {
            k: 20,
            temperature: 0.07,
        }
    }
}

/// How the probe did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnAccuracy {
    /// Neighbours that voted.
    pub k: usize,
    pub correct: usize,
    pub queries: usize,
}

impl KnnAccuracy {
    pub fn top1(&self) -> f64 {
        self.correct as f64 / self.queries.max(1) as f64
    }
}

impl KnnProbe {
    /// Classifies every query row by its neighbours among the memory rows (rows of `dim`
    /// L2-normalised values, so the dot product is the cosine). `memory: None` is
    /// leave-one-out: the queries are their own memory and no image is its own neighbour.
    pub fn accuracy(
        &self,
        queries: &Features,
        query_labels: &[usize],
        memory: Option<(&Features, &[usize])>,
    ) -> Result<KnnAccuracy, NepaError> {
        let dim = queries.dim;
        let (memory_rows, memory_labels) = match memory {
            Some((m, labels)) => (&m.rows, labels),
            None => (&queries.rows, query_labels),
        };
        let leave_one_out = memory.is_none();
        if dim == 0
            || memory.is_some_and(|(m, _)| m.dim != dim)
            || queries.rows.len() != query_labels.len() * dim
            || memory_rows.len() != memory_labels.len() * dim
        {
            return Err(NepaError::Input(
                "k-NN: features and labels do not match in number or width".into(),
            ));
        }
        let n_memory = memory_labels
            .len()
            .saturating_sub(usize::from(leave_one_out));
        if n_memory == 0 || self.k == 0 {
            return Err(NepaError::Input(
                "k-NN needs at least two labelled images".into(),
            ));
        }
        let k = self.k.min(n_memory);
        let classes = memory_labels.iter().max().map_or(0, |m| m + 1);
        let mut correct = 0;
        for (i, query) in queries.rows.chunks(dim).enumerate() {
            let mut scored: Vec<(f32, usize)> = memory_rows
                .chunks(dim)
                .zip(memory_labels)
                .enumerate()
                .filter(|(j, _)| !(leave_one_out && *j == i))
                .map(|(_, (m, &label))| (m.iter().zip(query).map(|(a, b)| a * b).sum(), label))
                .collect();
            scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
            let mut votes = vec![0.0f32; classes];
            for &(similarity, label) in &scored[..k] {
                votes[label] += (similarity / self.temperature).exp();
            }
            if argmax_rows(&votes, classes)[0] == query_labels[i] {
                correct += 1;
            }
        }
        Ok(KnnAccuracy {
            k,
            correct,
            queries: query_labels.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(rows: &[[f32; 2]]) -> Features {
        Features {
            dim: 2,
            rows: rows.iter().flatten().copied().collect(),
            loss: None,
        }
    }

    #[test]
    fn neighbours_vote_by_similarity() {
        // Two tight clusters; the queries sit next to one each.
        let memory = features(&[[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]]);
        let labels = [0, 0, 1, 1];
        let queries = features(&[[0.95, 0.31], [0.31, 0.95]]);
        let probe = KnnProbe {
            k: 2,
            ..KnnProbe::default()
        };
        let got = probe
            .accuracy(&queries, &[0, 1], Some((&memory, &labels)))
            .unwrap();
        assert_eq!((got.k, got.correct, got.queries), (2, 2, 2));
        // Labels swapped: every query is wrong.
        let got = probe
            .accuracy(&queries, &[1, 0], Some((&memory, &labels)))
            .unwrap();
        assert_eq!(got.correct, 0);
    }

    #[test]
    fn leave_one_out_never_counts_an_image_as_its_own_neighbour() {
        // Each image's only close neighbour has the other label: with itself excluded, k = 1
        // gets every one wrong (counting itself, it would get every one right).
        let set = features(&[[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.14, 0.99]]);
        let probe = KnnProbe {
            k: 1,
            ..KnnProbe::default()
        };
        assert_eq!(
            probe.accuracy(&set, &[0, 1, 0, 1], None).unwrap().correct,
            0
        );
        assert_eq!(
            probe.accuracy(&set, &[0, 0, 1, 1], None).unwrap().correct,
            4
        );
    }

    #[test]
    fn pixel_features_are_unit_rows_that_tell_colours_apart() {
        use crate::image::RgbImage;
        let plain = |rgb: [u8; 3], w: usize, h: usize| {
            RgbImage::new(w, h, rgb.iter().copied().cycle().take(w * h * 3).collect())
        };
        // Two reddish and two bluish images of different sizes: the eval transform brings
        // them to 4×4, and leave-one-out k = 1 finds each one's colour.
        let set = ImageSet {
            images: vec![
                plain([250, 10, 10], 8, 6),
                plain([10, 10, 250], 5, 9),
                plain([220, 40, 30], 12, 12),
                plain([30, 40, 220], 7, 7),
            ],
            labels: Some(vec![0, 1, 0, 1]),
            classes: vec!["red".into(), "blue".into()],
            source: "test".into(),
        };
        let f = pixel_features(&set, [4, 4]).unwrap();
        assert_eq!((f.dim, f.rows.len(), f.loss), (48, 4 * 48, None));
        for row in f.rows.chunks(48) {
            let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        }
        let probe = KnnProbe {
            k: 1,
            ..KnnProbe::default()
        };
        assert_eq!(probe.accuracy(&f, &[0, 1, 0, 1], None).unwrap().correct, 4);
        assert!(pixel_features(&set, [0, 4]).is_err());
    }

    #[test]
    fn too_few_or_mismatched_inputs_are_errors() {
        let one = features(&[[1.0, 0.0]]);
        let e = KnnProbe::default().accuracy(&one, &[0], None).unwrap_err();
        assert!(e.to_string().contains("two labelled images"), "{e}");
        let e = KnnProbe::default()
            .accuracy(&one, &[0, 1], None)
            .unwrap_err();
        assert!(e.to_string().contains("do not match"), "{e}");
    }
}
