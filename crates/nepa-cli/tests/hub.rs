//! `hf:org/name` checkpoints against a loopback server that behaves like the Hugging Face
//! hub (`/{id}/resolve/{revision}/{file}` answers 302 to a second origin that serves the
//! bytes with ETag, X-Repo-Commit, Content-Length and Range), `nepa classify`'s top-5, and the
//! `nepa export --hf` round trip (docs/hub.md).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use burn::tensor::Device;
use common::{nepa, run_ok};
use nepa::checkpoint::{
    CLASSES_METADATA_KEY, classifier_tensors, hf_config_json, hf_preprocessor_config_json,
    parse_hf_config, to_safetensors, with_metadata,
};
use nepa::image::to_png;
use nepa::{NepaClassifier, NepaConfig, SplitMix64};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const REPO: &str = "test-org/tiny-sft";
/// The classes the test classifier's head ranks first, in order (their biases 5, 4, 3, 2, 1).
const TOP5: [usize; 5] = [7, 3, 999, 500, 42];

// ---------------------------------------------------------------------------------------------
// A loopback hub
// ---------------------------------------------------------------------------------------------

/// One HTTP server on 127.0.0.1: a thread per connection, one request per connection.
struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the loopback hub answers: the request's path and headers to the response's bytes.
type Respond = dyn Fn(&str, &HashMap<String, String>) -> Vec<u8> + Send + Sync;
type Handler = Arc<Respond>;

