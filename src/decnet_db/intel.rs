//! The intel catch-up (docs/decnet-db.md §5): an `attacker_intel` row as the payload of the
//! extra intel event DECNET adds to every `session.ended` message.

/// How a column is read back into the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Text,
    Int,
    Bool,
    /// A JSON column: SQLite keeps it as text, MySQL as its JSON type.
    Json,
}

/// The payload's members, in DECNET's order, each the column of the same name.
pub const CATCHUP_COLUMNS: [(&str, ColumnKind); 14] = [
    ("attacker_uuid", ColumnKind::Text),
    ("attacker_ip", ColumnKind::Text),
    ("aggregate_verdict", ColumnKind::Text),
    ("abuseipdb_score", ColumnKind::Int),
    ("abuseipdb_categories", ColumnKind::Json),
    ("greynoise_classification", ColumnKind::Text),
    ("greynoise_name", ColumnKind::Text),
    ("greynoise_tags", ColumnKind::Json),
    ("feodo_listed", ColumnKind::Bool),
    ("feodo_malware_family", ColumnKind::Text),
    ("threatfox_listed", ColumnKind::Bool),
    ("threatfox_threat_types", ColumnKind::Json),
    ("threatfox_ioc_types", ColumnKind::Json),
    ("threatfox_malware_families", ColumnKind::Json),
];
