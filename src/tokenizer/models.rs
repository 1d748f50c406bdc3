//! Which tokenizer a model name uses. OpenAI models map to their exact encoding, following
//! tiktoken's own model table; other providers' models get a family whose approximation is
//! measured in `approx.rs`.

use super::approx::Family;
use super::Encoding;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    Exact(Encoding),
    Approximate(Family),
}

/// OpenAI model families and their encodings. A name matches an entry when it equals it or
/// continues with `-` (dated snapshots such as `gpt-4o-2024-08-06`, variants such as
/// `gpt-4o-mini`), or with `.` for families that number their releases that way (`gpt-5.1`).
/// More specific entries come first: `gpt-4o` before `gpt-4`.
const OPENAI: &[(&str, Encoding)] = &[
    ("gpt-4o", Encoding::O200k),
    ("chatgpt-4o", Encoding::O200k),
    ("gpt-4.1", Encoding::O200k),
    ("gpt-4.5", Encoding::O200k),
    ("gpt-5", Encoding::O200k),
    ("gpt-oss", Encoding::O200k), // o200k_harmony: o200k_base plus special tokens only
    ("o1", Encoding::O200k),
    ("o3", Encoding::O200k),
    ("o4", Encoding::O200k),
    ("codex-mini", Encoding::O200k),
    ("omni-moderation", Encoding::O200k),
    ("gpt-4", Encoding::Cl100k),
    ("gpt-3.5-turbo", Encoding::Cl100k),
    ("gpt-35-turbo", Encoding::Cl100k), // Azure OpenAI's spelling
    ("text-embedding-3-small", Encoding::Cl100k),
    ("text-embedding-3-large", Encoding::Cl100k),
    ("text-embedding-ada-002", Encoding::Cl100k),
    ("davinci-002", Encoding::Cl100k),
    ("babbage-002", Encoding::Cl100k),
];

/// Families that release point versions (`gpt-5.1`); for the others `.` would be ambiguous
/// (`gpt-4.1` is not `gpt-4`).
const DOTTED: &[&str] = &["gpt-5", "o1", "o3", "o4"];

const FAMILIES: &[(&str, Family)] = &[
    ("claude", Family::Anthropic),
    ("anthropic.claude", Family::Anthropic), // Bedrock ids
    ("gemini", Family::Gemini),
    ("gemma", Family::Gemini),
    ("llama", Family::Llama),
    ("meta.llama", Family::Llama), // Bedrock ids
    ("mistral", Family::Mistral),
    ("mixtral", Family::Mistral),
    ("codestral", Family::Mistral),
    ("ministral", Family::Mistral),
    ("magistral", Family::Mistral),
    ("devstral", Family::Mistral),
    ("pixtral", Family::Mistral),
    ("open-mistral", Family::Mistral),
    ("open-mixtral", Family::Mistral),
];

pub fn tokenizer_for(model: &str) -> Tokenizer {
    let name = normalize(model);
    for &(family, encoding) in OPENAI {
        if let Some(rest) = name.strip_prefix(family) {
            if rest.is_empty() || rest.starts_with('-') || (rest.starts_with('.') && DOTTED.contains(&family)) {
                return Tokenizer::Exact(encoding);
            }
        }
    }
    FAMILIES
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or(Tokenizer::Approximate(Family::Unknown), |&(_, family)| Tokenizer::Approximate(family))
}

/// Lowercase, without a provider or route prefix (`openai/gpt-4o`, `openrouter/openai/gpt-4o`),
/// a fine-tune wrapper (`ft:gpt-4o-mini-2024-07-18:org::id`), a cross-region prefix on Bedrock
/// (`us.anthropic.claude-…`) or a Vertex version (`claude-3-5-sonnet@20240620`).
fn normalize(model: &str) -> String {
    let lower = model.trim().to_ascii_lowercase();
    let mut name = lower.rsplit('/').next().unwrap_or(&lower);
    if let Some(fine_tuned) = name.strip_prefix("ft:") {
        name = fine_tuned.split(':').next().unwrap_or(fine_tuned);
    }
    let name = name.split('@').next().unwrap_or(name);
    for region in ["us.", "eu.", "apac.", "global.", "jp.", "au."] {
        if let Some(rest) = name.strip_prefix(region) {
            return rest.to_string();
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(model: &str) -> Option<Encoding> {
        match tokenizer_for(model) {
            Tokenizer::Exact(encoding) => Some(encoding),
            Tokenizer::Approximate(_) => None,
        }
    }

    #[test]
    fn current_openai_models_use_o200k() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "gpt-4o-mini-2024-07-18",
            "chatgpt-4o-latest",
            "o1",
            "o1-mini",
            "o3-mini-2025-01-31",
            "o4-mini",
            "gpt-4.1",
            "gpt-4.1-nano-2025-04-14",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5.1",
            "gpt-5.2-codex",
            "gpt-oss-120b",
        ] {
            assert_eq!(exact(model), Some(Encoding::O200k), "{model}");
        }
    }

    #[test]
    fn older_openai_models_and_embeddings_use_cl100k() {
        for model in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-turbo",
            "gpt-4-turbo-2024-04-09",
            "gpt-4-32k",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
        ] {
            assert_eq!(exact(model), Some(Encoding::Cl100k), "{model}");
        }
    }

    #[test]
    fn provider_prefixes_case_and_fine_tunes_are_seen_through() {
        assert_eq!(exact("openai/gpt-4o"), Some(Encoding::O200k));
        assert_eq!(exact("openrouter/openai/gpt-4o-mini"), Some(Encoding::O200k));
        assert_eq!(exact("azure/gpt-35-turbo"), Some(Encoding::Cl100k));
        assert_eq!(exact("GPT-4O"), Some(Encoding::O200k));
        assert_eq!(exact("ft:gpt-4o-mini-2024-07-18:acme::abc123"), Some(Encoding::O200k));
        assert_eq!(exact("ft:gpt-3.5-turbo-0125:acme::abc123"), Some(Encoding::Cl100k));
    }

    #[test]
    fn lookalike_names_are_not_mistaken_for_openai_models() {
        assert_eq!(exact("gpt-4.7-preview"), None, "a new gpt-4.x is not gpt-4");
        assert_eq!(exact("o10"), None);
        assert_eq!(exact("gpt-4omega"), None);
    }

    #[test]
    fn other_providers_get_their_family() {
        let family = |m| match tokenizer_for(m) {
            Tokenizer::Approximate(family) => family,
            Tokenizer::Exact(_) => panic!("{m} is not exact"),
        };
        assert_eq!(family("claude-sonnet-4-5"), Family::Anthropic);
        assert_eq!(family("anthropic/claude-3-5-haiku-20241022"), Family::Anthropic);
        assert_eq!(family("us.anthropic.claude-sonnet-4-20250514-v1:0"), Family::Anthropic);
        assert_eq!(family("claude-3-5-sonnet@20240620"), Family::Anthropic);
        assert_eq!(family("gemini-2.5-pro"), Family::Gemini);
        assert_eq!(family("google/gemini-2.0-flash"), Family::Gemini);
        assert_eq!(family("meta-llama/Llama-3.3-70B-Instruct"), Family::Llama);
        assert_eq!(family("llama-3.1-8b-instant"), Family::Llama);
        assert_eq!(family("mistral-large-latest"), Family::Mistral);
        assert_eq!(family("open-mixtral-8x22b"), Family::Mistral);
        assert_eq!(family("deepseek-chat"), Family::Unknown);
        assert_eq!(family(""), Family::Unknown);
    }
}
