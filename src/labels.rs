//! The AudioSet class table and the sets of labels that count as music.
//!
//! The 527 class names and the ontology's music subtree are compiled into the binary so that the tool needs no
//! data files at run time. Sources: Google's `class_labels_indices.csv` and the subtree of "Music" (/m/04rlf)
//! in the AudioSet ontology (see `src/data/README.md`).

use std::fmt;
use std::sync::OnceLock;

use crate::error::UsageError;

/// Number of AudioSet classes (indices 0..527).
pub const CLASS_COUNT: usize = 527;

/// The label "Music" itself, the root of the music subtree.
pub const MUSIC: u16 = 137;

const CLASS_CSV: &str = include_str!("data/class_labels_indices.csv");
const MUSIC_SUBTREE: &str = include_str!("data/music_label_indices.txt");

/// Display names by class index, parsed once from the compiled-in CSV.
pub fn class_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        CLASS_CSV
            .lines()
            .skip(1)
            .filter(|line| !line.is_empty())
            .map(|line| {
                // `index,mid,"display name"`: the name is the rest of the line after the second comma,
                // quoted because names contain commas ("Male speech, man speaking").
                let name = line.splitn(3, ',').nth(2).unwrap_or_default();
                name.trim().trim_matches('"').to_string()
            })
            .collect()
    })
}

/// The display name of a label index, or `None` for an index outside AudioSet's 527 classes.
pub fn class_name(index: i64) -> Option<&'static str> {
    usize::try_from(index)
        .ok()
        .and_then(|i| class_names().get(i))
        .map(String::as_str)
}

/// A set of label indices, answering "does this clip carry any of them?" in constant time per label.
#[derive(Clone, PartialEq, Eq)]
pub struct LabelSet {
    /// One bit per label.
    members: [u64; CLASS_COUNT.div_ceil(64)],
}

impl LabelSet {
    pub fn empty() -> Self {
        LabelSet {
            members: [0; CLASS_COUNT.div_ceil(64)],
        }
    }

    /// Every label: `--music all`.
    pub fn all() -> Self {
        let mut set = Self::empty();
        (0..CLASS_COUNT as u16).for_each(|i| set.insert(i));
        set
    }

    /// Which clips are music, as `ingest --music` and the Python package's `music=` say it: "ontology" (see
    /// [`LabelSet::music_ontology`]), "names" ([`LabelSet::music_by_name`]), "all", or a list of label indices
    /// and names ([`parse_label_list`]). One parser, so that every front end takes the same rules.
    pub fn from_rule(spec: &str) -> Result<Self, UsageError> {
        match spec {
            "ontology" => Ok(LabelSet::music_ontology()),
            "names" => Ok(LabelSet::music_by_name()),
            "all" => Ok(LabelSet::all()),
            list => parse_label_list(list),
        }
    }

    /// "Music" and every indexed label below it in the AudioSet ontology (150 labels).
    pub fn music_ontology() -> Self {
        let mut set = Self::empty();
        for index in MUSIC_SUBTREE
            .lines()
            .filter_map(|l| l.trim().parse::<usize>().ok())
        {
            set.insert(index as u16);
        }
        set
    }

    /// The original notebook's rule: the display name contains "music", case-insensitive (44 labels).
    pub fn music_by_name() -> Self {
        let mut set = Self::empty();
        for (index, name) in class_names().iter().enumerate() {
            if name.to_ascii_lowercase().contains("music") {
                set.insert(index as u16);
            }
        }
        set
    }

    pub fn insert(&mut self, index: u16) {
        let i = usize::from(index);
        if i < CLASS_COUNT {
            self.members[i / 64] |= 1 << (i % 64);
        }
    }

    pub fn contains(&self, label: i64) -> bool {
        usize::try_from(label)
            .is_ok_and(|i| i < CLASS_COUNT && self.members[i / 64] & (1 << (i % 64)) != 0)
    }

    /// True when any of `labels` is in the set.
    pub fn matches_any(&self, labels: &[i64]) -> bool {
        labels.iter().any(|&label| self.contains(label))
    }

    pub fn len(&self) -> usize {
        self.members.iter().map(|m| m.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn indices(&self) -> impl Iterator<Item = u16> + '_ {
        (0..CLASS_COUNT as u16).filter(|&i| self.contains(i.into()))
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.indices()).finish()
    }
}

