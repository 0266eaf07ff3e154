//! A pattern's parameters: the spelling `network(attempts = 5, base = "50ms")`, parsed
//! into [`Params`] that a factory reads with typed getters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::engine::error::ConfigError;

/// One parameter value, as written: a number, a boolean or a string (a duration is a
/// string such as `"5s"`, read with [`Params::duration`]).
///
/// ```
/// use resilient::registry::{Params, Value};
/// let (name, params) = Params::parse("network(attempts = 5, jitter = full)").unwrap();
/// assert_eq!(name, "network");
/// assert_eq!(params.get("attempts"), Some(&Value::Int(5)));
/// assert_eq!(params.get("jitter"), Some(&Value::Str("full".into())));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A whole number (`5`).
    Int(i64),
    /// A number with a fraction (`0.5`).
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// A quoted string (`"5s"`) or a bare word (`full`).
    Str(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x:?}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The parameters given to a pattern, by name. Factories read them with the typed getters,
/// which fall back to a default when a parameter is absent and name the parameter when its
/// value has the wrong type.
///
/// ```
/// use resilient::registry::Params;
/// use std::time::Duration;
/// let (_, p) = Params::parse("network(attempts = 5, base = \"50ms\")").unwrap();
/// assert_eq!(p.u32("attempts", 3).unwrap(), 5);
/// assert_eq!(p.duration("base", Duration::from_millis(100)).unwrap(), Duration::from_millis(50));
/// assert_eq!(p.f64("factor", 2.0).unwrap(), 2.0);
/// assert!(p.u32("base", 1).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    /// No parameters.
    ///
    /// ```
    /// assert!(resilient::registry::Params::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a parameter.
    ///
    /// ```
    /// use resilient::registry::{Params, Value};
    /// let p = Params::new().with("attempts", Value::Int(5));
    /// assert_eq!(p.u32("attempts", 3).unwrap(), 5);
    /// ```
    pub fn with(mut self, name: impl Into<String>, value: Value) -> Self {
        self.values.insert(name.into(), value);
        self
    }

    /// Parses `name` or `name(key = value, ..)` into the name and its parameters.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (name, p) = Params::parse("http").unwrap();
    /// assert_eq!((name.as_str(), p.is_empty()), ("http", true));
    /// assert!(Params::parse("network(attempts 5)").is_err());
    /// ```
    pub fn parse(spelling: &str) -> Result<(String, Params), ConfigError> {
        let s = spelling.trim();
        let (name, rest) = match s.find('(') {
            Some(i) => (s[..i].trim(), Some(&s[i + 1..])),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
        {
            return Err(ConfigError::new(
                "pattern",
                format!("`{spelling}` is not a name or `name(key = value, ..)`"),
            ));
        }
        let mut params = Params::new();
        if let Some(rest) = rest {
            let Some(body) = rest.trim_end().strip_suffix(')') else {
                return Err(ConfigError::new(
                    "pattern",
                    format!("`{spelling}`: the parameter list is not closed with `)`"),
                ));
            };
            for item in split_top(body) {
                let item = item.trim();
                if item.is_empty() {
                    continue;
                }
                let Some((key, value)) = item.split_once('=') else {
                    return Err(ConfigError::new(
                        "pattern",
                        format!("`{spelling}`: `{item}` is not `key = value`"),
                    ));
                };
                let key = key.trim();
                if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    return Err(ConfigError::new(
                        "pattern",
                        format!("`{spelling}`: `{key}` is not a parameter name"),
                    ));
                }
                params
                    .values
                    .insert(key.to_owned(), parse_value(value.trim()));
            }
        }
        Ok((name.to_owned(), params))
    }

    /// Whether there are no parameters.
    ///
    /// ```
    /// assert!(resilient::registry::Params::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The parameter `name`, if given.
    ///
    /// ```
    /// use resilient::registry::{Params, Value};
    /// let (_, p) = Params::parse("x(on = true)").unwrap();
    /// assert_eq!(p.get("on"), Some(&Value::Bool(true)));
    /// ```
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// The parameters' names, in order.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (_, p) = Params::parse("x(b = 1, a = 2)").unwrap();
    /// assert_eq!(p.names().collect::<Vec<_>>(), ["a", "b"]);
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// A whole number in `u32` (`attempts = 5`), or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// assert_eq!(Params::new().u32("attempts", 3).unwrap(), 3);
    /// ```
    pub fn u32(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Int(n)) => u32::try_from(*n)
                .map_err(|_| ConfigError::new(name, format!("{n} is out of range"))),
            Some(v) => Err(wrong(name, v, "a whole number")),
        }
    }

    /// A whole number in `u64`, or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (_, p) = Params::parse("x(rate = 100)").unwrap();
    /// assert_eq!(p.u64("rate", 1).unwrap(), 100);
    /// ```
    pub fn u64(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Int(n)) => u64::try_from(*n)
                .map_err(|_| ConfigError::new(name, format!("{n} is out of range"))),
            Some(v) => Err(wrong(name, v, "a whole number")),
        }
    }

    /// A number (`0.5`, or a whole number), or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (_, p) = Params::parse("x(ratio = 0.2, factor = 3)").unwrap();
    /// assert_eq!(p.f64("ratio", 0.1).unwrap(), 0.2);
    /// assert_eq!(p.f64("factor", 2.0).unwrap(), 3.0);
    /// ```
    pub fn f64(&self, name: &'static str, default: f64) -> Result<f64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Float(x)) => Ok(*x),
            Some(Value::Int(n)) => Ok(*n as f64),
            Some(v) => Err(wrong(name, v, "a number")),
        }
    }

    /// `true` or `false`, or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (_, p) = Params::parse("x(repair = false)").unwrap();
    /// assert!(!p.bool("repair", true).unwrap());
    /// ```
    pub fn bool(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(wrong(name, v, "`true` or `false`")),
        }
    }

    /// A string or bare word (`jitter = full`), or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (_, p) = Params::parse("x(jitter = full)").unwrap();
    /// assert_eq!(p.str("jitter", "none").unwrap(), "full");
    /// ```
    pub fn str<'a>(&'a self, name: &'static str, default: &'a str) -> Result<&'a str, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Str(s)) => Ok(s),
            Some(v) => Err(wrong(name, v, "a string")),
        }
    }

    /// A duration written as a string (`"250ms"`, `"5s"`, `"1m30s"`), or `default`.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// use std::time::Duration;
    /// let (_, p) = Params::parse("x(base = \"1m30s\")").unwrap();
    /// assert_eq!(p.duration("base", Duration::ZERO).unwrap(), Duration::from_secs(90));
    /// ```
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Str(s)) => {
                parse_duration(s).map_err(|e| ConfigError::new(name, format!("`{s}`: {e}")))
            }
            Some(v) => Err(wrong(name, v, "a duration such as \"5s\"")),
        }
    }

    /// The canonical spelling of `name` with these parameters: the registry's cache key, so
    /// `network(attempts=5)` and `network( attempts = 5 )` share one pipeline.
    ///
    /// ```
    /// use resilient::registry::Params;
    /// let (name, p) = Params::parse("network( b=1,a = \"x\" )").unwrap();
    /// assert_eq!(p.spelling(&name), "network(a = \"x\", b = 1)");
    /// assert_eq!(Params::new().spelling("http"), "http");
    /// ```
    pub fn spelling(&self, name: &str) -> String {
        if self.values.is_empty() {
            return name.to_owned();
        }
        let items: Vec<String> = self
            .values
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        format!("{name}({})", items.join(", "))
    }
}

