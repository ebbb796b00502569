//! What the worker needs of DECNET's schema (docs/decnet-db.md §2), checked at start. DECNET
//! owns its tables and migrates them itself; the worker never creates or alters one, so a
//! table that is missing or lacks a column means the worker is pointed at the wrong database
//! (or at a DECNET it does not know), and it refuses to start, saying what is missing.

use std::fmt;

/// Each table the worker reads or writes, with the columns it uses.
pub const REQUIRED: [(&str, &[&str]); 4] = [
    (
        "ttp_tag",
        &[
            "uuid",
            "source_kind",
            "source_id",
            "attacker_uuid",
            "identity_uuid",
            "session_id",
            "decky_id",
            "tactic",
            "technique_id",
            "sub_technique_id",
            "confidence",
            "rule_id",
            "rule_version",
            "evidence",
            "attack_release",
            "mitre_url",
            "created_at",
        ],
    ),
    (
        "attackers",
        &[
            "uuid",
            "ip",
            "ipv6_leak_count",
            "last_ipv6_leak_at",
            "last_ipv6_link_local",
            "last_ipv6_iid_kind",
            "last_ipv6_mac_oui",
        ],
    ),
    ("attacker_identities", &["uuid", "ipv6_link_local_iids"]),
    (
        "attacker_intel",
        &[
            "attacker_uuid",
            "attacker_ip",
            "aggregate_verdict",
            "abuseipdb_score",
            "abuseipdb_categories",
            "greynoise_classification",
            "greynoise_name",
            "greynoise_tags",
            "feodo_listed",
            "feodo_malware_family",
            "threatfox_listed",
            "threatfox_threat_types",
            "threatfox_ioc_types",
            "threatfox_malware_families",
        ],
    ),
];

/// What the database lacks, table by table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaMismatch {
    pub missing_tables: Vec<&'static str>,
    pub missing_columns: Vec<(&'static str, Vec<&'static str>)>,
}

impl SchemaMismatch {
    pub fn is_empty(&self) -> bool {
        self.missing_tables.is_empty() && self.missing_columns.is_empty()
    }
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing_tables.is_empty() {
            parts.push(format!("no table {}", self.missing_tables.join(", ")));
        }
        for (table, columns) in &self.missing_columns {
            parts.push(format!(
                "table {table} has no column {}",
                columns.join(", ")
            ));
        }
        write!(
            f,
            "{}; is this DECNET's database, created by DECNET 1.x? ttp-worker never creates or \
             alters DECNET's tables",
            parts.join("; ")
        )
    }
}

/// Compares the database's columns (`columns_of` gives a table's column names, `None` when
/// the table does not exist) with [`REQUIRED`].
pub fn check<E>(
    mut columns_of: impl FnMut(&str) -> Result<Option<Vec<String>>, E>,
) -> Result<SchemaMismatch, E> {
    let mut mismatch = SchemaMismatch::default();
    for (table, wanted) in REQUIRED {
        let Some(found) = columns_of(table)? else {
            mismatch.missing_tables.push(table);
            continue;
        };
        let missing: Vec<&'static str> = wanted
            .iter()
            .copied()
            .filter(|column| !found.iter().any(|f| f.eq_ignore_ascii_case(column)))
            .collect();
        if !missing.is_empty() {
            mismatch.missing_columns.push((table, missing));
        }
    }
    Ok(mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_missing_tables_and_columns() {
        let mismatch = check(|table| -> Result<_, ()> {
            Ok(match table {
                "ttp_tag" => Some(
                    REQUIRED[0]
                        .1
                        .iter()
                        .filter(|c| **c != "mitre_url")
                        .map(|c| c.to_string())
                        .collect(),
                ),
                "attackers" => None,
                _ => Some(vec!["UUID".into(), "attacker_uuid".into()]),
            })
        })
        .unwrap_or_default();
        let text = mismatch.to_string();
        assert!(text.starts_with("no table attackers; table ttp_tag has no column mitre_url;"));
        assert!(text.contains("table attacker_identities has no column ipv6_link_local_iids"));
        assert!(
            !text.contains("attacker_intel has no column attacker_uuid"),
            "{text}"
        );
    }
}
