//! `ttp-worker stats`: a health glance at the store, for a human.

use std::io::{self, Write};
use std::path::Path;

use crate::decnet_db::DecnetDbSettings;
use crate::store::{Size, Stats, Store};

/// Why `stats` showed nothing, or stopped part way.
pub type Error = super::StoreReadError;

/// Opens `db` read-only and prints its [`Stats`] for a human.
pub fn run(db: &Path, mut out: impl Write) -> Result<(), Error> {
    let stats = Store::open_read_only(db)?.stats()?;
    write_stats(&db.display().to_string(), &stats, &mut out)
        .and_then(|()| out.flush())
        .map_err(Error::Write)
}

/// [`run`] on DECNET's database, read-only.
pub fn run_decnet(settings: &DecnetDbSettings, mut out: impl Write) -> Result<(), Error> {
    let stats = crate::decnet_db::stats(settings)?;
    let name = format!("DECNET's database, {}", settings.describe());
    write_stats(&name, &stats, &mut out)
        .and_then(|()| out.flush())
        .map_err(Error::Write)
}

fn write_stats(db: &str, s: &Stats, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "database        {db}")?;
    if let Some(version) = s.schema_version {
        writeln!(out, "schema version  {version}")?;
    }
    match s.size {
        Size::File(bytes) => writeln!(out, "size            {} (incl. WAL)", human_bytes(bytes))?,
        Size::Table(bytes) => writeln!(
            out,
            "size            {} (ttp_tag's data and indexes, as the server estimates)",
            human_bytes(bytes)
        )?,
    }
    writeln!(out, "tags            {}", s.total)?;
    writeln!(out, "tags last 24h   {}", s.last_24h)?;
    writeln!(out, "attackers       {}", s.attackers)?;
    if let Some(anchors) = s.anchors {
        writeln!(out, "anchors known   {anchors}")?;
    }
    for (title, groups) in [("by technique", &s.by_technique), ("by rule", &s.by_rule)] {
        writeln!(out)?;
        writeln!(out, "{title}")?;
        if groups.is_empty() {
            writeln!(out, "  (none)")?;
        }
        let width = groups
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (key, n) in groups {
            let key: String = key.chars().filter(|c| !c.is_control()).collect();
            writeln!(out, "  {key:<width$}  {n}")?;
        }
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit} ({bytes} bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4.0 KiB (4096 bytes)");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB (5242880 bytes)");
    }
}