fn wrong(name: &'static str, v: &Value, expected: &str) -> ConfigError {
    ConfigError::new(name, format!("expected {expected}, found {v}"))
}

/// Splits on commas outside quotes.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_value(v: &str) -> Value {
    if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Value::Str(s.to_owned());
    }
    match v {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    let digits = v.replace('_', "");
    if let Ok(n) = digits.parse::<i64>() {
        return Value::Int(n);
    }
    if let Ok(x) = digits.parse::<f64>() {
        return Value::Float(x);
    }
    Value::Str(v.to_owned())
}

/// Parses a duration such as `"250ms"`, `"5s"`, `"1m30s"`, `"1h"`, `"1.5s"` or `"0"`:
/// one or more `number unit` parts, units `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`.
///
/// ```
/// use resilient::registry::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(parse_duration("250 ms").unwrap(), Duration::from_millis(250));
/// assert!(parse_duration("5").is_err());
/// assert!(parse_duration("5 parsecs").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("an empty duration; write it like \"5s\" or \"250ms\"".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_end);
        if num.is_empty() {
            return Err(format!(
                "`{text}` is not a duration such as \"5s\" or \"250ms\""
            ));
        }
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let nanos_per: u64 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => 1_000_000_000,
            "m" | "min" | "mins" => 60_000_000_000,
            "h" | "hr" | "hours" => 3_600_000_000_000,
            "d" | "days" => 86_400_000_000_000,
            "" => {
                return Err(format!(
                    "`{text}` has no unit; write it like \"{num}s\" or \"{num}ms\""
                ));
            }
            other => {
                return Err(format!(
                    "unknown unit `{other}` in `{text}`; use ns, us, ms, s, m, h or d"
                ));
            }
        };
        let num = num.replace('_', "");
        let out_of_range = || format!("`{text}` is out of range");
        let part = if let Ok(n) = num.parse::<u64>() {
            let nanos = u128::from(n) * u128::from(nanos_per);
            let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| out_of_range())?;
            Duration::new(secs, (nanos % 1_000_000_000) as u32)
        } else {
            let x: f64 = num
                .parse()
                .map_err(|_| format!("`{num}` is not a number"))?;
            Duration::try_from_secs_f64(x * nanos_per as f64 / 1e9).map_err(|_| out_of_range())?
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{text}` is out of range"))?;
        rest = next.trim_start();
    }
    Ok(total)
}