/// Resolves one label given by a user as an index ("216") or a display name ("Jazz", any case).
/// An unknown name is a usage error that suggests the nearest names.
pub fn resolve_label(text: &str) -> Result<u16, UsageError> {
    let text = text.trim();
    if let Ok(index) = text.parse::<i64>() {
        return match u16::try_from(index) {
            Ok(i) if usize::from(i) < CLASS_COUNT => Ok(i),
            _ => Err(UsageError::new(format!(
                "label index {index} is out of range (AudioSet has labels 0 to {})",
                CLASS_COUNT - 1
            ))),
        };
    }
    let wanted = text.to_lowercase();
    if let Some(i) = class_names()
        .iter()
        .position(|n| n.to_lowercase() == wanted)
    {
        return Ok(i as u16);
    }
    let suggestions = nearest_names(&wanted, 3);
    Err(UsageError::new(format!(
        "unknown label '{text}'; did you mean {}?",
        suggestions
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Parses a comma-separated list of label indices and display names into a set.
///
/// Some display names contain commas ("Violin, fiddle"), so a piece that is not a label on its own is joined
/// with the pieces after it until the joined text names a label.
pub fn parse_label_list(spec: &str) -> Result<LabelSet, UsageError> {
    let pieces: Vec<&str> = spec.split(',').collect();
    let mut set = LabelSet::empty();
    let mut start = 0;
    while start < pieces.len() {
        if pieces[start].trim().is_empty() {
            start += 1;
            continue;
        }
        let mut found = None;
        for end in start..pieces.len() {
            let joined = pieces[start..=end].join(",");
            if let Ok(index) = resolve_label(&joined) {
                found = Some((index, end));
                break;
            }
        }
        match found {
            Some((index, end)) => {
                set.insert(index);
                start = end + 1;
            }
            // Report the error for the piece on its own: that is what the user most likely mistyped.
            None => return Err(resolve_label(pieces[start]).unwrap_err()),
        }
    }
    if set.is_empty() {
        return Err(UsageError::new("the label list is empty"));
    }
    Ok(set)
}

/// The `count` display names most like `wanted` (lower case): names that contain it first (`rock` finds "Rock
/// music" and "Punk rock"), then by Jaro-Winkler similarity, which weighs a shared beginning (`Jaz` is most like
/// "Jazz", not "Car" or "Cat", which are as few edits away).
fn nearest_names(wanted: &str, count: usize) -> Vec<&'static str> {
    let mut scored: Vec<(bool, f64, &'static str)> = class_names()
        .iter()
        .map(|name| {
            let lower = name.to_lowercase();
            let contains = lower.contains(wanted) || wanted.contains(&lower);
            (
                contains,
                strsim::jaro_winkler(wanted, &lower),
                name.as_str(),
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(b.2)));
    scored
        .into_iter()
        .take(count)
        .map(|(_, _, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_table_has_every_class() {
        assert_eq!(class_names().len(), CLASS_COUNT);
        assert_eq!(class_name(137), Some("Music"));
        assert_eq!(class_name(1), Some("Male speech, man speaking"));
        assert_eq!(class_name(527), None);
        assert_eq!(class_name(-1), None);
    }

    #[test]
    fn music_sets_have_documented_sizes() {
        assert_eq!(LabelSet::music_ontology().len(), 150);
        assert_eq!(LabelSet::music_by_name().len(), 44);
        assert!(
            LabelSet::music_ontology().contains(92),
            "Cowbell sits under Percussion"
        );
    }

    #[test]
    fn label_lists_accept_names_with_commas_and_indices() {
        let set = parse_label_list("jazz, Blues,216,Violin, fiddle").unwrap();
        let names: Vec<_> = set
            .indices()
            .map(|i| class_name(i.into()).unwrap())
            .collect();
        assert_eq!(names, ["Violin, fiddle", "Pop music", "Jazz", "Blues"]);
    }

    #[test]
    fn unknown_label_suggests_near_names() {
        let err = parse_label_list("Jaz").unwrap_err().to_string();
        assert!(
            err.contains("unknown label 'Jaz'") && err.contains("did you mean 'Jazz', "),
            "{err}"
        );
        assert!(!err.contains("'Car'") && !err.contains("'Cat'"), "{err}");
        let err = parse_label_list("Guitr").unwrap_err().to_string();
        assert!(err.contains("did you mean 'Guitar', "), "{err}");
        assert!(parse_label_list("999").is_err());
    }
}
