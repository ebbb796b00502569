//! The intel lifter's mapping tables (docs/tagging.md §8.6): which techniques a provider's signal
//! stands for. Ours are built in; an operator's directory replaces them per provider.

use std::path::Path;

use rustc_hash::FxHashMap;
use serde_json::Value;

use crate::tagging::py::{as_number, py_str, truthy};
use crate::tagging::rules::{RuleProblem, rule_files};
use crate::tagging::yaml::parse_document;

/// Technique ids produced by one provider signal; a threshold gates on the AbuseIPDB score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProviderMap {
    pub signals: FxHashMap<String, Vec<(String, Option<f64>)>>,
}

/// Mapping tables per provider (`abuseipdb`, `greynoise`, `feodo`, `threatfox`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IntelMaps {
    pub providers: FxHashMap<String, ProviderMap>,
}

const BUILTIN_MAPS: [(&str, &str); 4] = [
    (
        "builtin:intel/abuseipdb.yaml",
        include_str!("../builtin/intel/abuseipdb.yaml"),
    ),
    (
        "builtin:intel/greynoise.yaml",
        include_str!("../builtin/intel/greynoise.yaml"),
    ),
    (
        "builtin:intel/feodo.yaml",
        include_str!("../builtin/intel/feodo.yaml"),
    ),
    (
        "builtin:intel/threatfox.yaml",
        include_str!("../builtin/intel/threatfox.yaml"),
    ),
];

impl IntelMaps {
    /// Our own tables, compiled into the binary.
    pub fn builtin() -> IntelMaps {
        let mut maps = IntelMaps::default();
        for (origin, text) in BUILTIN_MAPS {
            // The built-in tables are covered by tests; a failure here cannot happen at run time.
            let _ = maps.add_text(origin, text);
        }
        maps
    }

    /// Adds (replacing) the provider table in one YAML text.
    pub fn add_text(&mut self, origin: &str, text: &str) -> Result<(), RuleProblem> {
        let fail = |message: String| RuleProblem {
            file: origin.to_owned(),
            rule_id: None,
            message,
        };
        let doc = parse_document(text).map_err(|e| fail(e.to_string()))?;
        let provider = doc
            .get("provider")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("intel map needs a string `provider`".into()))?
            .to_owned();
        let Some(Value::Array(signals)) = doc.get("signals") else {
            return Err(fail("intel map needs a `signals` list".into()));
        };
        let mut map = ProviderMap::default();
        for (i, signal) in signals.iter().enumerate() {
            let id = signal
                .get("id")
                .filter(|v| truthy(v))
                .map(py_str)
                .ok_or_else(|| fail(format!("signals[{i}] has no id")))?;
            let Some(Value::Array(techniques)) = signal.get("techniques") else {
                return Err(fail(format!("signal {id} has no techniques list")));
            };
            let mut out = Vec::with_capacity(techniques.len());
            for t in techniques {
                let tid = t
                    .get("technique_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail(format!("signal {id}: technique without technique_id")))?;
                let threshold = match t.get("high_score_threshold") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(as_number(v).ok_or_else(|| {
                        fail(format!(
                            "signal {id}: high_score_threshold {v} is not a number"
                        ))
                    })?),
                };
                out.push((tid.to_owned(), threshold));
            }
            map.signals.insert(id, out);
        }
        self.providers.insert(provider, map);
        Ok(())
    }

    /// Adds every `*.yaml`/`*.yml` table of a directory over the current ones.
    pub fn add_dir(&mut self, dir: &Path, problems: &mut Vec<RuleProblem>) -> std::io::Result<()> {
        for path in rule_files(dir)? {
            let origin = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    if let Err(p) = self.add_text(&origin, &text) {
                        problems.push(p);
                    }
                }
                Err(e) => problems.push(RuleProblem {
                    file: origin,
                    rule_id: None,
                    message: format!("cannot read: {e}"),
                }),
            }
        }
        Ok(())
    }

    pub fn techniques(&self, provider: &str, signal: &str) -> &[(String, Option<f64>)] {
        self.providers
            .get(provider)
            .and_then(|m| m.signals.get(signal))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_load_and_report_problems() {
        let mut maps = IntelMaps::default();
        assert!(
            maps.add_text(
                "m.yaml",
                "provider: x\nsignals: [{id: a, techniques: [{technique_id: T1}]}]\n"
            )
            .is_ok()
        );
        assert_eq!(maps.techniques("x", "a"), [("T1".to_owned(), None)]);
        let err = maps.add_text("m.yaml", "provider: x\n").unwrap_err();
        assert_eq!(err.file, "m.yaml");
        let builtin = IntelMaps::builtin();
        for provider in ["abuseipdb", "greynoise", "feodo", "threatfox"] {
            assert!(builtin.providers.contains_key(provider), "{provider}");
        }
    }
}
