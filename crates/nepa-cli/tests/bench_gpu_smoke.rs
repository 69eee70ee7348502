//! `scripts/bench-gpu.sh --smoke`: the GPU bench script's own logic (rows, reports, the table of
//! scripts/bench-table.py), run with this build of `nepa` on Flex and a tiny model. PYTHON
//! points nowhere, so the PyTorch rows are skipped, as on a CI machine without torch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SKIP_MESSAGE: &str = "PyTorch rows skipped: no torch in /nonexistent/python";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `bash scripts/bench-gpu.sh --smoke` with this `nepa` and PyTorch out of reach.
fn run_smoke(out_dir: &Path) -> Output {
    Command::new("bash")
        .args(["scripts/bench-gpu.sh", "--smoke"])
        .current_dir(workspace_root())
        .env("NEPA", env!("CARGO_BIN_EXE_nepa"))
        .env("PYTHON", "/nonexistent/python")
        .env("OUT_DIR", out_dir)
        .output()
        .expect("run bash")
}

/// The trimmed cells of one markdown table line: `| a | b |` gives `["a", "b"]`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The cells of the table line whose first cell is `name` (a row, or "row" for the header).
fn table_row(table: &str, name: &str) -> Vec<String> {
    let Some(found) = table.lines().map(cells).find(|c| c[0] == name) else {
        panic!("no row `{name}` in the table:\n{table}");
    };
    found
}

/// The run report at `path` parses, ran on Flex, trained, and computed in `dtype`.
fn check_report(path: &Path, dtype: &str) {
    let text = std::fs::read_to_string(path).expect("report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(report["schema"], "nepa-run-report/1");
    assert_eq!(report["backend"], "flex");
    let ips = report["train"]["images_per_sec"].as_f64().unwrap_or(0.0);
    assert!(ips > 0.0, "{}: train img/s {ips}", path.display());
    // The precision flag reached the run: the report names what computed.
    let written = report["dtype"].as_str().unwrap_or_default();
    assert!(written.contains(dtype), "dtype `{written}`");
}

#[test]
fn smoke_mode_writes_two_nepa_reports_and_a_table() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out_dir = tmp.path().join("bench-gpu");
    let output = run_smoke(&out_dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = output.status;
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stdout.contains(SKIP_MESSAGE), "{stdout}");

    let table_path = out_dir.join("table.md");
    let table = std::fs::read_to_string(table_path).expect("table.md");
    assert!(table.contains(SKIP_MESSAGE), "{table}");
    let header = table_row(&table, "row");
    let column = |name: &str| header.iter().position(|c| c == name);
    let train = column("train img/s").expect("train img/s column");
    let infer = column("infer img/s").expect("infer img/s column");

    let rows = [
        ("nepa flex f32", "nepa-flex-f32.json", "float32"),
        ("nepa flex bf16", "nepa-flex-bf16.json", "bfloat16"),
    ];
    for (row, file, dtype) in rows {
        let line = table_row(&table, row);
        for cell in [&line[train], &line[infer]] {
            // "failed" or "—" parse to nothing: the row did not run.
            let value = cell.parse::<f64>().unwrap_or(0.0);
            assert!(value > 0.0, "`{row}`: img/s `{cell}`:\n{table}");
        }
        check_report(&out_dir.join(file), dtype);
    }
}
