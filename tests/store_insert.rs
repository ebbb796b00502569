//! Batch inserts and anchors against real SQLite files: what the main loop relies on to
//! publish `ttp.tagged` only for rows that are really new (docs/bus.md §6.3).

mod store_support;

use std::collections::HashMap;

use store_support::*;
use ttp_worker::store::{Anchor, SkipReason, Store, TagsQuery};
use ttp_worker::tagging::Tag;

fn all(store: &Store) -> Vec<ttp_worker::store::StoredTag> {
    store
        .query_tags(&TagsQuery {
            limit: Some(10_000),
            ..TagsQuery::default()
        })
        .unwrap()
}

#[test]
fn the_same_batch_twice_reports_nothing_new_the_second_time() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let batch = vec![vec![tag("a"), tag("b")], vec![tag("c")]];

    let first = store.insert_batch(&batch).unwrap();
    assert_eq!(first.inserted, vec![vec![0, 1], vec![0]]);
    assert_eq!(first.inserted_count(), 3);
    assert!(first.skipped.is_empty());

    let second = store.insert_batch(&batch).unwrap();
    assert_eq!(second.inserted, vec![Vec::<usize>::new(), vec![]]);
    assert_eq!(second.inserted_count(), 0);
    assert_eq!(all(&store).len(), 3);
}

#[test]
fn new_rows_are_reported_per_message_and_a_uuid_counts_once_per_batch() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    store.insert_batch(&[vec![tag("old")]]).unwrap();

    let batch = vec![
        vec![tag("a"), tag("b"), tag("a")], // a repeated inside one message
        vec![tag("old"), tag("c"), tag("b")], // old: stored before; b: earlier message
        vec![],                             // a message that produced no tags
        vec![tag("d")],
    ];
    let outcome = store.insert_batch(&batch).unwrap();
    assert_eq!(outcome.inserted, vec![vec![0, 1], vec![1], vec![], vec![0]]);
    assert_eq!(all(&store).len(), 5);
}

#[test]
fn rows_violating_the_checks_are_skipped_and_reported_without_losing_the_rest() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let too_sure = Tag {
        confidence: 1.5,
        ..tag("too-sure")
    };
    let nan = Tag {
        confidence: f64::NAN,
        ..tag("nan")
    };
    let anchorless = Tag {
        attacker_uuid: None,
        attacker_ip: None,
        ..tag("anchorless")
    };
    let batch = vec![
        vec![tag("a"), too_sure, tag("b")],
        vec![nan, anchorless, tag("c")],
    ];

    let outcome = store.insert_batch(&batch).unwrap();
    assert_eq!(outcome.inserted, vec![vec![0, 2], vec![2]]);
    assert_eq!(outcome.skipped.len(), 3);
    let where_why: Vec<(usize, usize)> =
        outcome.skipped.iter().map(|s| (s.message, s.tag)).collect();
    assert_eq!(where_why, vec![(0, 1), (1, 0), (1, 1)]);
    assert_eq!(
        outcome.skipped[0].reason,
        SkipReason::ConfidenceOutOfRange(1.5)
    );
    assert_eq!(outcome.skipped[0].uuid, uuid_for("too-sure"));
    assert!(matches!(
        outcome.skipped[1].reason,
        SkipReason::ConfidenceOutOfRange(c) if c.is_nan()
    ));
    assert_eq!(outcome.skipped[2].reason, SkipReason::NoAnchor);
    assert!(outcome.skipped[0].reason.to_string().contains("1.5"));
    assert_eq!(all(&store).len(), 3);
}

#[test]
fn stored_rows_read_back_as_given() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let given = brute_tag("x", Some("T1110.001"));
    store.insert_batch(&[vec![given.clone()]]).unwrap();

    let rows = all(&store);
    let row = &rows[0];
    assert_eq!(row.tag.uuid, given.uuid);
    assert_eq!(row.tag.sub_technique_id.as_deref(), Some("T1110.001"));
    assert_eq!(row.tag.confidence, 0.9);
    assert_eq!(row.tag.rule_version, 1);
    assert_eq!(row.attack_release, "v15.1");
    assert_eq!(row.evidence(), serde_json::Value::Object(given.evidence));
    // Key order is kept (preserve_order), as DECNET writes it.
    assert_eq!(
        row.evidence().to_string(),
        r#"{"attempts":42,"service":"ssh"}"#
    );
    assert_eq!(row.created_at.len(), "2026-05-01T12:34:56.789012Z".len());
    assert!(row.created_at.ends_with('Z'));
}

