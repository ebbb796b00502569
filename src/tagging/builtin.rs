//! The rule pack embedded in the binary: our own rules (R1000 and up), used when no rules
//! directory is configured. They use DECNET's rule schema and lifter kinds, so an operator can
//! copy one into a rules directory and edit it.

use super::rules::BUILTIN_ORIGIN;
use super::ruleset::RuleSet;

/// `(file name, text)` in evaluation order (file-name order, as for a directory).
pub const RULES: &[(&str, &str)] = &[
    ("R1000.yaml", include_str!("builtin/rules/R1000.yaml")),
    ("R1001.yaml", include_str!("builtin/rules/R1001.yaml")),
    ("R1002.yaml", include_str!("builtin/rules/R1002.yaml")),
    ("R1003.yaml", include_str!("builtin/rules/R1003.yaml")),
    ("R1004.yaml", include_str!("builtin/rules/R1004.yaml")),
    ("R1005.yaml", include_str!("builtin/rules/R1005.yaml")),
    ("R1006.yaml", include_str!("builtin/rules/R1006.yaml")),
    ("R1007.yaml", include_str!("builtin/rules/R1007.yaml")),
    ("R1008.yaml", include_str!("builtin/rules/R1008.yaml")),
    ("R1009.yaml", include_str!("builtin/rules/R1009.yaml")),
    ("R1010.yaml", include_str!("builtin/rules/R1010.yaml")),
    ("R1011.yaml", include_str!("builtin/rules/R1011.yaml")),
    ("R1012.yaml", include_str!("builtin/rules/R1012.yaml")),
    ("R1013.yaml", include_str!("builtin/rules/R1013.yaml")),
    ("R1014.yaml", include_str!("builtin/rules/R1014.yaml")),
    ("R1015.yaml", include_str!("builtin/rules/R1015.yaml")),
    ("R1016.yaml", include_str!("builtin/rules/R1016.yaml")),
    ("R1017.yaml", include_str!("builtin/rules/R1017.yaml")),
    ("R1018.yaml", include_str!("builtin/rules/R1018.yaml")),
    ("R1019.yaml", include_str!("builtin/rules/R1019.yaml")),
    ("R1020.yaml", include_str!("builtin/rules/R1020.yaml")),
    ("R1021.yaml", include_str!("builtin/rules/R1021.yaml")),
    ("R1030.yaml", include_str!("builtin/rules/R1030.yaml")),
    ("R1031.yaml", include_str!("builtin/rules/R1031.yaml")),
    ("R1032.yaml", include_str!("builtin/rules/R1032.yaml")),
    ("R1033.yaml", include_str!("builtin/rules/R1033.yaml")),
    ("R1040.yaml", include_str!("builtin/rules/R1040.yaml")),
    ("R1041.yaml", include_str!("builtin/rules/R1041.yaml")),
    ("R1042.yaml", include_str!("builtin/rules/R1042.yaml")),
    ("R1043.yaml", include_str!("builtin/rules/R1043.yaml")),
    ("R1044.yaml", include_str!("builtin/rules/R1044.yaml")),
    ("R1045.yaml", include_str!("builtin/rules/R1045.yaml")),
    ("R1050.yaml", include_str!("builtin/rules/R1050.yaml")),
    ("R1051.yaml", include_str!("builtin/rules/R1051.yaml")),
    ("R1052.yaml", include_str!("builtin/rules/R1052.yaml")),
    ("R1053.yaml", include_str!("builtin/rules/R1053.yaml")),
    ("R1054.yaml", include_str!("builtin/rules/R1054.yaml")),
    ("R1055.yaml", include_str!("builtin/rules/R1055.yaml")),
    ("R1056.yaml", include_str!("builtin/rules/R1056.yaml")),
    ("R1057.yaml", include_str!("builtin/rules/R1057.yaml")),
    ("R1060.yaml", include_str!("builtin/rules/R1060.yaml")),
    ("R1061.yaml", include_str!("builtin/rules/R1061.yaml")),
    ("R1062.yaml", include_str!("builtin/rules/R1062.yaml")),
    ("R1063.yaml", include_str!("builtin/rules/R1063.yaml")),
    ("R1064.yaml", include_str!("builtin/rules/R1064.yaml")),
    ("R1065.yaml", include_str!("builtin/rules/R1065.yaml")),
    ("R1066.yaml", include_str!("builtin/rules/R1066.yaml")),
    ("R1067.yaml", include_str!("builtin/rules/R1067.yaml")),
    ("R1068.yaml", include_str!("builtin/rules/R1068.yaml")),
    ("R1069.yaml", include_str!("builtin/rules/R1069.yaml")),
    ("R1070.yaml", include_str!("builtin/rules/R1070.yaml")),
    ("R1071.yaml", include_str!("builtin/rules/R1071.yaml")),
    ("R1072.yaml", include_str!("builtin/rules/R1072.yaml")),
    ("R1073.yaml", include_str!("builtin/rules/R1073.yaml")),
    ("R1080.yaml", include_str!("builtin/rules/R1080.yaml")),
    ("R1090.yaml", include_str!("builtin/rules/R1090.yaml")),
    ("R1091.yaml", include_str!("builtin/rules/R1091.yaml")),
    ("R1092.yaml", include_str!("builtin/rules/R1092.yaml")),
    ("R1093.yaml", include_str!("builtin/rules/R1093.yaml")),
    ("R1094.yaml", include_str!("builtin/rules/R1094.yaml")),
];

pub fn add_rules(set: &mut RuleSet) {
    for (name, text) in RULES {
        set.add_text(&format!("{BUILTIN_ORIGIN}{name}"), text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_rule_loads_with_its_own_id() {
        let mut set = RuleSet::default();
        add_rules(&mut set);
        let problems: Vec<String> = set.problems.iter().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(set.rules.len(), RULES.len());
        for (rule, (file, _)) in set.rules.iter().zip(RULES) {
            assert_eq!(format!("{}.yaml", rule.rule_id), *file);
            assert!(rule.rule_id.as_str() >= "R1000");
        }
    }
}
