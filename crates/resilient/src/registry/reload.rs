//! Hot reload: named pipelines from a configuration file, replaced while they serve.
//!
//! A [`LiveConfig`] loads a configuration (TOML, or a [`ConfigFile`] from any serde
//! format) and hands out [`LivePipeline`]s by name. A reload — from the file when it
//! changes ([`LiveConfig::watch`], through `notify`) or from an API call
//! ([`LiveConfig::reload`], [`LiveConfig::reload_toml`]) — is validated as a whole first:
//!
//! - **invalid**: it is rejected with the same error a first load gives (file, line,
//!   field, rule); nothing changes and the old configuration keeps serving;
//! - **valid**: every pipeline is rebuilt and swapped in atomically (through `arc-swap`).
//!   A call already running finishes on the pipeline it started with; the next call
//!   takes the new one. No call is dropped.
//!
//! State carries over where the change allows it:
//!
//! | strategy | unchanged | changed |
//! |---|---|---|
//! | breaker | kept, with its state and counts | replaced (state starts closed) |
//! | rate limiter | kept, with its state | only `rate`, `per` or `burst` changed: kept and re-rated in place (units in use, debt, stay: see `RateLimiter::set_rate`); anything else: replaced |
//! | bulkhead | kept, with its permits | replaced: calls in flight keep their slots in the old one |
//! | chaos | kept | switched and re-rated in place (a new `seed` replaces it) |
//!
//! Every reload ends in a [`ReloadEvent`] for the hooks added with
//! [`LiveConfig::on_reload`] and in the counts of [`LiveConfig::stats`].
//!
//! ```
//! use resilient::registry::reload::LiveConfig;
//! use resilient::CircuitState;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let live = LiveConfig::from_toml(
//!     r#"
//!     [breakers.db]
//!     consecutive_failures = 2
//!     [pipelines.orders]
//!     circuit_breaker = "db"
//!     retry = { attempts = 2, backoff = "immediate" }
//!     "#,
//!     "app.toml",
//! )
//! .unwrap();
//! let orders = live.pipeline("orders").unwrap();
//! for _ in 0..2 {
//!     let _ = orders.execute(|| async { Err::<(), _>("down") }).await;
//! }
//! assert_eq!(live.registry().breaker("db").unwrap().state(), CircuitState::Open);
//!
//! // More attempts, same breaker: the breaker is kept, and stays open.
//! let report = live
//!     .reload_toml(
//!         r#"
//!         [breakers.db]
//!         consecutive_failures = 2
//!         [pipelines.orders]
//!         circuit_breaker = "db"
//!         retry = { attempts = 5, backoff = "immediate" }
//!         "#,
//!         "app.toml",
//!     )
//!     .unwrap();
//! assert_eq!(report.kept, ["breakers.db"]);
//! assert_eq!(live.registry().breaker("db").unwrap().state(), CircuitState::Open);
//!
//! // An invalid file is rejected, naming line and field; the old settings keep serving.
//! let err = live.reload_toml("[pipelines.orders]\nretry = { attempts = 0 }\n", "app.toml").unwrap_err();
//! assert_eq!((err.line(), err.field()), (Some(2), "pipelines.orders.retry.attempts"));
//! assert_eq!(live.stats().rejected, 1);
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::engine::error::Error;
use crate::engine::outcome::Classify;
use crate::ratelimit::Rate;
use crate::registry::config::{ConfigFile, ConfigFileError, LimiterConfig};
use crate::registry::{Classifier, NamedPipeline, Registry, RegistryError};

