//! The request fields every dialect shares and the filter needs: `model` and `stream`.

use serde::Deserialize;

use super::strict;

/// What the filter needs from a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// Absent on Azure OpenAI, where the deployment in the path names the model.
    pub model: Option<String>,
    pub stream: bool,
    /// The client asked for OpenAI's final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<RawStreamOptions>,
}

#[derive(Deserialize)]
struct RawStreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Why a request body could not be read. The message is safe to show the client: it never
/// quotes the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    /// The request field at fault, when there is one (OpenAI's `param`).
    pub param: Option<&'static str>,
}

pub fn parse_request(body: &[u8]) -> Result<RequestFacts, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError {
            message: "The request body is empty: send a JSON object with `model` and the input.".to_string(),
            param: None,
        });
    }
    // One strict pass: valid JSON, no duplicate key anywhere (see `strict`), and only the
    // members read here are built.
    let top = strict::walk(body, &["model", "stream", "stream_options"]).map_err(|e| BodyError {
        message: if strict::is_duplicate_key(&e) {
            format!(
                "The request body has a duplicate key in an object (line {} column {}): each key may appear only once.",
                e.line(),
                e.column()
            )
        } else {
            format!("The request body is not valid JSON ({}).", describe_json_error(&e))
        },
        param: None,
    })?;
    if !top.is_object {
        return Err(BodyError { message: "The request body must be a JSON object.".to_string(), param: None });
    }
    let value = serde_json::Value::Object(top.kept);
    let raw: RawRequest = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let param = ["model", "stream", "stream_options"]
            .into_iter()
            .find(|p| path == *p || path.starts_with(&format!("{p}.")));
        let field = if param.is_some() { path.as_str() } else { "body" };
        BodyError { message: format!("Invalid type for `{field}`: {}.", e.into_inner()), param }
    })?;
    Ok(RequestFacts {
        model: raw.model,
        stream: raw.stream.unwrap_or(false),
        include_usage: raw.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
    })
}

/// serde_json's message without the offending text; position only.
fn describe_json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_stream_and_include_usage() {
        let req = parse_request(br#"{"model":"gpt-4o-mini","messages":[],"stream":true}"#).unwrap();
        assert_eq!(req, RequestFacts { model: Some("gpt-4o-mini".into()), stream: true, include_usage: false });
        let req = parse_request(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(req.include_usage);
        let req = parse_request(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(req, RequestFacts::default());
    }

    #[test]
    fn empty_and_invalid_bodies_are_errors_that_do_not_quote_the_body() {
        assert!(parse_request(b"").unwrap_err().message.contains("empty"));
        assert!(parse_request(b"  \n").unwrap_err().message.contains("empty"));
        let err = parse_request(b"{\"model\": \"secret-prompt").unwrap_err();
        assert!(err.message.contains("not valid JSON"));
        assert!(!err.message.contains("secret-prompt"));
        assert!(parse_request(b"[1]").unwrap_err().message.contains("JSON object"));
        assert!(parse_request(b"{} trailing").unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn wrong_field_types_name_the_field() {
        assert_eq!(parse_request(br#"{"model": 42}"#).unwrap_err().param, Some("model"));
        assert_eq!(parse_request(br#"{"model": "m", "stream": "yes"}"#).unwrap_err().param, Some("stream"));
        let err = parse_request(br#"{"stream_options": {"include_usage": 1}}"#).unwrap_err();
        assert_eq!(err.param, Some("stream_options"));
        assert!(err.message.contains("stream_options.include_usage"));
    }

    #[test]
    fn invalid_utf8_inside_strings_is_rejected() {
        assert!(parse_request(b"{\"model\": \"\xff\"}").unwrap_err().message.contains("not valid JSON"));
    }

    #[test]
    fn duplicate_keys_are_refused_whichever_copy_a_parser_would_keep() {
        for body in [&br#"{"model": "gpt-4.1", "model": "gpt-4o-mini"}"#[..], br#"{"model": "a", "mo\u0064el": "b"}"#] {
            let err = parse_request(body).unwrap_err();
            assert!(err.message.contains("duplicate key"), "{}", err.message);
            assert!(!err.message.contains("gpt-4"), "the message never quotes the body");
            assert_eq!(err.param, None);
        }
        let nested = br#"{"model": "m", "messages": [{"role": "user", "content": "a", "content": "b"}]}"#;
        assert!(parse_request(nested).unwrap_err().message.contains("line 1 column"));
    }

    #[test]
    fn a_hundred_thousand_messages_are_read_without_building_them() {
        let messages = vec![r#"{"role":"user","content":"x"}"#; 100_000].join(",");
        let body = format!(r#"{{"model":"m","messages":[{messages}],"stream":true}}"#);
        let facts = parse_request(body.as_bytes()).unwrap();
        assert_eq!((facts.model.as_deref(), facts.stream), (Some("m"), true));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{{\"x\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_request(body.as_bytes()).is_err());
    }
}