impl Server {
    fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let handler = handler.clone();
                        std::thread::spawn(move || serve(stream, &*handler));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped here: the port refuses connections from now on.
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, handler: &Respond) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let response = handler(&path, &headers);
    let mut stream = stream;
    let _ = stream.write_all(&response);
    let _ = stream.flush();
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// FNV-1a, as a stand-in for the hub's content hashes.
fn etag(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The hub (`resolve` → 302) and its file host (bytes, with Range), and what they were asked.
struct FakeHub {
    hub: Server,
    files: Server,
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeHub {
    /// `repos`: model id → file name → bytes.
    fn start(repos: BTreeMap<String, BTreeMap<String, Vec<u8>>>) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let blobs: HashMap<String, Vec<u8>> = repos
            .values()
            .flat_map(|files| files.values())
            .map(|b| (etag(b), b.clone()))
            .collect();
        let files_log = log.clone();
        let files = Server::start(Arc::new(
            move |path: &str, headers: &HashMap<String, String>| {
                files_log
                    .lock()
                    .unwrap()
                    .push(format!("files {path} {:?}", headers.get("range")));
                let Some(bytes) = path.strip_prefix("/blobs/").and_then(|e| blobs.get(e)) else {
                    return response("404 Not Found", &[], b"no such blob");
                };
                let tag = etag(bytes);
                let common = [
                    ("ETag", format!("\"{tag}\"")),
                    ("X-Repo-Commit", COMMIT.to_string()),
                    ("Accept-Ranges", "bytes".to_string()),
                ];
                let n = bytes.len();
                match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
                    Some(range) => {
                        let (a, b) = range.split_once('-').unwrap();
                        let a: usize = a.parse().unwrap();
                        let b: usize = if b.is_empty() {
                            n - 1
                        } else {
                            b.parse().unwrap()
                        };
                        let b = b.min(n - 1);
                        let mut h = common.to_vec();
                        h.push(("Content-Range", format!("bytes {a}-{b}/{n}")));
                        response("206 Partial Content", &h, &bytes[a..=b])
                    }
                    None => response("200 OK", &common, bytes),
                }
            },
        ));
        let hub_log = log.clone();
        let files_addr = files.addr.clone();
        let hub = Server::start(Arc::new(
            move |path: &str, _headers: &HashMap<String, String>| {
                hub_log.lock().unwrap().push(format!("hub {path}"));
                // /{org}/{name}/resolve/{revision}/{file}
                let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
                let [org, name, "resolve", _revision, file] = parts[..] else {
                    return response("404 Not Found", &[], b"not a resolve URL");
                };
                let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                    return response(
                        "404 Not Found",
                        &[("X-Error-Code", "RepositoryNotFound".to_string())],
                        b"Repository not found",
                    );
                };
                let Some(bytes) = repo.get(file) else {
                    return response(
                        "404 Not Found",
                        &[("X-Error-Code", "EntryNotFound".to_string())],
                        b"Entry not found",
                    );
                };
                let tag = etag(bytes);
                response(
                    "302 Found",
                    &[
                        ("Location", format!("{files_addr}/blobs/{tag}")),
                        ("X-Repo-Commit", COMMIT.to_string()),
                        ("X-Linked-Etag", format!("\"{tag}\"")),
                        ("X-Linked-Size", bytes.len().to_string()),
                        ("ETag", format!("\"{tag}\"")),
                    ],
                    b"",
                )
            },
        ));
        Self { hub, files, log }
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// A small classifier with 1,000 named classes
// ---------------------------------------------------------------------------------------------

fn tiny_config() -> NepaConfig {
    NepaConfig::new(32, 2, 2)
        .with_intermediate_size(64)
        .with_image_size(16, 16)
        .with_patch_size(4)
        .with_causal(false)
}

fn class_names() -> Vec<String> {
    (0..1000)
        .map(|i| format!("synthetic class {i:03}, kind {}", i % 7))
        .collect()
}

/// Tensor name → (shape, f32 values).
type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_tensors(bytes: &[u8]) -> Tensors {
    let file = SafeTensors::deserialize(bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

fn write_tensors(tensors: &Tensors, metadata: HashMap<String, String>) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .values()
        .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, (shape, _)), b)| {
            (
                name.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::tensor::serialize(views, Some(metadata)).unwrap()
}

/// A random classifier whose head ranks [`TOP5`] first on any image (large biases, small
/// weights), as official safetensors (`vit_nepa.` keys, no nepa metadata).
fn classifier_weights(config: &NepaConfig) -> Tensors {
    // Flex's random generator is one per process: the tests that run beside this one must not
    // draw from it between the seed and the last draw, or the weights differ from call to call.
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let model = {
        let _held = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
        let device = Device::flex();
        device.seed(11);
        NepaClassifier::new(config, 1000, &device).unwrap()
    };
    let mut tensors = read_tensors(&to_safetensors(&classifier_tensors(&model), config).unwrap());
    let mut rng = SplitMix64::new(5);
    let (shape, weight) = tensors.get_mut("classifier.weight").unwrap();
    assert_eq!(shape, &vec![1000, config.hidden_size]);
    for w in weight.iter_mut() {
        *w = rng.uniform(-1e-3, 1e-3) as f32;
    }
    let (_, bias) = tensors.get_mut("classifier.bias").unwrap();
    bias.fill(0.0);
    for (rank, &class) in TOP5.iter().enumerate() {
        bias[class] = 5.0 - rank as f32;
    }
    tensors
}

/// What softmax gives the top five with weights of zero.
fn expected_top5_percent() -> Vec<f64> {
    let others = 995.0;
    let top: Vec<f64> = (0..5).map(|r| (5.0 - r as f64).exp()).collect();
    let total = top.iter().sum::<f64>() + others;
    top.iter().map(|e| 100.0 * e / total).collect()
}

fn sft_repo() -> BTreeMap<String, Vec<u8>> {
    let config = tiny_config();
    let weights = write_tensors(
        &classifier_weights(&config),
        HashMap::from([("format".to_string(), "pt".to_string())]),
    );
    BTreeMap::from([
        (
            "config.json".to_string(),
            hf_config_json(&config, Some(&class_names())).into_bytes(),
        ),
        (
            "preprocessor_config.json".to_string(),
            hf_preprocessor_config_json(&config).into_bytes(),
        ),
        ("model.safetensors".to_string(), weights),
    ])
}

fn photo(dir: &Path) -> PathBuf {
    let mut rng = SplitMix64::new(3);
    let path = dir.join("photo.png");
    std::fs::write(&path, to_png(&common::synthetic_image(&mut rng, 40))).unwrap();
    path
}

fn classify(checkpoint: &str, image: &Path, endpoint: &str, hf_home: &Path) -> Output {
    let mut cmd = nepa();
    cmd.args(["classify", "--device", "flex", "--checkpoint", checkpoint])
        .arg(image);
    hub_env(&mut cmd, endpoint, hf_home);
    cmd.output().unwrap()
}

fn hub_env(cmd: &mut Command, endpoint: &str, hf_home: &Path) {
    cmd.env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", hf_home)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN");
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The printed top-5: (class index, percent, name).
fn top5_lines(stdout: &str) -> Vec<(usize, f64, String)> {
    stdout
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            // "  1.  12.08%  name  [7]"
            let l = l.trim();
            let (_, rest) = l.split_once(". ").unwrap();
            let (percent, rest) = rest.trim().split_once("%  ").unwrap();
            let (name, index) = rest.rsplit_once("  [").unwrap();
            (
                index.trim_end_matches(']').parse().unwrap(),
                percent.parse().unwrap(),
                name.to_string(),
            )
        })
        .collect()
}

