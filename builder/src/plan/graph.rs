//! The stage graph: which stages the target needs, in what order, and which can run together.

use super::Stage;
use std::collections::BTreeMap;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    Open,
    Done,
}

/// The stages a target needs, dependencies first, with each one's wave (the longest chain of
/// dependencies below it).
pub struct Order {
    /// Stage indices, dependencies before the stages that need them.
    pub order: Vec<usize>,
    /// Wave of each stage in `order`.
    pub waves: BTreeMap<usize, usize>,
}

/// A graph problem at a line: `(line, message)`.
pub type GraphError = (usize, String);

/// Orders what `target` needs; `needs[s]` lists stage `s`'s `(stage, line)` edges.
pub fn order(
    stages: &[Stage],
    needs: &[Vec<(usize, usize)>],
    target: usize,
) -> Result<Order, GraphError> {
    for edges in needs {
        if let Some((bad, line)) = edges.iter().find(|(d, _)| *d >= stages.len()) {
            return Err((
                *line,
                format!(
                    "--from={bad} names no stage: the Dockerfile has {} stages (0 to {})",
                    stages.len(),
                    stages.len() - 1
                ),
            ));
        }
    }
    let mut marks = vec![Mark::New; stages.len()];
    let mut out = Vec::new();
    let mut waves = BTreeMap::new();
    let mut path = Vec::new();
    visit(
        stages, needs, target, &mut marks, &mut out, &mut waves, &mut path,
    )?;
    Ok(Order { order: out, waves })
}

fn visit(
    stages: &[Stage],
    needs: &[Vec<(usize, usize)>],
    s: usize,
    marks: &mut [Mark],
    out: &mut Vec<usize>,
    waves: &mut BTreeMap<usize, usize>,
    path: &mut Vec<(usize, usize)>,
) -> Result<usize, GraphError> {
    match marks[s] {
        Mark::Done => return Ok(waves[&s]),
        Mark::Open => {
            let start = path.iter().position(|(st, _)| *st == s).unwrap_or(0);
            let cycle: Vec<String> = path[start..]
                .iter()
                .map(|(st, _)| stages[*st].label())
                .chain(std::iter::once(stages[s].label()))
                .collect();
            let line = path.last().map_or(stages[s].line, |(_, l)| *l);
            return Err((
                line,
                format!("circular dependency between stages: {}", cycle.join(" → ")),
            ));
        }
        Mark::New => {}
    }
    marks[s] = Mark::Open;
    let mut edges = needs[s].clone();
    edges.sort();
    let mut wave = 0;
    for (d, line) in edges {
        path.push((s, line));
        let w = visit(stages, needs, d, marks, out, waves, path)?;
        path.pop();
        wave = wave.max(w + 1);
    }
    marks[s] = Mark::Done;
    waves.insert(s, wave);
    out.push(s);
    Ok(wave)
}
