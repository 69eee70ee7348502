//! Models from a Hugging Face-style hub: an id (`org/name`, optional `@revision`), the URLs
//! of its files, the official NEPA models the page offers, and the classes of a classifier.

use serde::{Deserialize, Serialize};

use crate::{ImageId, WebError};

/// Where hub ids are resolved unless the page's URL says otherwise (`?hub=`).
pub const DEFAULT_HUB: &str = "https://huggingface.co";
/// The revision of an id given without `@revision`.
pub const DEFAULT_REVISION: &str = "main";
/// How many classes the page shows per photo.
pub const TOP_CLASSES: usize = 5;

/// One of the paper's published models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfficialModel {
    pub id: &'static str,
    /// `model.safetensors` in MB (10^6 bytes), from the architecture's f32 parameter count.
    pub megabytes: u32,
    pub about: &'static str,
}

/// The four official models (docs/nepa.md §7.1).
pub const OFFICIAL_MODELS: [OfficialModel; 4] = [
    OfficialModel {
        id: "SixAILab/nepa-base-patch14-224-sft",
        megabytes: 345,
        about: "NEPA-B fine-tuned on ImageNet-1k: maps and its 1,000 classes",
    },
    OfficialModel {
        id: "SixAILab/nepa-base-patch14-224",
        megabytes: 342,
        about: "NEPA-B pretrained (next-embedding prediction): the maps",
    },
    OfficialModel {
        id: "SixAILab/nepa-large-patch14-224-sft",
        megabytes: 1216,
        about: "NEPA-L fine-tuned on ImageNet-1k (over the page's 1 GiB limit: use the CLI)",
    },
    OfficialModel {
        id: "SixAILab/nepa-large-patch14-224",
        megabytes: 1212,
        about: "NEPA-L pretrained (over the page's 1 GiB limit: use the CLI)",
    },
];

/// A model on a hub: its address, its id and the revision (a branch, tag or commit).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HubModel {
    /// Scheme and host, no trailing slash: `https://huggingface.co`.
    pub hub: String,
    /// `org/name`.
    pub id: String,
    pub revision: String,
}

fn is_name(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 96
        && !part.starts_with(['.', '-'])
        && !part.contains("..")
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Percent-encodes a path segment (a revision such as `refs/pr/1` keeps its slashes encoded).
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl HubModel {
    /// Reads `org/name` or `org/name@revision` as typed by a user, resolved on `hub`.
    pub fn parse(hub: &str, text: &str) -> Result<Self, WebError> {
        let text = text.trim();
        let (id, revision) = match text.split_once('@') {
            Some((id, rev)) => (id.trim(), rev.trim()),
            None => (text, DEFAULT_REVISION),
        };
        let parts: Vec<&str> = id.split('/').collect();
        if parts.len() != 2 || !parts.iter().all(|p| is_name(p)) {
            return Err(WebError::bad_input(format!(
                "`{text}` is not a hub model id: type `org/name`, optionally `@revision` \
                 (e.g. SixAILab/nepa-base-patch14-224-sft@main)"
            )));
        }
        if revision.is_empty() || revision.len() > 256 || revision.contains(char::is_whitespace) {
            return Err(WebError::bad_input(format!(
                "`{text}`: the revision after `@` must be a branch, tag or commit"
            )));
        }
        let hub = hub.trim().trim_end_matches('/');
        if !(hub.starts_with("https://") || hub.starts_with("http://")) {
            return Err(WebError::bad_input(format!(
                "the hub address `{hub}` is not an http(s) URL"
            )));
        }
        Ok(Self {
            hub: hub.to_string(),
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }

    /// `{hub}/{id}/resolve/{revision}/{file}`: the hub answers with the file, or a redirect
    /// to the host that serves it.
    pub fn file_url(&self, file: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{file}",
            self.hub,
            self.id,
            encode_segment(&self.revision)
        )
    }

    /// `org/name@revision`, as the page shows it.
    pub fn label(&self) -> String {
        format!("{}@{}", self.id, self.revision)
    }

    /// The model whose `file` a URL made by [`HubModel::file_url`] names (a cached entry).
    pub fn from_file_url(url: &str, file: &str) -> Option<Self> {
        let rest = url.strip_suffix(file)?.strip_suffix('/')?;
        let (front, revision) = rest.rsplit_once("/resolve/")?;
        let (hub_and_org, name) = front.rsplit_once('/')?;
        let (hub, org) = hub_and_org.rsplit_once('/')?;
        let hub = hub.strip_suffix('/').unwrap_or(hub);
        if !hub.contains("://") || !is_name(org) || !is_name(name) {
            return None;
        }
        Some(Self {
            hub: hub.to_string(),
            id: format!("{org}/{name}"),
            revision: decode_segment(revision),
        })
    }
}

fn decode_segment(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = text.get(i + 1..i + 3);
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One class of a classifier and its probability.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ClassScore {
    pub name: String,
    pub probability: f32,
}

/// The most probable classes of an image under the current model's classifier head.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TopClasses {
    pub model_version: u32,
    pub image: ImageId,
    /// Most probable first.
    pub classes: Vec<ClassScore>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_with_and_without_revision() {
        let m = HubModel::parse(DEFAULT_HUB, " SixAILab/nepa-base-patch14-224-sft ").unwrap();
        assert_eq!(m.revision, "main");
        assert_eq!(
            m.file_url("config.json"),
            "https://huggingface.co/SixAILab/nepa-base-patch14-224-sft/resolve/main/config.json"
        );
        let m = HubModel::parse("http://127.0.0.1:8080/", "org/name@refs/pr/1").unwrap();
        assert_eq!(m.label(), "org/name@refs/pr/1");
        let url = m.file_url("model.safetensors");
        assert_eq!(
            url,
            "http://127.0.0.1:8080/org/name/resolve/refs%2Fpr%2F1/model.safetensors"
        );
        assert_eq!(HubModel::from_file_url(&url, "model.safetensors"), Some(m));
        assert_eq!(
            HubModel::from_file_url("https://x.org/a/b.safetensors", "model.safetensors"),
            None
        );
    }

    #[test]
    fn bad_ids_are_refused_saying_what_to_type() {
        for text in [
            "",
            "name",
            "a/b/c",
            "org/../x",
            "org/na me",
            "org/name@",
            "/name",
        ] {
            let e = HubModel::parse(DEFAULT_HUB, text).unwrap_err();
            assert!(
                e.message.contains("org/name") || e.message.contains("revision"),
                "{text}: {e}"
            );
        }
        let e = HubModel::parse("ftp://hub", "org/name").unwrap_err();
        assert!(e.message.contains("not an http(s) URL"), "{e}");
    }

    #[test]
    fn official_models_are_valid_ids() {
        for m in OFFICIAL_MODELS {
            assert_eq!(HubModel::parse(DEFAULT_HUB, m.id).unwrap().id, m.id);
        }
    }
}
