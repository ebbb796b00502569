//! Operational rule state: enabled / disabled / clipped, with an optional expiry (docs/tagging.md §6).
//!
//! Nothing sets a state in a running DECNET worker, so every rule is enabled there; the gate
//! and the ceiling are still part of the contract, cheap, and what an operator's future
//! `ttp.rule.state.*` handling will drive.

use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateKind {
    #[default]
    Enabled,
    Disabled,
    Clipped,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleState {
    pub state: StateKind,
    /// Ceiling used only while clipped.
    pub confidence_max: Option<f64>,
    /// Seconds since the Unix epoch (naive timestamps are read as UTC upstream).
    pub expires_at: Option<f64>,
}

impl RuleState {
    /// The gate (§6.2): disabled never fires, and any past expiry also makes a rule inactive —
    /// DECNET's behaviour until a reload reverts the state.
    pub fn is_active(&self, now: f64) -> bool {
        self.state != StateKind::Disabled && self.expires_at.is_none_or(|t| t >= now)
    }

    /// The ceiling (§6.3): clips only lower confidence, and only when clipped below 1.0.
    pub fn apply_ceiling(&self, base: f64) -> f64 {
        match (self.state, self.confidence_max) {
            (StateKind::Clipped, Some(max)) if max < 1.0 => base.min(max),
            _ => base,
        }
    }
}

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_and_ceiling() {
        let enabled = RuleState::default();
        assert!(enabled.is_active(1.0));
        assert_eq!(enabled.apply_ceiling(0.9), 0.9);
        let clipped = RuleState {
            state: StateKind::Clipped,
            confidence_max: Some(0.5),
            expires_at: None,
        };
        assert_eq!(clipped.apply_ceiling(0.9), 0.5);
        assert_eq!(clipped.apply_ceiling(0.4), 0.4);
        let loose = RuleState {
            confidence_max: Some(1.5),
            ..clipped.clone()
        };
        assert_eq!(loose.apply_ceiling(0.9), 0.9);
        let disabled = RuleState {
            state: StateKind::Disabled,
            ..Default::default()
        };
        assert!(!disabled.is_active(1.0));
        let expired = RuleState {
            expires_at: Some(10.0),
            ..Default::default()
        };
        assert!(expired.is_active(10.0));
        assert!(!expired.is_active(10.5));
    }
}