fn assert_top5(stdout: &str, image: &Path) {
    assert_eq!(stdout.lines().next(), Some(&*image.display().to_string()));
    let lines = top5_lines(stdout);
    let names = class_names();
    let expected = expected_top5_percent();
    assert_eq!(lines.len(), 5, "{stdout}");
    for ((class, percent, name), (&want, want_percent)) in
        lines.iter().zip(TOP5.iter().zip(expected))
    {
        assert_eq!((*class, name), (want, &names[want]), "{stdout}");
        // The small random weights move each logit by at most 0.032.
        assert!(
            (percent - want_percent).abs() < 0.05 * want_percent,
            "class {class}: {percent}% vs about {want_percent:.2}%\n{stdout}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn classify_downloads_a_hub_model_then_loads_it_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let image = photo(tmp.path());
    let hf_home = tmp.path().join("hf");
    let mut hub = FakeHub::start(BTreeMap::from([(REPO.to_string(), sft_repo())]));
    let endpoint = hub.hub.addr.clone();
    let spec = format!("hf:{REPO}");

    let out = classify(&spec, &image, &endpoint, &hf_home);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_top5(&stdout, &image);
    assert!(stderr.contains("downloading model.safetensors"), "{stderr}");
    // Every file through the hub's redirect, the bytes from the file host.
    let requests = hub.requests();
    for file in [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r == &format!("hub /{REPO}/resolve/main/{file}")),
            "{file}: {requests:#?}"
        );
    }
    assert!(
        requests.iter().any(|r| r.starts_with("files /blobs/")),
        "{requests:#?}"
    );
    // The hub cache's layout: refs/main names the commit, whose snapshot holds the files.
    let repo_dir = hf_home.join("hub/models--test-org--tiny-sft");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read(snapshot.join("model.safetensors")).unwrap(),
        sft_repo()["model.safetensors"]
    );

    // With the hub gone, the cached model loads and gives the same answer.
    hub.hub.stop();
    hub.files.stop();
    assert!(TcpStream::connect(endpoint.trim_start_matches("http://")).is_err());
    let again = classify(&spec, &image, &endpoint, &hf_home);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout), stdout);

    // A revision is a separate ref of the same cache.
    let pinned = classify(&format!("{spec}@v1"), &image, &endpoint, &hf_home);
    assert!(!pinned.status.success());
    assert!(
        text(&pinned.stderr).contains(&format!("{spec}@v1")),
        "{}",
        text(&pinned.stderr)
    );
}

#[test]
fn hub_errors_name_the_id_and_the_cache_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let image = photo(tmp.path());
    let hf_home = tmp.path().join("hf");
    let mut no_config = sft_repo();
    no_config.remove("config.json");
    let hub = FakeHub::start(BTreeMap::from([
        (REPO.to_string(), sft_repo()),
        ("test-org/no-config".to_string(), no_config),
    ]));

    // An id the hub does not know.
    let out = classify("hf:test-org/missing", &image, &hub.hub.addr, &hf_home);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hf:test-org/missing")
            && stderr.contains("HTTP 404")
            && stderr.contains("check the id"),
        "{stderr}"
    );
    // A repository without config.json.
    let out = classify("hf:test-org/no-config", &image, &hub.hub.addr, &hf_home);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hf:test-org/no-config") && stderr.contains("no config.json"),
        "{stderr}"
    );
    // Not an id at all.
    let out = classify("hf:just-a-name", &image, &hub.hub.addr, &hf_home);
    assert!(
        text(&out.stderr).contains("is not a hub model id"),
        "{}",
        text(&out.stderr)
    );

    // Nothing cached and no hub: the message names the id and the cache folder.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let out = classify(&format!("hf:{REPO}"), &image, &closed, &hf_home);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    let folder = hf_home.join("hub/models--test-org--tiny-sft");
    assert!(
        stderr.contains(&format!("hf:{REPO}"))
            && stderr.contains(&folder.display().to_string())
            && stderr.contains("not in the hub cache"),
        "{stderr}"
    );
    // HF_HUB_OFFLINE=1 does not ask the hub even when it is there.
    let before = hub.requests().len();
    let mut cmd = nepa();
    cmd.args(["classify", "--device", "flex", "--checkpoint"])
        .arg(format!("hf:{REPO}"))
        .arg(&image);
    hub_env(&mut cmd, &hub.hub.addr, &hf_home);
    let out = cmd.env("HF_HUB_OFFLINE", "1").output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("HF_HUB_OFFLINE"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(hub.requests().len(), before);
}

