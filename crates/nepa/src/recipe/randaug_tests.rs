//! Tests of `randaug.rs`.

use super::*;

fn img(w: usize, h: usize, px: &[u8]) -> RgbImage {
    RgbImage::new(w, h, px.to_vec())
}

#[test]
fn the_op_set_is_timms_increasing_set() {
    assert_eq!(OPS.len(), 15);
    assert_eq!(OPS[0], "AutoContrast");
    assert_eq!(OPS[14], "TranslateYRel");
    let mut rng = SplitMix64::new(0);
    for (i, name) in OPS.iter().enumerate() {
        let op = format!("{:?}", Op::at(i, 9.0, &mut rng).unwrap());
        let stem = name.trim_end_matches("Increasing");
        assert!(op.starts_with(stem), "{op} vs {name}");
    }
    assert_eq!(Op::at(15, 9.0, &mut rng), None);
}

#[test]
fn arguments_at_magnitude_9() {
    // rotate 30·0.9 = 27°; posterize 4 − int(3.6) = 1 bit; solarize 256 − int(230.4) =
    // 26; solarize-add int(99.0) = 99; enhance 1 ± 0.81; shear 0.27; translate 0.405.
    let mut rng = SplitMix64::new(4);
    let abs = |op: Option<Op>| match op.unwrap() {
        Op::Rotate(v) | Op::ShearX(v) | Op::ShearY(v) => v.abs(),
        Op::TranslateXRel(v) | Op::TranslateYRel(v) => v.abs(),
        Op::Color(v) | Op::Contrast(v) | Op::Brightness(v) | Op::Sharpness(v) => v,
        other => panic!("{other:?}"),
    };
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    close(abs(Op::at(3, 9.0, &mut rng)), 27.0);
    assert_eq!(Op::at(4, 9.0, &mut rng), Some(Op::Posterize(1)));
    assert_eq!(Op::at(5, 9.0, &mut rng), Some(Op::Solarize(26)));
    assert_eq!(Op::at(6, 9.0, &mut rng), Some(Op::SolarizeAdd(99)));
    for i in 7..=10 {
        let f = abs(Op::at(i, 9.0, &mut rng));
        assert!((f - 1.81).abs() < 1e-12 || (f - 0.19).abs() < 1e-12, "{f}");
    }
    close(abs(Op::at(11, 9.0, &mut rng)), 0.27);
    close(abs(Op::at(12, 9.0, &mut rng)), 0.27);
    close(abs(Op::at(13, 9.0, &mut rng)), 0.405);
    close(abs(Op::at(14, 9.0, &mut rng)), 0.405);
    // With std 0 and prob 1, `draw` yields exactly these arguments.
    let ra = RandAugment {
        magnitude_std: 0.0,
        prob: 1.0,
        num_ops: 64,
        ..RandAugment::official()
    };
    for op in ra.draw(&mut rng).into_iter().map(Option::unwrap) {
        if let Op::Posterize(b) = op {
            assert_eq!(b, 1);
        }
        if let Op::Solarize(t) = op {
            assert_eq!(t, 26);
        }
    }
}

#[test]
fn lut_ops_by_hand_on_2x2() {
    let im = img(2, 2, &[0, 10, 200, 100, 128, 255, 50, 127, 30, 250, 60, 40]);
    assert_eq!(
        Op::Invert.apply(&im, [128; 3]).pixels,
        [255, 245, 55, 155, 127, 0, 205, 128, 225, 5, 195, 215]
    );
    // 1 bit kept: ≥ 128 → 128, else 0.
    assert_eq!(
        Op::Posterize(1).apply(&im, [128; 3]).pixels,
        [0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 0, 0]
    );
    // Threshold 26: values ≥ 26 become 255 − v.
    assert_eq!(
        Op::Solarize(26).apply(&im, [128; 3]).pixels,
        [0, 10, 55, 155, 127, 0, 205, 128, 225, 5, 195, 215]
    );
    // R spans 0..250: scale 255/250 = 1.02, int(v·1.02): 0, 102, 51, 255.
    // G spans 10..128: scale 255/118, offset −10·scale: 0, 255, 252, 108.
    // B spans 30..255: scale 255/225: 192, 255, 0, 11.
    assert_eq!(
        Op::AutoContrast.apply(&im, [128; 3]).pixels,
        [0, 0, 192, 102, 255, 255, 51, 252, 0, 255, 108, 11]
    );
}

