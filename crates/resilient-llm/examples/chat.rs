//! A chat client over two API keys, against the mock provider on loopback:
//!
//! 1. the first key's quota is used up, so the call moves to the second key;
//! 2. the second key is rate limited once and asks to wait 20 ms (`x-ratelimit-reset-requests`);
//! 3. a streamed answer arrives word by word;
//! 4. a structured answer comes back as broken JSON and is repaired into a struct.
//!
//! `cargo run -p resilient-llm --example chat --features mock`; `cargo test` runs it too.
//! Against a real provider, replace the mock's URL by `Provider::openai(key)`.

use std::time::Duration;

use resilient::Retry;
use resilient_llm::mock::{MockServer, Reply};
use resilient_llm::{ChatRequest, Client, Event, Limits, Provider};

#[derive(Debug, serde::Deserialize)]
struct Plan {
    steps: Vec<String>,
    minutes: u32,
}

/// Runs the four scenes and returns the transcript.
async fn run() -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let server = MockServer::start().await?;
    server.exhaust_key("key-1");
    server.push(Reply::rate_limited("20ms"));
    server.push(Reply::text("Rust is a systems language."));
    server.push(
        Reply::text("Resilience means answering anyway.").chunk_gap(Duration::from_millis(2)),
    );
    server.push(Reply::text(
        "Sure! ```json\n{steps: ['boil water', 'add pasta', 'wait',], minutes: 11}\n```",
    ));

    let client = Client::builder()
        .provider(Provider::new("key-1", server.url(), "key-1"))
        .provider(
            Provider::new("key-2", server.url(), "key-2").limits(
                Limits::new()
                    .requests_per_minute(60)
                    .tokens_per_minute(40_000),
            ),
        )
        .retry(Retry::exponential(Duration::from_millis(200)).attempts(3))
        .first_token_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5))
        .on_event(|e: &Event<'_>| match e {
            Event::Rotate { from, to, error } => println!("  [rotate {from} -> {to}: {error}]"),
            Event::Retry {
                provider, delay, ..
            } => println!("  [retry {provider} in {delay:?}]"),
            Event::Reask { reask, reason } => println!("  [re-ask {reask}: {reason}]"),
            _ => {}
        })
        .build()?;

    let mut transcript = Vec::new();
    let question = ChatRequest::new("gpt-4o-mini").user("What is Rust, in one line?");
    let answer = client.chat(&question).await?;
    println!("{} says: {}", answer.provider, answer.content());
    transcript.push(answer.content().to_owned());

    let mut stream = client
        .chat_stream(&ChatRequest::new("gpt-4o-mini").user("What is resilience?"))
        .await?;
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        print!("{}", chunk.content);
        text.push_str(&chunk.content);
    }
    println!();
    transcript.push(text);

    let plan: Plan = client
        .parse(
            &ChatRequest::new("gpt-4o-mini")
                .json_mode()
                .user("Plan pasta as JSON"),
        )
        .await?;
    println!("plan: {:?} in {} minutes", plan.steps, plan.minutes);
    transcript.push(format!(
        "{} steps, {} minutes",
        plan.steps.len(),
        plan.minutes
    ));
    Ok(transcript)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    run().await.map(|_| ())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_example_runs_against_the_mock() {
        let transcript = super::run().await.unwrap();
        assert_eq!(
            transcript,
            [
                "Rust is a systems language.",
                "Resilience means answering anyway.",
                "3 steps, 11 minutes",
            ]
        );
    }
}