/// The tensors of an exported folder, and its config.json read back.
fn exported(dir: &Path) -> (Tensors, nepa::checkpoint::HubConfig) {
    let tensors = read_tensors(&std::fs::read(dir.join("model.safetensors")).unwrap());
    let config =
        parse_hf_config(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    (tensors, config)
}

fn export(checkpoint: &Path, dir: &Path, probe: &Path) -> Output {
    run_ok(
        nepa()
            .args(["export", "--checkpoint"])
            .arg(checkpoint)
            .arg("--hf")
            .arg(dir)
            .arg("--probe")
            .arg(probe),
    )
}

#[test]
fn export_round_trip_keeps_a_classifier() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tiny_config();
    let names = class_names();
    // A nepa classifier file: official keys, the config and class names in its metadata.
    let original = classifier_weights(&config);
    let file = tmp.path().join("classifier.safetensors");
    let bytes = write_tensors(
        &original,
        HashMap::from([
            ("format".to_string(), "pt".to_string()),
            ("nepa_config".to_string(), config.to_json()),
        ]),
    );
    let bytes = with_metadata(
        &bytes,
        &[(CLASSES_METADATA_KEY, serde_json::to_string(&names).unwrap())],
    )
    .unwrap();
    std::fs::write(&file, bytes).unwrap();

    let (first, second) = (tmp.path().join("hf1"), tmp.path().join("hf2"));
    let (probe0, probe1, probe2) = (
        tmp.path().join("p0.safetensors"),
        tmp.path().join("p1.safetensors"),
        tmp.path().join("p2.safetensors"),
    );
    let out = export(&file, &first, &probe0);
    assert!(
        text(&out.stdout).contains("ViTNepaForImageClassification"),
        "{}",
        text(&out.stdout)
    );
    // nepa reads the folder back and writes it again: nothing changes.
    export(&first, &second, &probe1);
    export(&second, &tmp.path().join("hf3"), &probe2);
    for dir in [&first, &second] {
        let (tensors, read) = exported(dir);
        assert_eq!(tensors, original, "{}", dir.display());
        assert_eq!(read.config, config);
        assert_eq!(read.classes.as_ref(), Some(&names));
        assert_eq!(
            read.architecture.as_deref(),
            Some("ViTNepaForImageClassification")
        );
    }
    assert_eq!(
        std::fs::read_to_string(first.join("config.json")).unwrap(),
        std::fs::read_to_string(second.join("config.json")).unwrap()
    );
    // The same outputs (logits of all 1,000 classes among them) from each copy.
    let p0 = read_tensors(&std::fs::read(&probe0).unwrap());
    assert_eq!(p0["logits"].0, vec![1, 1000]);
    assert_eq!(p0, read_tensors(&std::fs::read(&probe1).unwrap()));
    assert_eq!(p0, read_tensors(&std::fs::read(&probe2).unwrap()));
    // Its class names come from config.json's id2label.
    let image = photo(tmp.path());
    let out = run_ok(
        nepa()
            .args(["classify", "--device", "flex", "--checkpoint"])
            .arg(&second)
            .arg(&image),
    );
    assert_top5(&text(&out.stdout), &image);
}

#[test]
fn export_round_trip_keeps_a_pretrained_backbone() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::image_folder(tmp.path(), 8, &[]);
    let run = tmp.path().join("run");
    run_ok(&mut common::pretrain(&data, &run, 2, &[]));
    let latest = common::latest(&run);
    let weights = run.join(latest["model_file"].as_str().unwrap());
    let original = read_tensors(&std::fs::read(&weights).unwrap());
    let config: NepaConfig = serde_json::from_value(latest["config"].clone()).unwrap();

    let (first, second) = (tmp.path().join("hf1"), tmp.path().join("hf2"));
    let (probe1, probe2) = (
        tmp.path().join("p1.safetensors"),
        tmp.path().join("p2.safetensors"),
    );
    let out = export(&run, &first, &probe1);
    assert!(
        text(&out.stdout).contains("ViTNepaForPreTraining"),
        "{}",
        text(&out.stdout)
    );
    export(&first, &second, &probe2);
    for dir in [&first, &second] {
        let (tensors, read) = exported(dir);
        // ViTNepaForPreTraining holds the backbone as `vit_nepa`.
        assert!(tensors.keys().all(|k| k.starts_with("vit_nepa.")));
        assert_eq!(tensors, original, "{}", dir.display());
        assert_eq!(read.config, config);
        assert_eq!(read.classes, None);
        assert_eq!(read.architecture.as_deref(), Some("ViTNepaForPreTraining"));
    }
    let p1 = read_tensors(&std::fs::read(&probe1).unwrap());
    assert!(!p1.contains_key("logits"));
    assert_eq!(p1, read_tensors(&std::fs::read(&probe2).unwrap()));
    // A backbone has no classes to print.
    let out = nepa()
        .args(["classify", "--device", "flex", "--checkpoint"])
        .arg(&first)
        .arg(photo(tmp.path()))
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("without a classification head"),
        "{}",
        text(&out.stderr)
    );
}
