//! LLM API dialects: which API a request speaks, and how to read its requests and responses.

pub mod openai;

/// An LLM API the filter understands, detected from the method and path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// OpenAI Chat Completions (`POST …/chat/completions`), also spoken by Azure OpenAI,
    /// vLLM, Ollama, Groq, Mistral, DeepSeek and most self-hosted servers.
    OpenAiChat,
}

impl Api {
    /// `None` for anything the filter does not inspect (those requests pass through untouched).
    /// The query string is ignored, so Azure's `?api-version=` paths are recognised.
    pub fn detect(method: &str, path: &str) -> Option<Api> {
        if !method.eq_ignore_ascii_case("POST") {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let path = path.trim_end_matches('/');
        path.ends_with("/chat/completions").then_some(Api::OpenAiChat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_completions_paths_are_recognised_with_any_prefix_and_query() {
        for path in [
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
            "/api/v1/chat/completions",
        ] {
            assert_eq!(Api::detect("POST", path), Some(Api::OpenAiChat), "{path}");
        }
    }

    #[test]
    fn other_methods_and_paths_pass_through() {
        assert_eq!(Api::detect("GET", "/v1/chat/completions"), None);
        assert_eq!(Api::detect("POST", "/v1/completions"), None);
        assert_eq!(Api::detect("POST", "/v1/chat/completions/abc"), None);
        assert_eq!(Api::detect("POST", "/v1/models"), None);
    }
}
