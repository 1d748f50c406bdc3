//! The sampling parameters both request directions map alike.

use serde_json::json;

use super::json::{note, opt_bool, opt_number, Object};
use super::TranslateError;

/// The target API's highest `temperature`, when it is below the source API's.
pub struct MaxTemperature {
    pub value: f64,
    /// The target API, named in the note that says a temperature was lowered.
    pub api: &'static str,
}

/// `temperature`, `top_p` and `stream`, which mean the same in both APIs: checked and copied,
/// in that order. A temperature above `max_temperature` is lowered to it, with a note. Returns
/// `stream`, for what the target needs besides.
pub fn copy_sampling(
    request: &Object,
    out: &mut Object,
    max_temperature: Option<MaxTemperature>,
    notes: &mut Vec<String>,
) -> Result<Option<bool>, TranslateError> {
    if let Some(temperature) = opt_number(request, "temperature", "")? {
        match max_temperature {
            Some(max) if temperature.as_f64().is_some_and(|t| t > max.value) => {
                note(notes, format!("temperature: lowered to {} ({}'s maximum)", max.value, max.api));
                out.insert("temperature".into(), json!(max.value));
            }
            _ => {
                out.insert("temperature".into(), temperature.clone());
            }
        }
    }
    if let Some(top_p) = opt_number(request, "top_p", "")? {
        out.insert("top_p".into(), top_p.clone());
    }
    let stream = opt_bool(request, "stream", "")?;
    if let Some(stream) = stream {
        out.insert("stream".into(), json!(stream));
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn copied(request: Value, max_temperature: Option<MaxTemperature>) -> (Value, Option<bool>, Vec<String>) {
        let (mut out, mut notes) = (Object::new(), Vec::new());
        let request = request.as_object().cloned().unwrap_or_default();
        let stream = copy_sampling(&request, &mut out, max_temperature, &mut notes).unwrap();
        (Value::Object(out), stream, notes)
    }

    #[test]
    fn a_temperature_is_lowered_only_to_a_target_maximum_below_it() {
        let request = json!({"temperature": 1.5, "top_p": 0.9, "stream": true, "seed": 7});
        let (out, stream, notes) = copied(request.clone(), None);
        assert_eq!(out, json!({"temperature": 1.5, "top_p": 0.9, "stream": true}));
        assert_eq!((stream, notes.len()), (Some(true), 0));
        let (out, _, notes) = copied(request, Some(MaxTemperature { value: 1.0, api: "Anthropic" }));
        assert_eq!(out["temperature"], json!(1.0));
        assert_eq!(notes, ["temperature: lowered to 1 (Anthropic's maximum)"]);
    }

    #[test]
    fn sampling_parameters_of_the_wrong_type_name_their_field() {
        let (mut out, mut notes) = (Object::new(), Vec::new());
        for (request, param) in [(json!({"temperature": "hot"}), "temperature"), (json!({"stream": 1}), "stream")] {
            let request = request.as_object().cloned().unwrap_or_default();
            let error = copy_sampling(&request, &mut out, None, &mut notes).unwrap_err();
            assert_eq!(error.param.as_deref(), Some(param));
        }
    }
}