/// A hook told of every reload (see [`LiveConfig::on_reload`]).
pub type ReloadHook = Arc<dyn Fn(&ReloadEvent<'_>) + Send + Sync>;

/// A configuration whose named pipelines can be replaced while they serve (see the
/// [module docs](self)). Clones share everything.
#[derive(Clone)]
pub struct LiveConfig {
    inner: Arc<Live>,
}

struct Live {
    /// The applied configuration and its registry; held while a reload runs, so reloads
    /// never interleave.
    current: Mutex<Current>,
    /// The applied configuration's registry, for lock-free reads.
    registry: ArcSwap<Registry>,
    /// One slot per pipeline name, shared with every [`LivePipeline`] of that name.
    slots: Mutex<BTreeMap<String, Arc<ArcSwap<NamedPipeline>>>>,
    hooks: Mutex<Vec<ReloadHook>>,
    applied: AtomicU64,
    rejected: AtomicU64,
}

struct Current {
    config: ConfigFile,
    /// The TOML text last applied (a watcher skips a save that changed nothing).
    source: Option<String>,
}

/// A named pipeline of a [`LiveConfig`]: each call runs through the pipeline of the
/// configuration applied when the call starts.
#[derive(Clone)]
pub struct LivePipeline {
    name: Arc<str>,
    slot: Arc<ArcSwap<NamedPipeline>>,
}

/// What a reload changed. Strategies are named `breakers.NAME`, `limiters.NAME` and
/// `bulkheads.NAME`; pipelines `pipelines.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Strategies kept as they were, state and all.
    pub kept: Vec<String>,
    /// Strategies kept and changed in place (a limiter's rate), state carried over.
    pub adjusted: Vec<String>,
    /// Strategies rebuilt from scratch (their state starts fresh).
    pub replaced: Vec<String>,
    /// Strategies and pipelines the new configuration adds.
    pub added: Vec<String>,
    /// Strategies and pipelines it no longer has (a [`LivePipeline`] already handed out
    /// keeps serving with the last settings it had).
    pub removed: Vec<String>,
    /// Pipelines rebuilt and swapped in.
    pub pipelines: Vec<String>,
}

/// Counts of reloads (see [`LiveConfig::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadStats {
    /// Reloads applied.
    pub applied: u64,
    /// Reloads rejected (the old configuration kept serving).
    pub rejected: u64,
}

/// How a reload ended (handed to [`LiveConfig::on_reload`] hooks).
#[derive(Debug)]
#[non_exhaustive]
pub enum ReloadEvent<'a> {
    /// The new configuration serves.
    Applied(&'a ReloadReport),
    /// The new configuration was invalid; the old one serves.
    Rejected(&'a ConfigFileError),
}

impl fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveConfig")
            .field("pipelines", &self.pipeline_names())
            .field("stats", &self.stats())
            .finish()
    }
}

impl fmt::Debug for LivePipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivePipeline")
            .field("name", &self.name)
            .field("stages", &self.slot.load().stages())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A registry holding exactly what `config` describes.
fn build(config: &ConfigFile, file: &str) -> Result<Registry, ConfigFileError> {
    let registry = Registry::new();
    registry.load(config, file)?;
    Ok(registry)
}

impl LiveConfig {
    /// Loads a TOML configuration; errors name `file`, the line and the field.
    pub fn from_toml(src: &str, file: &str) -> Result<Self, ConfigFileError> {
        let config = ConfigFile::from_toml(src, file)?;
        // a first load through the registry's TOML path, for its line numbers
        Registry::new().load_toml(src, file)?;
        let live = Self::new(config, file)?;
        lock(&live.inner.current).source = Some(src.to_owned());
        Ok(live)
    }

    /// Reads and loads a TOML file.
    ///
    /// ```
    /// use resilient::registry::reload::LiveConfig;
    /// let err = LiveConfig::from_toml_file("/no/such.toml").unwrap_err();
    /// assert_eq!(err.file(), "/no/such.toml");
    /// ```
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, ConfigFileError> {
        let (src, file) = read(path.as_ref())?;
        Self::from_toml(&src, &file)
    }