#[test]
fn learning_an_anchor_upgrades_only_that_addresses_ip_anchored_rows() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let other_ip = "198.51.100.9";
    store
        .insert_batch(&[vec![
            ip_tag("p1", IP),
            ip_tag("p2", IP),
            ip_tag("q", other_ip),
            identity_tag("roll-up", Some(IP)),
            Tag {
                attacker_uuid: Some(OTHER_ATTACKER.into()),
                ..tag("already-anchored")
            },
        ]])
        .unwrap();
    let before: HashMap<String, _> = all(&store)
        .into_iter()
        .map(|r| (r.tag.uuid.clone(), r))
        .collect();

    assert_eq!(store.learn_anchor(IP, ATTACKER).unwrap(), 2);

    let after: HashMap<String, _> = all(&store)
        .into_iter()
        .map(|r| (r.tag.uuid.clone(), r))
        .collect();
    assert_eq!(
        before.keys().collect::<std::collections::BTreeSet<_>>(),
        after.keys().collect::<std::collections::BTreeSet<_>>(),
        "tag uuids never change"
    );
    for key in ["p1", "p2"] {
        assert_eq!(
            after[&uuid_for(key)].tag.attacker_uuid.as_deref(),
            Some(ATTACKER)
        );
        assert_eq!(after[&uuid_for(key)].tag.attacker_ip.as_deref(), Some(IP));
    }
    assert_eq!(after[&uuid_for("q")], before[&uuid_for("q")]);
    assert_eq!(after[&uuid_for("roll-up")], before[&uuid_for("roll-up")]);
    assert_eq!(
        after[&uuid_for("already-anchored")]
            .tag
            .attacker_uuid
            .as_deref(),
        Some(OTHER_ATTACKER)
    );

    // Learning it again finds nothing left to upgrade.
    assert_eq!(store.learn_anchor(IP, ATTACKER).unwrap(), 0);
    assert!(store.learn_anchor("", ATTACKER).is_err());
}

#[test]
fn anchors_learned_with_a_batch_upgrade_that_batchs_own_tags() {
    let (_dir, path) = temp_db();
    let mut store = Store::open(&path).unwrap();
    let anchors = [
        Anchor {
            attacker_ip: IP.into(),
            attacker_uuid: ATTACKER.into(),
        },
        Anchor {
            attacker_ip: " ".into(),
            attacker_uuid: ATTACKER.into(),
        },
    ];
    let outcome = store
        .commit_batch(&[vec![ip_tag("fresh", IP)]], &anchors)
        .unwrap();
    assert_eq!(outcome.inserted, vec![vec![0]]);
    assert_eq!(outcome.upgraded, 1);
    assert_eq!(outcome.skipped_anchors.len(), 1);
    assert_eq!(outcome.skipped_anchors[0].index, 1);
    assert_eq!(all(&store)[0].tag.attacker_uuid.as_deref(), Some(ATTACKER));
    assert_eq!(store.load_anchors().unwrap().len(), 1);
}

#[test]
fn anchors_survive_a_restart() {
    let (_dir, path) = temp_db();
    {
        let mut store = Store::open(&path).unwrap();
        store.learn_anchor(IP, ATTACKER).unwrap();
        store.learn_anchor("198.51.100.9", OTHER_ATTACKER).unwrap();
        // A later sighting moves the address to another attacker: latest wins.
        store.learn_anchor("198.51.100.9", ATTACKER).unwrap();
    }
    let store = Store::open(&path).unwrap();
    let expected = HashMap::from([
        (IP.to_string(), ATTACKER.to_string()),
        ("198.51.100.9".to_string(), ATTACKER.to_string()),
    ]);
    assert_eq!(store.load_anchors().unwrap(), expected);
    drop(store);
    assert_eq!(
        Store::open_read_only(&path)
            .unwrap()
            .load_anchors()
            .unwrap(),
        expected
    );
}
