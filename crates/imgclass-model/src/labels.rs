//! ImageNet-1k class names, built from timm's synset list and synset→lemma
//! table (Apache-2.0) in a pinned wheel.

use crate::wheel::PinnedWheel;

/// The wheel the class names come from.
pub const LABELS: PinnedWheel = PinnedWheel {
    package: "timm",
    version: "1.0.31",
    file: "timm-1.0.31-py3-none-any.whl",
    sha256: "5bd50f7d0fe6d09bf9285ac2523234a1b7e6bf075c0be3e7aed09139fcb617c7",
    platforms: &[],
};
pub const SYNSETS_MEMBER: &str = "timm/data/_info/imagenet_synsets.txt";
pub const LEMMAS_MEMBER: &str = "timm/data/_info/imagenet_synset_to_lemma.txt";

/// The label files do not describe 1000 named classes.
#[derive(Debug, thiserror::Error)]
#[error("bad label data: {0}")]
pub struct LabelsError(String);

/// One line per class in index order (synsets sorted, as ImageNet-1k
/// indices are): all of the class's names, comma-separated, the first
/// being the display label.
pub fn build_labels(synsets: &[u8], lemmas: &[u8]) -> Result<String, LabelsError> {
    let synsets = std::str::from_utf8(synsets).map_err(|e| LabelsError(e.to_string()))?;
    let lemmas = std::str::from_utf8(lemmas).map_err(|e| LabelsError(e.to_string()))?;
    let table: std::collections::HashMap<&str, &str> = lemmas
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let ids: Vec<&str> = synsets
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if ids.len() != 1000 {
        return Err(LabelsError(format!(
            "expected 1000 synsets, found {}",
            ids.len()
        )));
    }
    let mut out = String::new();
    for id in ids {
        let names = table
            .get(id)
            .ok_or_else(|| LabelsError(format!("no names for synset {id}")))?;
        out.push_str(names);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_synset_order() {
        let synsets: String = (0..1000).map(|i| format!("n{i:08}\n")).collect();
        let mut lemmas: String = (0..1000)
            .rev()
            .map(|i| format!("n{i:08}\tname {i}, other\n"))
            .collect();
        let built = build_labels(synsets.as_bytes(), lemmas.as_bytes()).unwrap();
        assert_eq!(built.lines().next(), Some("name 0, other"));
        assert_eq!(built.lines().nth(999), Some("name 999, other"));
        lemmas = lemmas.replace("n00000007\t", "x\t");
        assert!(build_labels(synsets.as_bytes(), lemmas.as_bytes()).is_err());
    }
}
