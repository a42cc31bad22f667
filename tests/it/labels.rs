//! The compiled-in music label list against the AudioSet ontology it was derived from.

use std::collections::{BTreeSet, HashMap};

use crate::common;

#[test]
fn music_list_is_the_ontology_subtree_of_music() {
    let Some(shared) = common::shared_audioset() else {
        return;
    };
    let ontology: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(shared.join("ontology.json")).unwrap())
            .unwrap();
    let children: HashMap<&str, Vec<&str>> = ontology
        .iter()
        .map(|n| {
            let kids = n["child_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            (n["id"].as_str().unwrap(), kids)
        })
        .collect();
    let mut subtree = BTreeSet::new();
    let mut stack = vec!["/m/04rlf"];
    while let Some(mid) = stack.pop() {
        if subtree.insert(mid) {
            stack.extend(&children[mid]);
        }
    }
    let csv = std::fs::read_to_string(shared.join("class_labels_indices.csv")).unwrap();
    let derived: BTreeSet<i64> = csv
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut parts = line.splitn(3, ',');
            let index = parts.next()?.parse().ok()?;
            subtree.contains(parts.next()?).then_some(index)
        })
        .collect();
    let compiled: BTreeSet<i64> = include_str!("../../src/data/music_label_indices.txt")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(derived.len(), 150);
    assert_eq!(compiled, derived);
    // The class table compiled in is Google's, byte for byte.
    assert_eq!(include_str!("../../src/data/class_labels_indices.csv"), csv);
}
