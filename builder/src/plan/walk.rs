//! Walks the instructions once, stage by stage, tracking ARG and ENV scope.

use super::args::{predefined, BuildArgs};
use super::expand_step::Expander;
use super::graph;
use super::validate::validate;
use super::{
    Base, BaseConfig, BaseImages, Options, Plan, PlanError, Platform, Stage, Step, Warning,
};
use crate::dockerfile::instructions::{self, Instruction, Located};
use crate::dockerfile::DockerfileError;
use crate::dockerfile::{parser, Dockerfile};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Plans the build of `df` (read from `file`, for messages).
pub fn plan(
    df: &Dockerfile,
    file: &Path,
    opts: &Options,
    bases: &dyn BaseImages,
) -> Result<Plan, PlanError> {
    let at = |line: usize, message: String| DockerfileError {
        file: file.to_path_buf(),
        line,
        message,
    };
    let first_from = df
        .instructions
        .iter()
        .position(|l| matches!(l.instruction, Instruction::From(_)));
    let Some(first_from) = first_from else {
        let line = df.instructions.first().map_or(1, |l| l.start_line);
        return Err(at(
            line,
            "no FROM instruction: a Dockerfile needs at least one stage".into(),
        )
        .into());
    };
    if let Some(l) = df.instructions[..first_from]
        .iter()
        .find(|l| !matches!(l.instruction, Instruction::Arg(_)))
    {
        return Err(at(
            l.start_line,
            format!(
                "{} before the first FROM: only ARG may come before FROM",
                l.instruction.keyword()
            ),
        )
        .into());
    }

    let mut p = Planner {
        file,
        escape: df.escape,
        build_args: BuildArgs::new(opts.build_args.clone()),
        predefined: predefined(&opts.target_platform, &opts.build_platform),
        meta: BTreeMap::new(),
        global_decls: BTreeSet::new(),
        warnings: Vec::new(),
        stages: Vec::new(),
        refs: Vec::new(),
        errors: BTreeMap::new(),
    };
    p.meta = p.predefined.clone();
    for l in &df.instructions[..first_from] {
        p.global_arg(l)?;
    }
    // Names of every ARG a stage declares, to tell "used before declared" from "never declared".
    let chunks = split_stages(&df.instructions[first_from..]);
    for chunk in &chunks {
        p.stage(chunk, bases);
    }

    let (target, names) = p.target(opts)?;
    let needs: Vec<Vec<(usize, usize)>> = p.refs.iter().map(|r| resolve(r, &names)).collect();
    for (stage, n) in p.stages.iter_mut().zip(&needs) {
        stage.needs = n
            .iter()
            .map(|(s, _)| *s)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        stage.images = p.refs[stage.index]
            .iter()
            .filter(|(r, _)| resolve_one(r, &names).is_none())
            .map(|(r, _)| r.clone())
            .collect();
    }
    let graph::Order { order, waves } =
        graph::order(&p.stages, &needs, target).map_err(|(line, msg)| at(line, msg))?;
    if let Some(e) = order.iter().find_map(|i| p.errors.get(i)) {
        return Err(e.clone().into());
    }
    for name in p.build_args.unconsumed() {
        p.warnings.push(Warning {
            line: None,
            message: format!(
                "build argument {name:?} was given but no ARG in the built stages declares it"
            ),
        });
    }
    Ok(Plan {
        proxies: p.build_args.proxies(),
        stages: p.stages,
        order,
        waves,
        target,
        warnings: p.warnings,
    })
}

struct Planner<'a> {
    file: &'a Path,
    escape: char,
    build_args: BuildArgs,
    predefined: BTreeMap<String, String>,
    /// Global scope: predefined ARGs plus ARGs before the first FROM that have a value.
    meta: BTreeMap<String, String>,
    global_decls: BTreeSet<String>,
    warnings: Vec<Warning>,
    stages: Vec<Stage>,
    /// Per stage: the `--from` words (expanded) with their lines.
    refs: Vec<Vec<(String, usize)>>,
    /// Per stage: the first error, reported only if the stage is built (BuildKit does not
    /// dispatch stages the target does not need).
    errors: BTreeMap<usize, DockerfileError>,
}

