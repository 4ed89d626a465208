//! The plan as text, for `kiln build --dry-run`: what the front end understood.

use super::{Base, Plan};
use std::fmt::Write;

/// Renders the stages the target needs and their steps; `file` names the Dockerfile.
pub fn render(plan: &Plan, file: &str) -> String {
    let mut out = String::new();
    let target = &plan.stages[plan.target];
    let _ = writeln!(
        out,
        "{file}: {} stage{}, target {} (stage {})",
        plan.stages.len(),
        if plan.stages.len() == 1 { "" } else { "s" },
        target.label(),
        target.index
    );
    let skipped: Vec<String> = plan
        .stages
        .iter()
        .filter(|s| !plan.order.contains(&s.index))
        .map(|s| s.label())
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "not needed for the target: {}", skipped.join(", "));
    }
    for &i in &plan.order {
        let s = &plan.stages[i];
        let base = match &s.base {
            Base::Scratch => "scratch".to_string(),
            Base::Image(r) => format!("image {r}"),
            Base::Stage(b) => format!("stage {}", plan.stages[*b].label()),
        };
        let _ = write!(
            out,
            "\nstage {} (#{}, line {}) from {base}",
            s.label(),
            s.index,
            s.line
        );
        if let Some(p) = &s.platform {
            let _ = write!(out, " for {p}");
        }
        let wave = plan.waves.get(&i).copied().unwrap_or(0);
        let needs: Vec<String> = s.needs.iter().map(|n| plan.stages[*n].label()).collect();
        if needs.is_empty() {
            let _ = writeln!(out, ", wave {wave}");
        } else {
            let _ = writeln!(out, ", wave {wave}, after {}", needs.join(", "));
        }
        for img in &s.images {
            let _ = writeln!(out, "  reads from image {img}");
        }
        for step in &s.steps {
            let lines = if step.end_line > step.start_line {
                format!("{}-{}", step.start_line, step.end_line)
            } else {
                step.start_line.to_string()
            };
            let from_base = if step.trigger {
                " (ONBUILD of the base)"
            } else {
                ""
            };
            let _ = writeln!(out, "  {lines:>7}  {}{from_base}", step.instruction);
        }
    }
    for w in &plan.warnings {
        match w.line {
            Some(l) => {
                let _ = writeln!(out, "warning: {file}:{l}: {}", w.message);
            }
            None => {
                let _ = writeln!(out, "warning: {}", w.message);
            }
        }
    }
    out
}
