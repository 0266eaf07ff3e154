//! A streamed answer (server-sent events), with the idle-gap limit between chunks.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use resilient::json::Repairer;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::error::{ApiError, LlmError};
use crate::types::ChatChunk;

/// A streamed chat completion, opened by
/// [`Client::chat_stream`](crate::Client::chat_stream) once its first token arrived.
///
/// Read it with [`ChatStream::next`]; a gap longer than the client's
/// [`idle_timeout`](crate::ClientBuilder::idle_timeout) between two chunks ends it with
/// [`LlmError::IdleTimeout`]. Dropping it closes the connection.
///
/// ```no_run
/// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use resilient_llm::ChatRequest;
/// let mut stream = client.chat_stream(&ChatRequest::new("gpt-4o-mini").user("Count to 3")).await?;
/// while let Some(chunk) = stream.next().await {
///     print!("{}", chunk?.content);
/// }
/// # Ok(()) }
/// ```
pub struct ChatStream {
    response: reqwest::Response,
    buf: Vec<u8>,
    pending: VecDeque<ChatChunk>,
    done: bool,
    idle: Duration,
    chunks: usize,
    provider: String,
    /// The answer so far, repaired as JSON (for [`ChatStream::next_partial`]).
    json: Repairer,
}

impl fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("chunks", &self.chunks)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// What one read of the body gave.
enum Read {
    Chunk,
    End,
}

impl ChatStream {
    pub(crate) fn new(response: reqwest::Response, idle: Duration, provider: String) -> Self {
        Self {
            response,
            buf: Vec::new(),
            pending: VecDeque::new(),
            done: false,
            idle,
            chunks: 0,
            provider,
            json: Repairer::new(),
        }
    }

    /// The name of the provider that is answering.
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let stream = client.chat_stream(&resilient_llm::ChatRequest::new("m").user("hi")).await?;
    /// println!("answered by {}", stream.provider());
    /// # Ok(()) }
    /// ```
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Waits for the first token (a chunk with text or a finish reason) until `deadline`.
    pub(crate) async fn first_token(
        &mut self,
        deadline: Instant,
        limit: Duration,
    ) -> Result<(), LlmError> {
        loop {
            if self.pending.iter().any(ChatChunk::is_token) || self.done {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.read()).await {
                Err(_) => return Err(LlmError::FirstTokenTimeout { after: limit }),
                Ok(r) => {
                    r?;
                }
            }
        }
    }

    /// The next chunk: `None` at the end of the answer (`data: [DONE]` or the end of the
    /// body), an error when the connection fails, the provider sends an error event or
    /// the idle-gap limit runs out. Role-only chunks are skipped.
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut stream = client.chat_stream(&resilient_llm::ChatRequest::new("m").user("hi")).await?;
    /// let mut text = String::new();
    /// while let Some(chunk) = stream.next().await {
    ///     text.push_str(&chunk?.content);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<Result<ChatChunk, LlmError>> {
        loop {
            while let Some(chunk) = self.pending.pop_front() {
                if chunk.is_token() {
                    self.json.push(&chunk.content);
                    return Some(Ok(chunk));
                }
            }
            if self.done {
                return None;
            }
            match tokio::time::timeout(self.idle, self.read()).await {
                Err(_) => {
                    self.done = true;
                    return Some(Err(LlmError::IdleTimeout {
                        after: self.idle,
                        chunks: self.chunks,
                    }));
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Reads the answer as JSON being written: after each chunk, the value so far, repaired
    /// (open strings, arrays and objects closed, an incomplete member left out) and
    /// deserialized into `T`, a type whose fields are `Option`s or have defaults. Chunks
    /// after which the value does not fit `T` yet are skipped; `None` at the end of the
    /// answer. Shares its reading with [`ChatStream::next`].
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// #[derive(serde::Deserialize, Debug)]
    /// struct Draft { title: Option<String>, paragraphs: Option<Vec<String>> }
    /// let request = resilient_llm::ChatRequest::new("gpt-4o-mini").json_mode().user("Write a post as JSON");
    /// let mut stream = client.chat_stream(&request).await?;
    /// while let Some(draft) = stream.next_partial::<Draft>().await {
    ///     println!("so far: {:?}", draft?);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_partial<T: DeserializeOwned>(&mut self) -> Option<Result<T, LlmError>> {
        loop {
            match self.next().await? {
                Err(e) => return Some(Err(e)),
                Ok(_) => {
                    if let Ok(value) = self.json.parse_partial::<T>() {
                        return Some(Ok(value));
                    }
                }
            }
        }
    }

    /// Reads the rest of the answer and returns its text.
    ///
    /// ```no_run
    /// # async fn demo(client: resilient_llm::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let stream = client.chat_stream(&resilient_llm::ChatRequest::new("m").user("hi")).await?;
    /// println!("{}", stream.text().await?);
    /// # Ok(()) }
    /// ```
    pub async fn text(mut self) -> Result<String, LlmError> {
        let mut text = String::new();
        while let Some(chunk) = self.next().await {
            text.push_str(&chunk?.content);
        }
        Ok(text)
    }

    /// Reads one piece of the body and queues the events it completes.
    async fn read(&mut self) -> Result<Read, LlmError> {
        match self.response.chunk().await.map_err(LlmError::Transport)? {
            Some(bytes) => {
                self.buf.extend_from_slice(&bytes);
                self.drain_events(false)?;
                Ok(Read::Chunk)
            }
            None => {
                self.drain_events(true)?;
                self.done = true;
                Ok(Read::End)
            }
        }
    }

    /// Parses every complete event in the buffer (and, at the end, what is left).
    fn drain_events(&mut self, at_end: bool) -> Result<(), LlmError> {
        loop {
            let end = find_event_end(&self.buf);
            let (event_len, skip) = match end {
                Some(found) => found,
                None if at_end && !self.buf.is_empty() => (self.buf.len(), 0),
                None => return Ok(()),
            };
            let event: Vec<u8> = self.buf.drain(..event_len + skip).take(event_len).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let data = data.join("\n");
            if data.trim() == "[DONE]" {
                self.done = true;
                self.buf.clear();
                return Ok(());
            }
            let value: serde_json::Value = serde_json::from_str(&data)
                .map_err(|e| LlmError::Decode(format!("stream event: {e}")))?;
            if value.get("error").is_some() {
                return Err(LlmError::Api(ApiError::from_response(
                    500,
                    data.as_bytes(),
                    None,
                )));
            }
            let chunk = ChatChunk::from_event(&data)
                .map_err(|e| LlmError::Decode(format!("stream chunk: {e}")))?;
            self.chunks += 1;
            self.pending.push_back(chunk);
        }
    }
}

/// The length of the first event in `buf` and of the blank line ending it.
fn find_event_end(buf: &[u8]) -> Option<(usize, usize)> {
    (0..buf.len()).find_map(|i| {
        if buf[i..].starts_with(b"\r\n\r\n") {
            Some((i, 4))
        } else if buf[i..].starts_with(b"\n\n") {
            Some((i, 2))
        } else {
            None
        }
    })
}