/// ARG and ENV in scope inside one stage.
struct Scope {
    args: BTreeMap<String, String>,
    /// Names declared so far, in the order of their first declaration.
    declared: Vec<String>,
    /// Every name the stage declares anywhere.
    all_declared: BTreeSet<String>,
    env: Vec<(String, String)>,
    env_known: bool,
    /// ARGs with a value declared after the last ENV of the same name: they win over it.
    args_over_env: BTreeSet<String>,
}

impl Scope {
    /// What expansion sees: ARGs, overridden by an ENV of the same name set after the ARG.
    fn lookup_env(&self) -> BTreeMap<String, String> {
        let mut m = self.args.clone();
        m.extend(self.env.iter().cloned());
        for name in &self.args_over_env {
            if let Some(v) = self.args.get(name) {
                m.insert(name.clone(), v.clone());
            }
        }
        m
    }
}

impl Planner<'_> {
    fn at(&self, line: usize, message: String) -> DockerfileError {
        DockerfileError {
            file: self.file.to_path_buf(),
            line,
            message,
        }
    }

    fn global_arg(&mut self, l: &Located) -> Result<(), PlanError> {
        let Instruction::Arg(decls) = &l.instruction else {
            return Ok(());
        };
        for d in decls {
            let value =
                match self.build_args.take(&d.name) {
                    Some(v) => Some(v),
                    None => match &d.default {
                        Some(def) => {
                            let meta = self.meta.clone();
                            let mut ex = Expander::new(self.escape, &meta);
                            Some(ex.word(def).map_err(|m| {
                                self.at(l.start_line, format!("ARG {}: {m}", d.name))
                            })?)
                        }
                        None => None,
                    },
                };
            self.global_decls.insert(d.name.clone());
            match value {
                Some(v) => {
                    self.meta.insert(d.name.clone(), v);
                }
                None => {
                    // `ARG TARGETOS` before FROM keeps the predefined value; any other bare ARG
                    // is declared without a value.
                    if !self.predefined.contains_key(&d.name) {
                        self.meta.remove(&d.name);
                    }
                }
            }
        }
        Ok(())
    }

    fn stage(&mut self, chunk: &[Located], bases: &dyn BaseImages) {
        let index = self.stages.len();
        let from_l = &chunk[0];
        let Instruction::From(from) = &from_l.instruction else {
            unreachable!("split_stages starts at FROM")
        };
        let mut errors: Vec<DockerfileError> = Vec::new();
        let meta = self.meta.clone();
        let mut ex = Expander::new(self.escape, &meta);
        let image = ex
            .word(&from.image)
            .map_err(|m| self.at(from_l.start_line, format!("FROM: {m}")));
        let platform = from.platform.as_ref().map(|p| {
            ex.word(p)
                .and_then(|p| Platform::parse(&p))
                .map_err(|m| self.at(from_l.start_line, format!("FROM --platform: {m}")))
        });
        let unmatched = ex.matches.unmatched.clone();
        for name in unmatched {
            if !self.predefined.contains_key(&name) && !self.global_decls.contains(&name) {
                let declared_later = chunk.iter().any(|l| declares(l, &name));
                if declared_later {
                    errors.push(self.at(
                        from_l.start_line,
                        format!(
                            "FROM uses ${name}, but FROM only sees ARGs declared before the first FROM; \
                             move `ARG {name}` above it"
                        ),
                    ));
                } else {
                    self.warnings.push(Warning {
                        line: Some(from_l.start_line),
                        message: format!(
                            "FROM uses ${name}, which no ARG before the first FROM declares"
                        ),
                    });
                }
            }
        }
        let image = image.unwrap_or_else(|e| {
            errors.push(e);
            String::new()
        });
        let platform = match platform.transpose() {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                None
            }
        };
        if image.is_empty() && errors.is_empty() {
            errors.push(self.at(
                from_l.start_line,
                format!(
                    "FROM: the base name ({:?}) expands to an empty string",
                    from.image
                ),
            ));
        }
        let by_name = self
            .stages
            .iter()
            .find(|s| s.name.as_deref() == Some(&image.to_ascii_lowercase()));
        // A stage built FROM another starts with that stage's ARGs in scope, as BuildKit's
        // dispatch state inherits its base's build args.
        let inherited = by_name
            .map(|s| (s.args.clone(), s.declared_args.clone()))
            .unwrap_or_default();
        let (base, base_cfg) = if image.eq_ignore_ascii_case("scratch") {
            (Base::Scratch, Some(BaseConfig::scratch()))
        } else if let Some(s) = by_name {
            (
                Base::Stage(s.index),
                Some(BaseConfig {
                    env: s.env.clone(),
                    onbuild: s.onbuild.clone(),
                }),
            )
        } else {
            let plat = platform.clone().unwrap_or_else(|| {
                Platform::parse(&meta["TARGETPLATFORM"]).unwrap_or_else(|_| Platform::host())
            });
            (Base::Image(image.clone()), bases.config(&image, &plat))
        };
        let mut scope = Scope {
            args: inherited.0,
            declared: inherited.1,
            all_declared: chunk
                .iter()
                .filter_map(|l| match &l.instruction {
                    Instruction::Arg(d) => Some(d.iter().map(|d| d.name.clone())),
                    _ => None,
                })
                .flatten()
                .collect(),
            env: base_cfg.as_ref().map(|c| c.env.clone()).unwrap_or_default(),
            env_known: base_cfg.is_some(),
            args_over_env: BTreeSet::new(),
        };
        let mut stage = Stage {
            index,
            name: from.name.clone(),
            base: base.clone(),
            platform,
            line: from_l.start_line,
            steps: Vec::new(),
            needs: Vec::new(),
            images: Vec::new(),
            env: Vec::new(),
            onbuild: Vec::new(),
            args: BTreeMap::new(),
            declared_args: Vec::new(),
        };
        if let Base::Stage(b) = base {
            self.refs.push(vec![(b.to_string(), from_l.start_line)]);
        } else {
            self.refs.push(Vec::new());
        }
        let triggers = base_cfg.map(|c| c.onbuild).unwrap_or_default();
        let mut todo: Vec<(Located, bool)> = Vec::new();
        for t in &triggers {
            match trigger(t, self.escape) {
                Ok(mut l) => {
                    l.start_line = from_l.start_line;
                    l.end_line = from_l.start_line;
                    todo.push((l, true));
                }
                Err(m) => errors.push(self.at(
                    from_l.start_line,
                    format!("ONBUILD trigger {t:?} of the base: {m}"),
                )),
            }
        }
        todo.extend(chunk[1..].iter().map(|l| (l.clone(), false)));
        for (l, is_trigger) in todo {
            match self.step(&l, is_trigger, &mut scope, &mut stage) {
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        }
        stage.env = scope.env;
        stage.args = scope.args;
        stage.declared_args = scope.declared;
        if let Some(e) = errors.into_iter().next() {
            self.errors.insert(index, e);
        }
        self.stages.push(stage);
    }

    fn step(
        &mut self,
        l: &Located,
        trigger: bool,
        scope: &mut Scope,
        stage: &mut Stage,
    ) -> Result<(), DockerfileError> {
        let line = l.start_line;
        let env = scope.lookup_env();
        let mut ex = Expander::new(self.escape, &env);
        let instruction = match &l.instruction {
            Instruction::Arg(decls) => {
                let mut out = Vec::new();
                for d in decls {
                    // BuildKit expands an ARG's name as well as its value.
                    let name = ex
                        .word(&d.name)
                        .map_err(|m| self.at(line, format!("ARG {}: {m}", d.name)))?;
                    if name.is_empty() {
                        return Err(self.at(
                            line,
                            format!("ARG: the name {:?} expands to an empty string", d.name),
                        ));
                    }
                    let value = match self.build_args.take(&name) {
                        Some(v) => Some(v),
                        None => match &d.default {
                            Some(def) => Some(
                                ex.word(def)
                                    .map_err(|m| self.at(line, format!("ARG {name}: {m}")))?,
                            ),
                            None => self.meta.get(&name).cloned(),
                        },
                    };
                    if !scope.declared.contains(&name) {
                        scope.declared.push(name.clone());
                    }
                    if let Some(v) = &value {
                        scope.args.insert(name.clone(), v.clone());
                        scope.args_over_env.insert(name.clone());
                    }
                    out.push(instructions::ArgDecl {
                        name,
                        default: value,
                    });
                }
                Instruction::Arg(out)
            }
            other => ex
                .instruction(other)
                .map_err(|m| self.at(line, format!("{}: {m}", other.keyword())))?,
        };
        validate(&instruction).map_err(|m| self.at(line, m))?;
        for name in &ex.matches.unmatched {
            if scope.all_declared.contains(name) && !scope.declared.contains(name) {
                return Err(self.at(
                    line,
                    format!("${name} is used before `ARG {name}` declares it in this stage"),
                ));
            }
            if self.global_decls.contains(name) && !scope.declared.contains(name) {
                return Err(self.at(
                    line,
                    format!(
                        "${name} is declared by an ARG before the first FROM, which only FROM lines see; \
                         add `ARG {name}` inside this stage to use it here"
                    ),
                ));
            }
            if scope.env_known && !self.predefined.contains_key(name) {
                self.warnings.push(Warning {
                    line: Some(line),
                    message: format!("${name} is not defined (no ARG or ENV sets it)"),
                });
            }
        }
        match &instruction {
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    scope.env.retain(|(ek, _)| ek != k);
                    scope.env.push((k.clone(), v.clone()));
                    scope.args_over_env.remove(k);
                }
            }
            Instruction::Onbuild(t) => stage.onbuild.push(t.clone()),
            Instruction::Copy(c) => {
                if let Some(f) = &c.from {
                    self.refs[stage.index].push((f.clone(), line));
                }
            }
            Instruction::Run(r) => {
                for f in r.mounts.iter().filter_map(|m| m.from.as_ref()) {
                    self.refs[stage.index].push((f.clone(), line));
                }
            }
            _ => {}
        }
        stage.steps.push(Step {
            instruction,
            start_line: l.start_line,
            end_line: l.end_line,
            trigger,
            args: scope
                .args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            args_over_env: scope.args_over_env.iter().cloned().collect(),
            declared_args: scope.declared.clone(),
        });
        Ok(())
    }

    fn target(&self, opts: &Options) -> Result<(usize, BTreeMap<String, usize>), PlanError> {
        let names: BTreeMap<String, usize> = self
            .stages
            .iter()
            .filter_map(|s| s.name.clone().map(|n| (n, s.index)))
            .collect();
        let target = match &opts.target {
            None => self.stages.len() - 1,
            Some(t) => {
                *names
                    .get(&t.to_ascii_lowercase())
                    .ok_or_else(|| PlanError::UnknownTarget {
                        target: t.clone(),
                        file: self.file.display().to_string(),
                        stages: if names.is_empty() {
                            "none has a name; name one with FROM image AS name".into()
                        } else {
                            names.keys().cloned().collect::<Vec<_>>().join(", ")
                        },
                    })?
            }
        };
        Ok((target, names))
    }
}

