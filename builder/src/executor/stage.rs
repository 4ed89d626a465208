//! One stage's steps, in order; the stages of a wave at the same time.

use super::error::{BuildError, StepAt};
use super::layers::LayerRef;
use super::timings::{Phase, StepClock};
use super::{copy_step, run_step, Build};
use crate::cache::{base_key, step_key, CacheKey, CachedStep};
use crate::dockerfile::instructions::Instruction;
use crate::executor::config_step::StageConfig;
use crate::executor::history;
use crate::image::{Descriptor, ImageBuilder};
use crate::layer::Layer;
use crate::plan::{Base, Platform, Stage, Step};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A finished stage: what later stages build on or copy from.
#[derive(Clone)]
pub(crate) struct StageDone {
    /// Config and layers so far (config already holds the stage's metadata).
    pub builder: ImageBuilder,
    /// Its layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The cache key of its last step.
    pub key: CacheKey,
}

/// Finished stages by index.
pub(crate) type Done = Mutex<BTreeMap<usize, StageDone>>;

/// Runs the stages the target needs, wave by wave; returns the finished target.
pub(crate) fn run_all(b: &Build<'_>) -> Result<StageDone, BuildError> {
    let done: Done = Mutex::new(BTreeMap::new());
    let last_wave = b.plan.waves.values().copied().max().unwrap_or(0);
    for wave in 0..=last_wave {
        let stages: Vec<usize> = b
            .plan
            .order
            .iter()
            .copied()
            .filter(|i| b.plan.waves.get(i) == Some(&wave))
            .collect();
        let results: Vec<Result<(usize, StageDone), BuildError>> = std::thread::scope(|s| {
            let handles: Vec<_> = stages
                .iter()
                .map(|&i| {
                    let done = &done;
                    s.spawn(move || run_stage(b, &b.plan.stages[i], done).map(|d| (i, d)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a stage thread panicked"))
                .collect()
        });
        for r in results {
            let (i, d) = r?;
            done.lock().expect("stages").insert(i, d);
        }
    }
    let target = done
        .lock()
        .expect("stages")
        .remove(&b.plan.target)
        .expect("the target stage was built");
    Ok(target)
}

/// The platform a stage builds for.
pub(crate) fn platform_of(b: &Build<'_>, stage: &Stage) -> Platform {
    stage
        .platform
        .clone()
        .unwrap_or_else(|| b.opts.plan.target_platform.clone())
}

fn start(b: &Build<'_>, stage: &Stage, done: &Done) -> Result<StageDone, BuildError> {
    let platform = platform_of(b, stage);
    Ok(match &stage.base {
        Base::Scratch => StageDone {
            builder: ImageBuilder::scratch(&platform),
            layers: Vec::new(),
            key: base_key(None, &platform),
        },
        Base::Image(name) => {
            let base_err = |e| BuildError::base(&b.file, stage.line, name, e);
            let r = b.bases.resolve(name, &platform).map_err(base_err)?;
            let descs = r
                .layers
                .iter()
                .map(|l| Descriptor::from(&l.layer))
                .collect();
            let builder = ImageBuilder::from_base(r.config.clone(), descs)
                .map_err(|e| base_err(std::sync::Arc::new(e.into())))?;
            StageDone {
                builder,
                layers: r.layers.clone(),
                key: base_key(Some(&r.manifest_digest), &platform),
            }
        }
        Base::Stage(i) => done
            .lock()
            .expect("stages")
            .get(i)
            .cloned()
            .expect("a stage's base stage was built in an earlier wave"),
    })
}

/// Where a step is, for messages.
pub(crate) struct At<'a> {
    pub b: &'a Build<'a>,
    pub stage: &'a Stage,
    pub step: &'a Step,
    pub label: String,
    /// `#N`, the step's number in the whole build (prefixes its output lines).
    pub tag: String,
    /// Where the step's phase times go.
    pub clock: StepClock,
}

impl At<'_> {
    /// This step's place in the Dockerfile.
    pub fn location(&self) -> StepAt {
        StepAt {
            file: self.b.file.clone(),
            line: self.step.start_line,
            step: self.label.clone(),
        }
    }

    /// A step error at this step's line.
    pub fn err(&self, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            at: self.location(),
            message: message.into(),
        }
    }

    /// This step failing because of `e`.
    pub fn fail(&self, e: impl Into<crate::Error>) -> BuildError {
        BuildError::StepFailed {
            at: self.location(),
            source: Box::new(e.into()),
        }
    }
}

fn run_stage(b: &Build<'_>, stage: &Stage, done: &Done) -> Result<StageDone, BuildError> {
    let mut st = start(b, stage, done)?;
    let platform = platform_of(b, stage);
    let mut cfg = StageConfig::from_base(st.builder.config_mut().clone());
    cfg.author = st.builder.image_config_mut().author.clone();
    let total = stage.steps.len();
    for (n, step) in stage.steps.iter().enumerate() {
        b.background.check()?;
        // BuildKit's plain progress shape, which the Docker backend prints too: `#N [stage
        // n/m] INSTRUCTION`, then `#N text` for what the step prints.
        let num = b.steps.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let label = format!("[{} {}/{}]", stage.label(), n + 1, total);
        let tag = format!("#{num}");
        let ins = &step.instruction;
        let clock = b.timings.row(num, &label, &ins.to_string());
        let at = At {
            b,
            stage,
            step,
            label: label.clone(),
            tag: tag.clone(),
            clock: clock.clone(),
        };
        match ins {
            Instruction::Run(_) | Instruction::Copy(_) | Instruction::Workdir(_) => {
                // WORKDIR changes the config first; its directory is made below if missing.
                let workdir = match ins {
                    Instruction::Workdir(_) => cfg.apply(ins).and_then(|h| h.created_by),
                    _ => None,
                };
                let env = run_step::environment(b, step, &cfg);
                let created_by = match ins {
                    Instruction::Run(r) => run_step::created_by(step, r, &cfg, &env),
                    Instruction::Copy(c) => history::copy(c),
                    _ => workdir.unwrap_or_default(),
                };
                let inputs = match ins {
                    Instruction::Copy(c) => Some(copy_step::inputs(&at, c, &cfg, done)?),
                    Instruction::Run(r) => copy_step::mount_inputs(&at, &r.mounts, done)?,
                    _ => None,
                };
                st.key = step_key(&st.key, step, &env, inputs.as_ref(), &platform);
                // Shown on the status line until the step ends.
                let _running = b.progress.step(&format!("{tag} {label} {ins}"));
                let started = std::time::Instant::now();
                if let Some(hit) = lookup(b, &st.key, &clock) {
                    b.progress.line(&format!("{tag} CACHED"));
                    clock.cached();
                    b.counts.lock().expect("counts").1 += 1;
                    // The history is this build's text, whatever build cached the step.
                    if let Some(l) = &hit {
                        b.background.upload(stage.index, l, &clock);
                    }
                    apply_step(&mut st, hit, created_by);
                    continue;
                }
                let made = match ins {
                    Instruction::Run(r) => {
                        Some(run_step::run(&at, r, &cfg, &st.layers, &env, done)?)
                    }
                    Instruction::Copy(c) => Some(copy_step::copy(&at, c, &cfg, &st.layers, done)?),
                    Instruction::Workdir(_) => copy_step::workdir(&at, &cfg, &st.layers)?,
                    _ => unreachable!(),
                };
                b.counts.lock().expect("counts").0 += 1;
                done_line(b, &tag, started, &clock);
                // `WORKDIR /` makes no layer, as BuildKit; it is cached all the same.
                store(
                    b,
                    &st.key,
                    made.as_ref().map(|l| &l.layer),
                    &created_by,
                    &clock,
                );
                if let Some(l) = &made {
                    b.background.upload(stage.index, l, &clock);
                }
                apply_step(&mut st, made, created_by);
            }
            Instruction::From(_) => {}
            Instruction::Arg(decls) => {
                // BuildKit records each ARG line with the values it took; the step changes
                // neither the filesystem nor the config, so the cache key stays.
                st.builder
                    .add_history(history::entry(history::arg(decls), true));
            }
            _ => {
                if let Some(h) = cfg.apply(ins) {
                    b.progress.line(&format!("{tag} {label} {ins}"));
                    st.builder.add_history(h);
                }
                let env = run_step::environment(b, step, &cfg);
                st.key = step_key(&st.key, step, &env, None, &platform);
            }
        }
    }
    *st.builder.config_mut() = cfg.config.clone();
    if cfg.author.is_some() {
        st.builder.image_config_mut().author = cfg.author.clone();
    }
    super::index::publish(b, &st.layers);
    Ok(st)
}

/// Adds a step's layer, when it made one, and its history entry.
fn apply_step(st: &mut StageDone, layer: Option<LayerRef>, created_by: String) {
    let Some(layer) = layer else {
        st.builder.add_history(history::entry(created_by, true));
        return;
    };
    let history = history::entry(created_by, false);
    // A cache-repository hit stays remote until a step reads it or the push mounts it.
    if layer.source.is_some() {
        st.builder.add_remote_layer(layer.layer.clone(), history);
    } else {
        st.builder.add_layer(layer.layer.clone(), history);
    }
    st.layers.push(layer);
}

/// BuildKit's `#N DONE 1.2s`, with the step's phases: `#N DONE 1.20s (run 1.02s, diff 0.18s)`.
fn done_line(b: &Build<'_>, tag: &str, started: std::time::Instant, clock: &StepClock) {
    let secs = started.elapsed().as_secs_f64();
    let phases = clock.summary();
    if phases.is_empty() {
        b.progress.line(&format!("{tag} DONE {secs:.2}s"));
    } else {
        b.progress
            .line(&format!("{tag} DONE {secs:.2}s ({phases})"));
    }
}

/// A step's result from the local cache (blob in the store) or the cache repository: its
/// layer, or `None` when it made none (`WORKDIR /`).
fn lookup(b: &Build<'_>, key: &CacheKey, clock: &StepClock) -> Option<Option<LayerRef>> {
    let from = |c: CachedStep, source| c.layer.map(|layer| LayerRef { layer, source });
    if let Some(local) = &b.local {
        if let Some(c) = local.get(key) {
            let present = c
                .layer
                .as_ref()
                .is_none_or(|l| b.layers.store.has(&l.digest, l.size));
            if present {
                return Some(from(c, None));
            }
        }
    }
    let repo = b.repo.as_ref()?;
    match clock.time(Phase::Cache, || b.runtime.block_on(repo.get(key))) {
        Ok(Some(c)) => Some(from(c, b.opts.cache_repo.clone())),
        Ok(None) => None,
        Err(e) => {
            b.progress.line(&format!(
                "warning: cache repository lookup failed, building the step: {}",
                crate::error_chain::chain_line(&e)
            ));
            None
        }
    }
}

/// Records a step's layer in the local cache and (in the background) the cache repository; a
/// cache that cannot be written slows the next build down and never fails this one.
fn store(
    b: &Build<'_>,
    key: &CacheKey,
    layer: Option<&Layer>,
    created_by: &str,
    clock: &StepClock,
) {
    let cached = CachedStep {
        layer: layer.cloned(),
        created_by: created_by.to_string(),
    };
    if let Some(local) = &b.local {
        // A cache entry that cannot be written costs the next build time, not this one.
        let _ = local.put(key, &cached);
    }
    if let Some(repo) = &b.repo {
        let (repo, key, store) = (repo.clone(), key.clone(), b.layers.store.clone());
        let progress = b.progress.clone();
        b.background.cache_write(clock, async move {
            // A cache that cannot be written slows the next build down; it does not fail this one.
            if let Err(e) = repo.put(&key, &cached, &store).await {
                progress.line(&format!(
                    "warning: could not write to the cache repository: {}",
                    crate::error_chain::chain_line(&e)
                ));
            }
        });
    }
}
