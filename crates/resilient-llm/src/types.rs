//! The OpenAI-style chat-completions request, response and stream chunk.

use serde::{Deserialize, Serialize};

/// Who wrote a message.
///
/// ```
/// use resilient_llm::Role;
/// assert_eq!(serde_json::to_string(&Role::Assistant).unwrap(), "\"assistant\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user's words.
    User,
    /// The model's words.
    Assistant,
}

/// One message of a conversation.
///
/// ```
/// use resilient_llm::{Message, Role};
/// let m = Message::new(Role::User, "hello");
/// assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"role":"user","content":"hello"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// What it says.
    #[serde(default)]
    pub content: String,
}

impl Message {
    /// A message from `role`.
    ///
    /// ```
    /// use resilient_llm::{Message, Role};
    /// assert_eq!(Message::new(Role::System, "be brief").content, "be brief");
    /// ```
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A chat-completions request (`POST {base}/chat/completions`).
///
/// ```
/// use resilient_llm::ChatRequest;
/// let req = ChatRequest::new("gpt-4o-mini").system("Answer in JSON.").user("Name a colour.").max_tokens(50);
/// assert_eq!(req.messages.len(), 2);
/// let json = serde_json::to_value(&req).unwrap();
/// assert_eq!(json["max_tokens"], 50);
/// assert!(json.get("temperature").is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The model (a provider's own [`Provider::model`](crate::Provider::model) replaces it).
    pub model: String,
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// The most tokens the answer may have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// `response_format`, e.g. `{"type": "json_object"}` (see [`ChatRequest::json_mode`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// Any other field of the API, sent as is.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl ChatRequest {
    /// A request to `model` with no messages yet.
    ///
    /// ```
    /// use resilient_llm::ChatRequest;
    /// assert_eq!(ChatRequest::new("m").model, "m");
    /// ```
    pub fn new(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            messages: Vec::new(),
            max_tokens: None,
            temperature: None,
            response_format: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Adds a message.
    ///
    /// ```
    /// use resilient_llm::{ChatRequest, Message, Role};
    /// let req = ChatRequest::new("m").message(Message::new(Role::User, "hi"));
    /// assert_eq!(req.messages[0].role, Role::User);
    /// ```
    pub fn message(mut self, message: Message) -> Self {
        self.messages.push(message);
        self
    }

    /// Adds a system message.
    ///
    /// ```
    /// use resilient_llm::{ChatRequest, Role};
    /// assert_eq!(ChatRequest::new("m").system("be brief").messages[0].role, Role::System);
    /// ```
    pub fn system(self, content: impl Into<String>) -> Self {
        self.message(Message::new(Role::System, content))
    }

    /// Adds a user message.
    ///
    /// ```
    /// use resilient_llm::{ChatRequest, Role};
    /// assert_eq!(ChatRequest::new("m").user("hi").messages[0].role, Role::User);
    /// ```
    pub fn user(self, content: impl Into<String>) -> Self {
        self.message(Message::new(Role::User, content))
    }

    /// Adds an assistant message (an earlier answer).
    ///
    /// ```
    /// use resilient_llm::{ChatRequest, Role};
    /// assert_eq!(ChatRequest::new("m").assistant("hello").messages[0].role, Role::Assistant);
    /// ```
    pub fn assistant(self, content: impl Into<String>) -> Self {
        self.message(Message::new(Role::Assistant, content))
    }

    /// Sets `max_tokens`, which also bounds the tokens a request is charged in the
    /// token limits (see [`estimate_tokens`](crate::estimate_tokens)).
    ///
    /// ```
    /// use resilient_llm::ChatRequest;
    /// assert_eq!(ChatRequest::new("m").max_tokens(10).max_tokens, Some(10));
    /// ```
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets the sampling temperature.
    ///
    /// ```
    /// use resilient_llm::ChatRequest;
    /// assert_eq!(ChatRequest::new("m").temperature(0.0).temperature, Some(0.0));
    /// ```
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Asks for a JSON object (`response_format: {"type": "json_object"}`).
    ///
    /// ```
    /// use resilient_llm::ChatRequest;
    /// let req = ChatRequest::new("m").json_mode();
    /// assert_eq!(req.response_format.unwrap()["type"], "json_object");
    /// ```
    pub fn json_mode(mut self) -> Self {
        self.response_format = Some(serde_json::json!({ "type": "json_object" }));
        self
    }
}

/// Token counts a provider reports.
///
/// ```
/// use resilient_llm::Usage;
/// let u: Usage = serde_json::from_str(r#"{"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}"#).unwrap();
/// assert_eq!(u.total_tokens, 12);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the answer.
    pub completion_tokens: u64,
    /// Both.
    pub total_tokens: u64,
}