    /// Loads a configuration from any serde format.
    pub fn new(config: ConfigFile, file: &str) -> Result<Self, ConfigFileError> {
        let registry = build(&config, file)?;
        let slots = config
            .pipelines
            .keys()
            .map(|name| {
                let p = registry
                    .pipeline(name)
                    .map_err(|e| registry_error(file, name, e))?;
                Ok((name.clone(), Arc::new(ArcSwap::from_pointee(p))))
            })
            .collect::<Result<_, ConfigFileError>>()?;
        Ok(Self {
            inner: Arc::new(Live {
                current: Mutex::new(Current {
                    config,
                    source: None,
                }),
                registry: ArcSwap::from_pointee(registry),
                slots: Mutex::new(slots),
                hooks: Mutex::new(Vec::new()),
                applied: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        })
    }

    /// The pipeline named `name`; its calls follow every reload. Unknown names list the
    /// known ones.
    pub fn pipeline(&self, name: &str) -> Result<LivePipeline, RegistryError> {
        let slots = lock(&self.inner.slots);
        match slots.get(name) {
            Some(slot) => Ok(LivePipeline {
                name: name.into(),
                slot: slot.clone(),
            }),
            None => Err(RegistryError::Unknown {
                kind: "pipeline",
                name: name.to_owned(),
                known: slots.keys().cloned().collect(),
            }),
        }
    }

    /// The names of the configuration's pipelines.
    pub fn pipeline_names(&self) -> Vec<String> {
        lock(&self.inner.slots).keys().cloned().collect()
    }

    /// The registry of the configuration now applied: its breakers, limiters and bulkheads
    /// by name (a snapshot: a later reload may replace what it holds).
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry.load_full()
    }

    /// The configuration now applied.
    pub fn config(&self) -> ConfigFile {
        lock(&self.inner.current).config.clone()
    }

    /// Reloads and applies counted so far.
    pub fn stats(&self) -> ReloadStats {
        ReloadStats {
            applied: self.inner.applied.load(Ordering::Relaxed),
            rejected: self.inner.rejected.load(Ordering::Relaxed),
        }
    }

    /// Calls `hook` after every reload, applied or rejected (for logs and metrics).
    pub fn on_reload(&self, hook: impl Fn(&ReloadEvent<'_>) + Send + Sync + 'static) {
        lock(&self.inner.hooks).push(Arc::new(hook));
    }

    fn tell(&self, event: &ReloadEvent<'_>) {
        let hooks: Vec<ReloadHook> = lock(&self.inner.hooks).clone();
        for h in hooks {
            h(event);
        }
    }

    fn reject(&self, e: ConfigFileError) -> ConfigFileError {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        self.tell(&ReloadEvent::Rejected(&e));
        e
    }

    /// Replaces the configuration with a TOML text (see the [module docs](self)).
    pub fn reload_toml(&self, src: &str, file: &str) -> Result<ReloadReport, ConfigFileError> {
        // validated as a first load would be: the same errors, with lines
        let config = ConfigFile::from_toml(src, file)
            .and_then(|c| Registry::new().load_toml(src, file).map(|()| c))
            .map_err(|e| self.reject(e))?;
        let report = self.apply(config, file)?;
        lock(&self.inner.current).source = Some(src.to_owned());
        Ok(report)
    }

    /// Replaces the configuration with one built in code or read from any serde format:
    /// a reload through an API call, with no file.
    ///
    /// ```
    /// use resilient::registry::config::ConfigFile;
    /// use resilient::registry::reload::LiveConfig;
    /// let live = LiveConfig::from_toml("[limiters.api]\nrate = 10\n", "a.toml").unwrap();
    /// let mut next = live.config();
    /// next.limiters.get_mut("api").unwrap().rate = 20;
    /// let report = live.reload(next, "admin API").unwrap();
    /// assert_eq!(report.adjusted, ["limiters.api"]);
    /// ```
    pub fn reload(&self, config: ConfigFile, file: &str) -> Result<ReloadReport, ConfigFileError> {
        build(&config, file).map_err(|e| self.reject(e))?;
        let report = self.apply(config, file)?;
        lock(&self.inner.current).source = None;
        Ok(report)
    }

    /// Reads `path` and reloads it; a file whose text is what was last applied is left
    /// alone (`Ok(None)`).
    pub fn reload_file(
        &self,
        path: impl AsRef<Path>,
    ) -> Result<Option<ReloadReport>, ConfigFileError> {
        let (src, file) = read(path.as_ref()).map_err(|e| self.reject(e))?;
        if lock(&self.inner.current).source.as_deref() == Some(src.as_str()) {
            return Ok(None);
        }
        self.reload_toml(&src, &file).map(Some)
    }

    /// Builds the new registry, carrying state over, and swaps every pipeline in.
    fn apply(&self, config: ConfigFile, file: &str) -> Result<ReloadReport, ConfigFileError> {
        let mut current = lock(&self.inner.current);
        let old_registry = self.inner.registry.load_full();
        let old = &current.config;
        let mut report = ReloadReport::default();
        let fresh = Registry::new();
        // what is carried over goes into the new registry first, and out of the config
        // that builds the rest
        let mut rest = config.clone();
        carry(
            (
                "breakers",
                &config.breakers,
                &old.breakers,
                &mut rest.breakers,
            ),
            |n| old_registry.breaker(n),
            |_, _, _| false,
            |n, b| drop(fresh.insert_breaker(n, b)),
            &mut report,
        );
        carry(
            (
                "limiters",
                &config.limiters,
                &old.limiters,
                &mut rest.limiters,
            ),
            |n| old_registry.limiter(n),
            rerate,
            |n, l| drop(fresh.insert_limiter(n, l)),
            &mut report,
        );
        carry(
            (
                "bulkheads",
                &config.bulkheads,
                &old.bulkheads,
                &mut rest.bulkheads,
            ),
            |n| old_registry.bulkhead(n),
            |_, _, _| false,
            |n, b| drop(fresh.insert_bulkhead(n, b)),
            &mut report,
        );
        carry(
            ("chaos", &config.chaos, &old.chaos, &mut rest.chaos),
            |n| old_registry.chaos(n),
            |was, now, x| now.apply_to(x, was),
            |n, x| drop(fresh.insert_chaos(n, x)),
            &mut report,
        );
        report.removed.extend(
            old.pipelines
                .keys()
                .filter(|n| !config.pipelines.contains_key(*n))
                .map(|n| format!("pipelines.{n}")),
        );

        fresh.load(&rest, file).map_err(|e| self.reject(e))?;
        let mut built = BTreeMap::new();
        for name in config.pipelines.keys() {
            let p = fresh
                .pipeline(name)
                .map_err(|e| self.reject(registry_error(file, name, e)))?;
            built.insert(name.clone(), p);
        }
        // Everything is built: swap it all in.
        {
            let mut slots = lock(&self.inner.slots);
            let keep: BTreeSet<&String> = built.keys().collect();
            slots.retain(|name, _| keep.contains(name));
            for (name, p) in built {
                report.pipelines.push(format!("pipelines.{name}"));
                match slots.get(&name) {
                    Some(slot) => slot.store(Arc::new(p)),
                    None => {
                        report.added.push(format!("pipelines.{name}"));
                        slots.insert(name, Arc::new(ArcSwap::from_pointee(p)));
                    }
                }
            }
        }
        self.inner.registry.store(Arc::new(fresh));
        current.config = config;
        drop(current);
        self.inner.applied.fetch_add(1, Ordering::Relaxed);
        self.tell(&ReloadEvent::Applied(&report));
        Ok(report)
    }

    /// Reloads the file at `path` whenever it changes on disk, until the returned
    /// [`ConfigWatcher`] is dropped. The directory is watched, so that editors that save
    /// by renaming a new file over the old one are seen too. Every reload, applied or
    /// rejected, reaches the [`on_reload`](Self::on_reload) hooks; a watch error is
    /// reported to them as a rejection.
    pub fn watch(&self, path: impl AsRef<Path>) -> Result<ConfigWatcher, ConfigFileError> {
        self.watch_with(path, Duration::from_millis(100))
    }

    /// Like [`watch`](Self::watch), waiting until the file has been quiet for `debounce`
    /// before reading it (a save often arrives as several events: a truncation, then the
    /// writes; reading at the first would see an empty or partial file).
    pub fn watch_with(
        &self,
        path: impl AsRef<Path>,
        debounce: Duration,
    ) -> Result<ConfigWatcher, ConfigFileError> {
        use notify::Watcher as _;
        let path = path.as_ref().to_path_buf();
        let file = path.display().to_string();
        let watch_error = |e: notify::Error| ConfigFileError::other(&file, e.to_string());
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path.file_name().map(|n| n.to_os_string());
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let msg = match res {
                Ok(event) => {
                    let ours = event
                        .paths
                        .iter()
                        .any(|p| p.file_name().map(|n| n.to_os_string()) == name);
                    let change = matches!(
                        event.kind,
                        notify::EventKind::Create(_) | notify::EventKind::Modify(_)
                    );
                    if !(ours && change) {
                        return;
                    }
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(msg);
        })
        .map_err(watch_error)?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(watch_error)?;
        // The reloading thread: it ends when the watcher (and with it the sender) is
        // dropped. A reload cannot panic it: errors are reported to the hooks.
        let live = self.clone();
        let target = path.clone();
        std::thread::Builder::new()
            .name("resilient-config-watch".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut failed = first.err();
                    // wait for the file to be quiet
                    loop {
                        match rx.recv_timeout(debounce) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => failed = Some(e),
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    if let Some(e) = failed {
                        let _ = live.reject(ConfigFileError::other(
                            &target.display().to_string(),
                            format!("watching the file failed: {e}"),
                        ));
                    }
                    if target.exists() {
                        let _ = live.reload_file(&target);
                    }
                }
            })
            .map_err(|e| ConfigFileError::other(&file, e.to_string()))?;
        Ok(ConfigWatcher {
            _watcher: watcher,
            path,
        })
    }
}

/// A running file watch (see [`LiveConfig::watch`]); dropping it stops watching.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
    path: PathBuf,
}