fn declares(l: &Located, name: &str) -> bool {
    matches!(&l.instruction, Instruction::Arg(d) if d.iter().any(|d| d.name == name))
}

/// Parses one ONBUILD trigger as a one-line Dockerfile.
fn trigger(text: &str, escape: char) -> Result<Located, String> {
    let src = if escape == '\\' {
        text.to_string()
    } else {
        format!("# escape={escape}\n{text}")
    };
    let parsed = parser::parse(&src).map_err(|e| e.message)?;
    let node = parsed.nodes.first().ok_or("empty trigger")?;
    match node.keyword.as_str() {
        "onbuild" | "from" | "maintainer" => Err(format!(
            "{} isn't allowed as an ONBUILD trigger",
            node.keyword.to_uppercase()
        )),
        _ => instructions::from_node(node),
    }
}

fn split_stages(ins: &[Located]) -> Vec<&[Located]> {
    let starts: Vec<usize> = ins
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l.instruction, Instruction::From(_)))
        .map(|(i, _)| i)
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| &ins[s..starts.get(k + 1).copied().unwrap_or(ins.len())])
        .collect()
}

/// A `--from` word names a stage by name or index; anything else is an image.
fn resolve_one(word: &str, names: &BTreeMap<String, usize>) -> Option<usize> {
    names
        .get(&word.to_ascii_lowercase())
        .copied()
        .or_else(|| word.parse::<usize>().ok())
}

fn resolve(refs: &[(String, usize)], names: &BTreeMap<String, usize>) -> Vec<(usize, usize)> {
    refs.iter()
        .filter_map(|(w, line)| resolve_one(w, names).map(|s| (s, *line)))
        .collect()
}
