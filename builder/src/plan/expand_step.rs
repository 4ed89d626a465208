//! Which words of which instruction are expanded, as BuildKit does it: RUN, CMD, ENTRYPOINT,
//! SHELL, HEALTHCHECK, MAINTAINER and ONBUILD keep their text (a shell or a later build reads it);
//! everything else expands its arguments and flags with the ARGs and ENV in scope.

use crate::dockerfile::expand::{Env, Lexer, Matches};
use crate::dockerfile::instructions::{Copy, Instruction, Run, Source};

/// Expands words against one environment, collecting which variables were read.
pub struct Expander<'a> {
    lexer: Lexer,
    env: &'a dyn Env,
    /// Every variable read so far.
    pub matches: Matches,
}

impl<'a> Expander<'a> {
    /// An expander with the Dockerfile's escape character.
    pub fn new(escape: char, env: &'a dyn Env) -> Self {
        Expander {
            lexer: Lexer::new(escape),
            env,
            matches: Matches::default(),
        }
    }

    /// Expands one word.
    pub fn word(&mut self, w: &str) -> Result<String, String> {
        let (out, m) = self
            .lexer
            .process_word_with_matches(w, self.env)
            .map_err(|e| e.message)?;
        self.matches.matched.extend(m.matched);
        self.matches.unmatched.extend(m.unmatched);
        Ok(out)
    }

    fn opt(&mut self, w: &Option<String>) -> Result<Option<String>, String> {
        w.as_deref().map(|w| self.word(w)).transpose()
    }

    fn all(&mut self, ws: &[String]) -> Result<Vec<String>, String> {
        ws.iter().map(|w| self.word(w)).collect()
    }

    /// Expands a heredoc body the way BuildKit does: quotes and escapes stay as written.
    fn heredoc(&mut self, body: &str) -> Result<String, String> {
        let lexer = Lexer {
            raw_quotes: true,
            raw_escapes: true,
            ..self.lexer
        };
        let (out, m) = lexer
            .process_word_with_matches(body, self.env)
            .map_err(|e| e.message)?;
        self.matches.matched.extend(m.matched);
        self.matches.unmatched.extend(m.unmatched);
        Ok(out)
    }

    /// The instruction with its expandable words expanded.
    pub fn instruction(&mut self, ins: &Instruction) -> Result<Instruction, String> {
        Ok(match ins {
            Instruction::Env(pairs) => Instruction::Env(self.pairs(pairs)?),
            Instruction::Label(pairs) => Instruction::Label(self.pairs(pairs)?),
            Instruction::Copy(c) => Instruction::Copy(self.copy(c)?),
            Instruction::Run(r) => Instruction::Run(self.run(r)?),
            Instruction::Expose(ports) => Instruction::Expose(self.all(ports)?),
            Instruction::Volume(paths) => Instruction::Volume(self.all(paths)?),
            Instruction::User(u) => Instruction::User(self.word(u)?),
            Instruction::Workdir(w) => Instruction::Workdir(self.word(w)?),
            Instruction::Stopsignal(s) => Instruction::Stopsignal(self.word(s)?),
            other => other.clone(),
        })
    }

    fn pairs(&mut self, pairs: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
        pairs
            .iter()
            .map(|(k, v)| Ok((self.word(k)?, self.word(v)?)))
            .collect()
    }

    fn copy(&mut self, c: &Copy) -> Result<Copy, String> {
        let sources = c
            .sources
            .iter()
            .map(|s| {
                Ok(match s {
                    Source::Path(p) => Source::Path(self.word(p)?),
                    Source::Heredoc(h) if h.expand => {
                        let mut h = h.clone();
                        h.content = self.heredoc(&h.content)?;
                        Source::Heredoc(h)
                    }
                    Source::Heredoc(h) => Source::Heredoc(h.clone()),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Copy {
            sources,
            dest: self.word(&c.dest)?,
            from: self.opt(&c.from)?,
            chown: self.opt(&c.chown)?,
            chmod: self.opt(&c.chmod)?,
            exclude: self.all(&c.exclude)?,
            checksum: self.opt(&c.checksum)?,
            ..c.clone()
        })
    }

    fn run(&mut self, r: &Run) -> Result<Run, String> {
        let mut r = r.clone();
        for m in &mut r.mounts {
            m.target = self.word(&m.target)?;
            m.source = self.opt(&m.source)?;
            m.from = self.opt(&m.from)?;
            m.id = self.opt(&m.id)?;
        }
        Ok(r)
    }
}