impl ConfigWatcher {
    /// The file watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for ConfigWatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigWatcher")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One kind of strategy: its name, its new and old settings by name, and the part of the
/// new configuration still to be built.
type Kind<'a, C> = (
    &'a str,
    &'a BTreeMap<String, C>,
    &'a BTreeMap<String, C>,
    &'a mut BTreeMap<String, C>,
);

/// One kind of strategy (`kind`, its new and old settings by name, and the part of the new
/// configuration still to be built): each one whose settings are unchanged, or that
/// `adjust(was, now, built)` changes in place, is taken from the old registry (`built`) into
/// the new one (`insert`) and removed from `rest`; the report says what became of each name.
fn carry<C: PartialEq, T>(
    (kind, new, old, rest): Kind<'_, C>,
    built: impl Fn(&str) -> Result<T, RegistryError>,
    adjust: impl Fn(&C, &C, &T) -> bool,
    insert: impl Fn(String, T),
    report: &mut ReloadReport,
) {
    for (name, now) in new {
        let key = format!("{kind}.{name}");
        let Some(was) = old.get(name) else {
            report.added.push(key);
            continue;
        };
        match built(name) {
            Ok(x) if was == now => {
                report.kept.push(key);
                rest.remove(name);
                insert(name.clone(), x);
            }
            Ok(x) if adjust(was, now, &x) => {
                report.adjusted.push(key);
                rest.remove(name);
                insert(name.clone(), x);
            }
            _ => report.replaced.push(key),
        }
    }
    report.removed.extend(
        old.keys()
            .filter(|n| !new.contains_key(*n))
            .map(|n| format!("{kind}.{n}")),
    );
}