/// One answer of a completion.
///
/// ```
/// use resilient_llm::Choice;
/// let c: Choice = serde_json::from_str(r#"{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}"#).unwrap();
/// assert_eq!(c.message.content, "hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// Its position.
    #[serde(default)]
    pub index: u32,
    /// The message.
    pub message: Message,
    /// Why the model stopped (`"stop"`, `"length"`, ..).
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// A chat completion, and the provider that gave it.
///
/// ```
/// use resilient_llm::ChatResponse;
/// let r: ChatResponse = serde_json::from_str(
///     r#"{"id": "c1", "model": "m", "choices": [{"message": {"role": "assistant", "content": "hi"}}]}"#,
/// ).unwrap();
/// assert_eq!(r.content(), "hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The completion's id.
    #[serde(default)]
    pub id: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The answers (one unless `n` was set).
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token counts, if reported.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The name of the [`Provider`](crate::Provider) that answered (set by the client).
    #[serde(skip)]
    pub provider: String,
}

impl ChatResponse {
    /// The first answer's text (empty if there is none).
    ///
    /// ```
    /// use resilient_llm::ChatResponse;
    /// let r: ChatResponse = serde_json::from_str(r#"{"choices": []}"#).unwrap();
    /// assert_eq!(r.content(), "");
    /// ```
    pub fn content(&self) -> &str {
        self.choices
            .first()
            .map(|c| c.message.content.as_str())
            .unwrap_or("")
    }
}

/// One chunk of a streamed answer: the text it adds, and why the model stopped on the last.
///
/// ```
/// use resilient_llm::ChatChunk;
/// let c = ChatChunk::from_event(r#"{"choices": [{"delta": {"content": "Hel"}}]}"#).unwrap();
/// assert_eq!(c.content, "Hel");
/// assert_eq!(c.finish_reason, None);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChatChunk {
    /// The text this chunk adds (the first choice's `delta.content`).
    pub content: String,
    /// Set on the last chunk of an answer.
    pub finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawChunk {
    #[serde(default)]
    choices: Vec<RawChunkChoice>,
}

#[derive(Deserialize)]
struct RawChunkChoice {
    #[serde(default)]
    delta: RawDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawDelta {
    #[serde(default)]
    content: Option<String>,
}

impl ChatChunk {
    /// Reads the `data:` of one server-sent event of a chat-completions stream.
    ///
    /// ```
    /// use resilient_llm::ChatChunk;
    /// let c = ChatChunk::from_event(r#"{"choices": [{"delta": {}, "finish_reason": "stop"}]}"#).unwrap();
    /// assert_eq!(c.finish_reason.as_deref(), Some("stop"));
    /// assert!(ChatChunk::from_event("not json").is_err());
    /// ```
    pub fn from_event(data: &str) -> Result<Self, serde_json::Error> {
        let raw: RawChunk = serde_json::from_str(data)?;
        let first = raw.choices.into_iter().next();
        Ok(match first {
            Some(c) => ChatChunk {
                content: c.delta.content.unwrap_or_default(),
                finish_reason: c.finish_reason,
            },
            None => ChatChunk::default(),
        })
    }

    /// Whether the chunk carries a token or ends the answer (the first such chunk is the
    /// "first token" of the time-to-first-token limit; role-only chunks are not).
    ///
    /// ```
    /// use resilient_llm::ChatChunk;
    /// assert!(!ChatChunk::from_event(r#"{"choices": [{"delta": {"role": "assistant"}}]}"#).unwrap().is_token());
    /// ```
    pub fn is_token(&self) -> bool {
        !self.content.is_empty() || self.finish_reason.is_some()
    }
}

/// A rough count of the tokens a request uses, for the token limits: a quarter of the
/// messages' bytes plus 4 per message (OpenAI's rule of thumb), plus the answer's
/// `max_tokens` (providers count it against tokens-per-minute limits when the request
/// arrives). Charged per attempt by the [`Limits`](crate::Limits) of a provider.
///
/// ```
/// use resilient_llm::{ChatRequest, estimate_tokens};
/// let req = ChatRequest::new("m").user("x".repeat(400)).max_tokens(100);
/// assert_eq!(estimate_tokens(&req), 100 + 4 + 100);
/// ```
pub fn estimate_tokens(request: &ChatRequest) -> u64 {
    let prompt: u64 = request
        .messages
        .iter()
        .map(|m| m.content.len().div_ceil(4) as u64 + 4)
        .sum();
    prompt + u64::from(request.max_tokens.unwrap_or(0))
}