#[test]
fn ops_match_pillow_on_4x4() {
    // Pillow 13.0 on the image px[i] = (53·i + 7·(i / 3) + 19) mod 256, 4×4 RGB; geometric
    // ops with `resample=BILINEAR, fillcolor=(128, 128, 128)`, as printed by Pillow.
    let px: Vec<u8> = (0..48)
        .map(|i: u32| ((i * 53 + 7 * (i / 3) + 19) % 256) as u8)
        .collect();
    let im = img(4, 4, &px);
    let fill = [128; 3];
    let cases: [(&str, [u8; 48]); 15] = [
        (
            "autocontrast",
            [
                14, 75, 124, 189, 255, 29, 94, 157, 204, 0, 60, 109, 174, 239, 14, 80, 142, 189,
                254, 45, 94, 160, 224, 0, 65, 127, 174, 240, 30, 80, 145, 209, 254, 50, 112, 160,
                225, 15, 65, 130, 194, 240, 35, 97, 145, 210, 0, 50,
            ],
        ),
        (
            "equalize",
            [
                19, 72, 125, 185, 238, 35, 95, 148, 201, 5, 58, 111, 171, 224, 21, 81, 134, 187,
                247, 44, 97, 157, 210, 7, 67, 120, 173, 233, 30, 83, 143, 196, 249, 53, 106, 159,
                219, 16, 69, 129, 182, 235, 39, 92, 145, 205, 2, 55,
            ],
        ),
        (
            "color181",
            [
                0, 80, 176, 173, 255, 0, 60, 156, 252, 0, 66, 162, 159, 255, 0, 46, 142, 238, 255,
                0, 85, 145, 241, 0, 32, 128, 224, 255, 0, 71, 108, 204, 255, 18, 114, 210, 255, 0,
                57, 94, 190, 255, 4, 100, 196, 255, 0, 43,
            ],
        ),
        (
            "contrast019",
            [
                101, 111, 121, 133, 143, 104, 116, 126, 136, 98, 109, 119, 130, 140, 102, 113, 123,
                133, 144, 106, 116, 127, 137, 99, 110, 120, 130, 142, 103, 113, 125, 135, 145, 108,
                118, 128, 139, 101, 111, 122, 132, 142, 105, 115, 125, 136, 98, 108,
            ],
        ),
        (
            "contrast181",
            [
                0, 32, 128, 236, 255, 0, 73, 169, 255, 0, 6, 102, 211, 255, 0, 48, 144, 240, 255,
                0, 77, 186, 255, 0, 23, 119, 215, 255, 0, 52, 160, 255, 255, 0, 93, 189, 255, 0,
                26, 135, 231, 255, 0, 68, 164, 255, 0, 1,
            ],
        ),
        (
            "brightness181",
            [
                34, 130, 226, 255, 255, 63, 171, 255, 255, 9, 104, 200, 255, 255, 38, 146, 242,
                255, 255, 79, 175, 255, 255, 12, 121, 217, 255, 255, 54, 150, 255, 255, 255, 95,
                191, 255, 255, 28, 124, 233, 255, 255, 70, 166, 255, 255, 3, 99,
            ],
        ),
        (
            "sharpness181",
            [
                19, 72, 125, 185, 238, 35, 95, 148, 201, 5, 58, 111, 171, 224, 21, 49, 134, 218,
                255, 0, 80, 157, 210, 7, 67, 120, 173, 255, 0, 51, 143, 243, 255, 53, 106, 159,
                219, 16, 69, 129, 182, 235, 39, 92, 145, 205, 2, 55,
            ],
        ),
        (
            "sharpness019",
            [
                19, 72, 125, 185, 238, 35, 95, 148, 201, 5, 58, 111, 171, 224, 21, 112, 134, 155,
                183, 91, 113, 157, 210, 7, 67, 120, 173, 185, 77, 114, 143, 148, 185, 53, 106, 159,
                219, 16, 69, 129, 182, 235, 39, 92, 145, 205, 2, 55,
            ],
        ),
        (
            "shearx",
            [
                41, 94, 112, 172, 225, 57, 82, 135, 188, 5, 58, 111, 134, 187, 88, 148, 97, 150,
                210, 111, 60, 157, 210, 7, 179, 59, 112, 172, 142, 195, 82, 135, 188, 128, 128,
                128, 133, 172, 225, 43, 96, 149, 195, 6, 59, 128, 128, 128,
            ],
        ),
        (
            "sheary",
            [
                19, 72, 125, 185, 238, 35, 128, 128, 128, 128, 128, 128, 150, 203, 35, 123, 176,
                125, 144, 114, 167, 13, 66, 105, 81, 134, 152, 171, 72, 125, 213, 93, 146, 151,
                204, 15, 198, 30, 83, 171, 120, 173, 109, 162, 215, 61, 100, 153,
            ],
        ),
        (
            "transx",
            [
                129, 182, 137, 39, 92, 145, 128, 128, 128, 128, 128, 128, 183, 78, 131, 191, 146,
                41, 128, 128, 128, 128, 128, 128, 177, 132, 185, 87, 140, 193, 128, 128, 128, 128,
                128, 128, 73, 126, 179, 141, 36, 89, 128, 128, 128, 128, 128, 128,
            ],
        ),
        (
            "transy",
            [
                128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128, 128,
                128, 128, 128, 128, 128, 128, 128, 128, 76, 129, 85, 145, 198, 92, 152, 108, 161,
                62, 115, 71, 131, 184, 78, 138, 94, 147, 207, 101, 154, 117, 170, 64,
            ],
        ),
        (
            "rotate",
            [
                128, 128, 128, 118, 171, 157, 97, 113, 104, 128, 128, 128, 103, 156, 88, 133, 126,
                147, 202, 102, 124, 80, 133, 118, 143, 196, 61, 174, 74, 115, 150, 143, 196, 120,
                75, 128, 128, 128, 128, 163, 81, 134, 105, 158, 211, 128, 128, 128,
            ],
        ),
        (
            "rotaten",
            [
                78, 131, 84, 126, 179, 75, 127, 180, 140, 40, 93, 146, 133, 186, 76, 106, 129, 159,
                213, 66, 116, 120, 146, 56, 130, 84, 137, 210, 63, 116, 147, 170, 219, 90, 143,
                103, 183, 81, 134, 96, 149, 202, 97, 78, 131, 145, 42, 95,
            ],
        ),
        (
            "solarize_add",
            [
                118, 171, 224, 185, 238, 134, 194, 148, 201, 104, 157, 210, 171, 224, 120, 180,
                134, 187, 247, 143, 196, 157, 210, 106, 166, 219, 173, 233, 129, 182, 143, 196,
                249, 152, 205, 159, 219, 115, 168, 129, 182, 235, 138, 191, 145, 205, 101, 154,
            ],
        ),
    ];
    for (name, want) in cases {
        let op = match name {
            "autocontrast" => Op::AutoContrast,
            "equalize" => Op::Equalize,
            "color181" => Op::Color(1.81),
            "contrast019" => Op::Contrast(0.19),
            "contrast181" => Op::Contrast(1.81),
            "brightness181" => Op::Brightness(1.81),
            "sharpness181" => Op::Sharpness(1.81),
            "sharpness019" => Op::Sharpness(0.19),
            "shearx" => Op::ShearX(0.27),
            "sheary" => Op::ShearY(-0.27),
            "transx" => Op::TranslateXRel(0.405),
            "transy" => Op::TranslateYRel(-0.405),
            "rotate" => Op::Rotate(27.0),
            "rotaten" => Op::Rotate(-13.5),
            "solarize_add" => Op::SolarizeAdd(99),
            _ => unreachable!(),
        };
        assert_eq!(op.apply(&im, fill).pixels, want, "{name}");
    }
}

#[test]
fn equalize_by_hand() {
    // 512 pixels, all channels alike: 100 of value 10, 300 of 20, 112 of 30.
    // step = (512 − 112) // 256 = 1 and lut[v] = (step // 2 + Σ_{j<v} h[j]) // step:
    // 10 → 0, 20 → 100, 30 → 400, saturated to 255 (Pillow 13.0 gives the same).
    let mut pixels = vec![10u8; 100 * 3];
    pixels.extend(vec![20u8; 300 * 3]);
    pixels.extend(vec![30u8; 112 * 3]);
    let out = Op::Equalize.apply(&img(512, 1, &pixels), [128; 3]);
    assert_eq!(
        (out.pixels[0], out.pixels[100 * 3], out.pixels[400 * 3]),
        (0, 100, 255)
    );
}