/// Whether `l` (built from `was`) can take `now` by a rate change in place, and made it.
fn rerate(was: &LimiterConfig, now: &LimiterConfig, l: &crate::ratelimit::RateLimiter) -> bool {
    let same_rest =
        was.algorithm == now.algorithm && was.cost == now.cost && was.max_wait == now.max_wait;
    if !same_rest || now.build().is_err() {
        return false;
    }
    let burst = now.burst.unwrap_or(now.rate);
    l.set_rate(0, Rate::new(now.rate, now.per), burst).is_ok()
}

fn read(path: &Path) -> Result<(String, String), ConfigFileError> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(src) => Ok((src, file)),
        Err(e) => Err(ConfigFileError::other(&file, e.to_string())),
    }
}

fn registry_error(file: &str, name: &str, e: RegistryError) -> ConfigFileError {
    ConfigFileError::other(file, format!("pipelines.{name}: {e}"))
}

impl LivePipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pipeline now serving (a call started now would use it).
    pub fn current(&self) -> Arc<NamedPipeline> {
        self.slot.load_full()
    }

    /// Runs `op` through the pipeline applied when the call starts: a reload during the
    /// call does not touch it.
    pub fn execute<T, E, F, Fut>(
        &self,
        op: F,
    ) -> impl Future<Output = Result<T, Error<E>>> + use<T, E, F, Fut>
    where
        Classifier: Classify<T, E>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let pipeline = self.slot.load_full();
        async move { pipeline.execute(op).await }
    }
}
