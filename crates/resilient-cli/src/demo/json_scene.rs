//! The JSON-repair scene: a mock language model on the upstream answers broken JSON
//! (fenced, single quotes, truncated, wrapped in prose) and sometimes 429 or 503; a
//! pipeline retries (after `Retry-After` when given) and `resilient::json` repairs the
//! answer and parses it into a struct.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hyper::{StatusCode, Uri};
use resilient::json::{RepairKind, repair_with_report};
use resilient::{Error, Outcome, Pipeline, Retry, Timeout};
use serde::{Deserialize, Serialize};

use super::clients::{Http, HttpError, Reply, get, http_client};
use super::stats::Group;

/// What the model is asked for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Forecast {
    /// The city.
    pub city: String,
    /// Degrees Celsius.
    pub temperature_c: f64,
    /// Words describing the weather.
    pub conditions: Vec<String>,
    /// A weather alert, if any.
    #[serde(default)]
    pub alert: Option<String>,
}

/// What became of one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct PromptResult {
    /// Requests sent to the model.
    pub attempts: u32,
    /// The statuses answered, in order.
    pub statuses: Vec<u16>,
    /// The model's raw answer (the last one).
    pub raw: String,
    /// The kinds of repair made, each once, in input order.
    pub repairs: Vec<String>,
    /// The parsed value, or why there is none.
    pub parsed: Result<Forecast, String>,
}

/// The scene's results.
#[derive(Debug, Clone, Serialize)]
pub struct SceneSummary {
    /// Prompts sent.
    pub prompts: usize,
    /// Of which parsed into a [`Forecast`].
    pub parsed: usize,
    /// Answers that were not valid JSON and were repaired.
    pub repaired: usize,
    /// Each prompt.
    pub results: Vec<PromptResult>,
}

/// Asks the model at `uri` for `prompts` forecasts.
pub async fn run(uri: Uri, prompts: usize) -> SceneSummary {
    let client: Http = http_client();
    let pipeline = Pipeline::builder()
        .name("model")
        .timeout(Timeout::request(Duration::from_secs(5)))
        .retry(
            Retry::exponential(Duration::from_millis(100))
                .attempts(4)
                .max_server_delay(Duration::from_secs(2)),
        )
        .timeout(Timeout::operation(Duration::from_secs(2)))
        .classify(|r: &Result<Reply, HttpError>| match r {
            Ok(reply) if reply.status.is_success() => Outcome::Success,
            _ => Outcome::Failure,
        })
        .retry_if(|r: &Result<Reply, HttpError>| match r {
            Ok(reply) => matches!(
                reply.status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ),
            Err(_) => true,
        })
        .delay_from(|r: &Result<Reply, HttpError>| r.as_ref().ok()?.retry_after)
        .build()
        .expect("a valid configuration");
    let mut results = Vec::new();
    for _ in 0..prompts {
        let attempts = AtomicU32::new(0);
        let statuses = std::sync::Mutex::new(Vec::new());
        let result = pipeline
            .execute(|| async {
                attempts.fetch_add(1, Ordering::Relaxed);
                let r = get(&client, &uri, Group::Protected).await;
                if let Ok(reply) = &r {
                    statuses
                        .lock()
                        .expect("not poisoned")
                        .push(reply.status.as_u16());
                }
                r
            })
            .await;
        let statuses = statuses.into_inner().expect("not poisoned");
        let attempts = attempts.load(Ordering::Relaxed);
        let (raw, repairs, parsed) = match result {
            Ok(reply) if reply.status.is_success() => {
                let raw = String::from_utf8_lossy(&reply.body).into_owned();
                match repair_with_report(&raw) {
                    Ok((json, report)) => {
                        let mut kinds: Vec<RepairKind> = Vec::new();
                        for r in report.repairs() {
                            if !kinds.contains(&r.kind) {
                                kinds.push(r.kind);
                            }
                        }
                        let parsed =
                            serde_json::from_str::<Forecast>(&json).map_err(|e| e.to_string());
                        (raw, kinds.iter().map(|k| k.to_string()).collect(), parsed)
                    }
                    Err(e) => (raw, Vec::new(), Err(e.to_string())),
                }
            }
            Ok(reply) => (
                String::from_utf8_lossy(&reply.body).into_owned(),
                Vec::new(),
                Err(format!("gave up on {}", reply.status)),
            ),
            Err(e) => (String::new(), Vec::new(), Err(describe(&e))),
        };
        results.push(PromptResult {
            attempts,
            statuses,
            raw,
            repairs,
            parsed,
        });
    }
    SceneSummary {
        prompts,
        parsed: results.iter().filter(|r| r.parsed.is_ok()).count(),
        repaired: results.iter().filter(|r| !r.repairs.is_empty()).count(),
        results,
    }
}

fn describe(e: &Error<HttpError>) -> String {
    e.to_string()
}

/// The scene as text, one block per prompt.
pub fn render(scene: &SceneSummary) -> String {
    let mut out = String::from(
        "JSON REPAIR: a mock model answering broken JSON (and 429/503 now and then)\n",
    );
    for (i, r) in scene.results.iter().enumerate() {
        let statuses: Vec<String> = r.statuses.iter().map(u16::to_string).collect();
        out += &format!(
            "  prompt {}: {} request(s), answers {}\n",
            i + 1,
            r.attempts,
            statuses.join(" -> ")
        );
        out += &format!("    model said: {}\n", shorten(&r.raw, 90));
        if r.repairs.is_empty() {
            out += "    repaired:   nothing (valid JSON)\n";
        } else {
            out += &format!("    repaired:   {}\n", r.repairs.join(", "));
        }
        match &r.parsed {
            Ok(f) => {
                out += &format!(
                    "    parsed:     Forecast {{ city: {:?}, temperature_c: {}, conditions: {:?}, alert: {:?} }}\n",
                    f.city, f.temperature_c, f.conditions, f.alert
                )
            }
            Err(e) => out += &format!("    not parsed: {e}\n"),
        }
    }
    out += &format!(
        "  {} of {} prompts parsed, {} answers repaired\n",
        scene.parsed, scene.prompts, scene.repaired
    );
    out
}

/// `s` on one line (escapes shown), cut to `max` characters.
fn shorten(s: &str, max: usize) -> String {
    let escaped = s.escape_debug().to_string();
    if escaped.chars().count() <= max {
        escaped
    } else {
        let cut: String = escaped.chars().take(max).collect();
        format!("{cut}...")
    }
}
