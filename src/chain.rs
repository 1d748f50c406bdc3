//! A fallback plan: the chain of providers and models Envoy's retries walk, handed from the
//! downstream filter (which decides it once) to the upstream filter (which applies one step per
//! attempt) through filter state.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStep {
    pub provider: String,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPlan {
    /// The client's API (`openai.chat`, …).
    pub api: String,
    /// The client's query string, kept for providers without one of their own.
    pub query: Option<String>,
    /// The client's headers of either API (`openai-organization`, `anthropic-beta`, …) as sent:
    /// each attempt starts from the previous attempt's headers and puts back those its
    /// provider's dialect takes.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub steps: Vec<ChainStep>,
}

impl ChainPlan {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<ChainPlan> {
        serde_json::from_str(text).ok()
    }

    /// The step for the provider an attempt is going to.
    pub fn step_for(&self, provider: &str) -> Option<&ChainStep> {
        self.steps.iter().find(|s| s.provider == provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_trip_through_filter_state() {
        let plan = ChainPlan {
            api: "openai.chat".into(),
            query: Some("a=1".into()),
            headers: vec![("openai-organization".into(), "org-1".into())],
            steps: vec![
                ChainStep { provider: "p1".into(), model: "m1".into() },
                ChainStep { provider: "p2".into(), model: "m2".into() },
            ],
        };
        let back = ChainPlan::from_json(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
        assert_eq!(back.step_for("p2").map(|s| s.model.as_str()), Some("m2"));
        assert_eq!(ChainPlan::from_json("garbage"), None);
    }
}
