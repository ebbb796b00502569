//! Writing a batch: every tag of every message of one main-loop wake-up in one transaction.
//!
//! The result says, per message, which tags were really new, because that — not "the insert
//! succeeded" — decides whether `ttp.tagged` is published (docs/bus.md §6.3). Rows the schema would
//! refuse are filtered out beforehand and reported: in DECNET one out-of-range confidence loses
//! the whole batch (docs/tagging.md §10.1 step 3), which here would also lose its neighbours'
//! messages. Anchors learned by the same wake-up are written in the same transaction, so a
//! crash can never leave tags committed without the upgrade their anchor implies.

use std::time::SystemTime;

use rusqlite::{ErrorCode, TransactionBehavior};
use serde_json::Value;

use super::anchors::{self, Anchor};
use super::clock::format_utc;
use super::db::{ATTACK_RELEASE, Store};
use super::error::StoreError;
use crate::tagging::Tag;

/// Why a tag was not stored. None of these is worth retrying: the same tag fails again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SkipReason {
    #[error("confidence {0} is outside 0..=1")]
    ConfidenceOutOfRange(f64),
    #[error("no anchor: attacker_uuid, identity_uuid and attacker_ip are all null or empty")]
    NoAnchor,
    #[error("uuid {0:?} is not a lowercase hyphenated UUID")]
    MalformedUuid(String),
    /// A constraint the validation did not foresee; kept so one odd row still costs only itself.
    #[error("the database refused the row: {0}")]
    Rejected(String),
}

/// A tag left out of the batch, located by message and position.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedTag {
    pub message: usize,
    pub tag: usize,
    pub uuid: String,
    pub reason: SkipReason,
}

/// An anchor left out of the batch (empty address or UUID); nothing was learned from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedAnchor {
    pub index: usize,
    pub reason: &'static str,
}

/// What one committed batch did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Per message (same order as given): indices of its tags that were really inserted, in
    /// order. A uuid already stored, or seen earlier in the same batch, is not listed.
    pub inserted: Vec<Vec<usize>>,
    /// Tags not stored because they would violate the schema.
    pub skipped: Vec<SkippedTag>,
    /// IP-anchored rows that received an `attacker_uuid` from this batch's anchors.
    pub upgraded: usize,
    pub skipped_anchors: Vec<SkippedAnchor>,
}

impl BatchOutcome {
    /// Total rows inserted over all messages.
    pub fn inserted_count(&self) -> usize {
        self.inserted.iter().map(Vec::len).sum()
    }
}

/// `ON CONFLICT(uuid) DO NOTHING` rather than `INSERT OR IGNORE`: SQLite's `OR IGNORE` also
/// swallows CHECK and NOT NULL failures, which would make a broken row look like a replay.
const INSERT_TAG: &str = "INSERT INTO ttp_tag (
    uuid, source_kind, source_id, attacker_uuid, identity_uuid, attacker_ip, session_id,
    decky_id, tactic, technique_id, sub_technique_id, confidence, rule_id, rule_version,
    evidence, attack_release, mitre_url, created_at
) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
ON CONFLICT (uuid) DO NOTHING";

impl Store {
    /// Inserts every tag of every message in one transaction and reports which were new.
    pub fn insert_batch(&mut self, messages: &[Vec<Tag>]) -> Result<BatchOutcome, StoreError> {
        self.commit_batch(messages, &[])
    }

    /// Like [`Store::insert_batch`], also learning `anchors` (after the tags, so the batch's
    /// own IP-anchored tags are upgraded too). On error nothing of the batch is kept and the
    /// same call can simply be repeated later.
    pub fn commit_batch(
        &mut self,
        messages: &[Vec<Tag>],
        anchors: &[Anchor],
    ) -> Result<BatchOutcome, StoreError> {
        self.commit_batch_at(messages, anchors, SystemTime::now())
    }

    /// [`Store::commit_batch`] with an explicit `created_at` / `last_seen` time, for replays
    /// and tests that need rows of a known age.
    pub fn commit_batch_at(
        &mut self,
        messages: &[Vec<Tag>],
        anchors: &[Anchor],
        now: SystemTime,
    ) -> Result<BatchOutcome, StoreError> {
        let path = self.path.clone();
        let sqlite = |e| StoreError::from_sqlite(&path, e);
        let now = format_utc(now);
        let mut outcome = BatchOutcome::default();
        // IMMEDIATE takes the write lock up front: a busy database fails before any work, and
        // never half way through when a read transaction would need upgrading.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        {
            let mut insert = tx.prepare_cached(INSERT_TAG).map_err(sqlite)?;
            for (m, tags) in messages.iter().enumerate() {
                let mut new = Vec::new();
                for (t, tag) in tags.iter().enumerate() {
                    let skip = |reason| SkippedTag {
                        message: m,
                        tag: t,
                        uuid: tag.uuid.clone(),
                        reason,
                    };
                    if let Err(reason) = validate(tag) {
                        outcome.skipped.push(skip(reason));
                        continue;
                    }
                    let evidence = Value::Object(tag.evidence.clone()).to_string();
                    let result = insert.execute(rusqlite::params![
                        tag.uuid,
                        tag.source_kind,
                        tag.source_id,
                        tag.attacker_uuid,
                        tag.identity_uuid,
                        tag.attacker_ip,
                        tag.session_id,
                        tag.decky_id,
                        tag.tactic,
                        tag.technique_id,
                        tag.sub_technique_id,
                        tag.confidence,
                        tag.rule_id,
                        tag.rule_version,
                        evidence,
                        ATTACK_RELEASE,
                        mitre_url(&tag.technique_id, tag.sub_technique_id.as_deref()),
                        now,
                    ]);
                    match result {
                        Ok(0) => {} // already stored, or earlier in this batch
                        Ok(_) => new.push(t),
                        // A constraint failure aborts only this statement; the transaction and
                        // the rows before it stay.
                        Err(e) if e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                            outcome
                                .skipped
                                .push(skip(SkipReason::Rejected(e.to_string())));
                        }
                        Err(e) => return Err(sqlite(e)),
                    }
                }
                outcome.inserted.push(new);
            }
        }
        for (index, anchor) in anchors.iter().enumerate() {
            if let Err(reason) = anchors::validate(anchor) {
                outcome
                    .skipped_anchors
                    .push(SkippedAnchor { index, reason });
                continue;
            }
            outcome.upgraded += anchors::learn(&tx, anchor, &now).map_err(sqlite)?;
        }
        // A failed COMMIT leaves the transaction open; dropping `tx` then rolls it back.
        tx.commit().map_err(sqlite)?;
        self.check_identity()?;
        Ok(outcome)
    }
}

/// The schema's CHECKs, tested in Rust so a bad row is reported with a reason and skipped.
fn validate(tag: &Tag) -> Result<(), SkipReason> {
    // Written so NaN fails too.
    if !(0.0..=1.0).contains(&tag.confidence) {
        return Err(SkipReason::ConfidenceOutOfRange(tag.confidence));
    }
    // Stricter than the CHECK (which only sees NULL): an empty string anchors nothing, and a
    // row nobody can find by attacker, identity or address is dead weight.
    let anchored = [&tag.attacker_uuid, &tag.identity_uuid, &tag.attacker_ip]
        .into_iter()
        .any(|a| a.as_deref().is_some_and(|s| !s.trim().is_empty()));
    if !anchored {
        return Err(SkipReason::NoAnchor);
    }
    if !is_canonical_uuid(&tag.uuid) {
        return Err(SkipReason::MalformedUuid(tag.uuid.clone()));
    }
    Ok(())
}

/// A primary key in any other spelling would defeat dedup: the same tag written as upper case
/// or braced text would be a second row.
fn is_canonical_uuid(text: &str) -> bool {
    uuid::Uuid::try_parse(text).is_ok_and(|u| u.hyphenated().to_string() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_mirrors_the_checks() {
        let ok = Tag::for_test("9aa491e5-f03b-5d8f-9eb5-161becedcdd6");
        assert_eq!(validate(&ok), Ok(()));
        for c in [0.0, 1.0] {
            assert_eq!(
                validate(&Tag {
                    confidence: c,
                    ..ok.clone()
                }),
                Ok(())
            );
        }
        for c in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                validate(&Tag {
                    confidence: c,
                    ..ok.clone()
                }),
                Err(SkipReason::ConfidenceOutOfRange(_))
            ));
        }
        let anchorless = Tag {
            attacker_uuid: None,
            ..ok.clone()
        };
        assert_eq!(validate(&anchorless), Err(SkipReason::NoAnchor));
        let blank = Tag {
            attacker_uuid: Some(String::new()),
            attacker_ip: Some(" ".into()),
            ..ok.clone()
        };
        assert_eq!(validate(&blank), Err(SkipReason::NoAnchor));
        let by_ip = Tag {
            attacker_uuid: None,
            attacker_ip: Some("203.0.113.7".into()),
            ..ok.clone()
        };
        assert_eq!(validate(&by_ip), Ok(()));
        for bad in [
            "9AA491E5-F03B-5D8F-9EB5-161BECEDCDD6",
            "9aa491e5f03b5d8f9eb5161becedcdd6",
            "{9aa491e5-f03b-5d8f-9eb5-161becedcdd6}",
            "",
            "not-a-uuid",
        ] {
            assert!(matches!(
                validate(&Tag {
                    uuid: bad.into(),
                    ..ok.clone()
                }),
                Err(SkipReason::MalformedUuid(_))
            ));
        }
    }
}

/// The technique's page on attack.mitre.org: `T1059.004` → `.../techniques/T1059/004`.
/// DECNET looks ids up in its ATT&CK bundle; ids that do not look like ATT&CK ids get none.
pub fn mitre_url(technique: &str, sub_technique: Option<&str>) -> Option<String> {
    let id = sub_technique.filter(|s| !s.is_empty()).unwrap_or(technique);
    let (parent, sub) = match id.split_once('.') {
        Some((parent, sub)) => (parent, Some(sub)),
        None => (id, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(parent.starts_with('T') && digits(&parent[1..], 4)) {
        return None;
    }
    match sub {
        None => Some(format!("https://attack.mitre.org/techniques/{parent}")),
        Some(sub) if digits(sub, 3) => Some(format!(
            "https://attack.mitre.org/techniques/{parent}/{sub}"
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod mitre_url_tests {
    use super::mitre_url;

    #[test]
    fn canonical_attack_urls() {
        assert_eq!(
            mitre_url("T1083", None).as_deref(),
            Some("https://attack.mitre.org/techniques/T1083")
        );
        assert_eq!(
            mitre_url("T1059", Some("T1059.004")).as_deref(),
            Some("https://attack.mitre.org/techniques/T1059/004")
        );
        assert_eq!(
            mitre_url("T1059", Some("")).as_deref(),
            Some("https://attack.mitre.org/techniques/T1059")
        );
        for bad in ["", "T12", "X1083", "T1083.4", "T1083/004"] {
            assert_eq!(mitre_url(bad, None), None, "{bad}");
        }
    }
}
