//! `--chmod` values: octal (`755`, `0644`, `4755`) or chmod(1)-style symbolic clauses
//! (`u+x`, `go=rX`, `a-w,u+s`), which BuildKit's Dockerfile frontend accepts since 1.14. A
//! symbolic mode is applied to each entry's own source mode; `X` adds execute only to
//! directories and to files with some execute bit already set.

use super::CopyError;

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChmodSpec {
    /// An absolute mode (`0o7777` bits).
    Octal(u32),
    /// Clauses applied in order to the entry's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` clause of a symbolic mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    who: u32,
    ops: Vec<(char, Perm)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perm {
    Bits {
        rwx: u32,
        big_x: bool,
        s: bool,
        t: bool,
    },
    Copy(char),
}

const U: u32 = 0o4700;
const G: u32 = 0o2070;
const O: u32 = 0o1007;

impl ChmodSpec {
    /// Parses a `--chmod` value.
    ///
    /// # Errors
    /// [`CopyError::BadChmod`] for anything else.
    pub fn parse(value: &str) -> Result<Self, CopyError> {
        let bad = |reason: &str| CopyError::BadChmod {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        if value.is_empty() {
            return Err(bad("empty"));
        }
        if value.bytes().all(|b| b.is_ascii_digit()) {
            let m = u32::from_str_radix(value, 8).map_err(|_| bad("not an octal number"))?;
            if m > 0o7777 {
                return Err(bad("more than 4 octal digits of mode"));
            }
            return Ok(ChmodSpec::Octal(m));
        }
        let mut clauses = Vec::new();
        for part in value.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                match c {
                    'u' => who |= U,
                    'g' => who |= G,
                    'o' => who |= O,
                    'a' => who |= U | G | O,
                    _ => break,
                }
                chars.next();
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(bad(&format!("unexpected {op:?} where +, - or = belongs")));
                }
                let mut perm = Perm::Bits {
                    rwx: 0,
                    big_x: false,
                    s: false,
                    t: false,
                };
                while let Some(&c) = chars.peek() {
                    if matches!(c, '+' | '-' | '=') {
                        break;
                    }
                    chars.next();
                    perm = match (perm, c) {
                        (Perm::Bits { rwx, big_x, s, t }, 'r') => Perm::Bits {
                            rwx: rwx | 4,
                            big_x,
                            s,
                            t,
                        },
                        (Perm::Bits { rwx, big_x, s, t }, 'w') => Perm::Bits {
                            rwx: rwx | 2,
                            big_x,
                            s,
                            t,
                        },
                        (Perm::Bits { rwx, big_x, s, t }, 'x') => Perm::Bits {
                            rwx: rwx | 1,
                            big_x,
                            s,
                            t,
                        },
                        (Perm::Bits { rwx, s, t, .. }, 'X') => Perm::Bits {
                            rwx,
                            big_x: true,
                            s,
                            t,
                        },
                        (Perm::Bits { rwx, big_x, t, .. }, 's') => Perm::Bits {
                            rwx,
                            big_x,
                            s: true,
                            t,
                        },
                        (Perm::Bits { rwx, big_x, s, .. }, 't') => Perm::Bits {
                            rwx,
                            big_x,
                            s,
                            t: true,
                        },
                        (
                            Perm::Bits {
                                rwx: 0,
                                big_x: false,
                                s: false,
                                t: false,
                            },
                            c @ ('u' | 'g' | 'o'),
                        ) => Perm::Copy(c),
                        _ => return Err(bad(&format!("unexpected {c:?} in permissions"))),
                    };
                }
                ops.push((op, perm));
            }
            if ops.is_empty() {
                return Err(bad("a clause needs +, - or ="));
            }
            clauses.push(Clause { who, ops });
        }
        Ok(ChmodSpec::Symbolic(clauses))
    }

    /// The mode an entry with source mode `mode` gets (`is_dir` for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ChmodSpec::Octal(m) => *m,
            ChmodSpec::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for c in clauses {
                    // No `who` means all, less the umask; BuildKit applies no umask.
                    let who = if c.who == 0 { U | G | O } else { c.who };
                    for (op, perm) in &c.ops {
                        let bits = match perm {
                            Perm::Bits { rwx, big_x, s, t } => {
                                let mut r = *rwx;
                                if *big_x && (is_dir || m & 0o111 != 0) {
                                    r |= 1;
                                }
                                let mut b = (r << 6 | r << 3 | r) & who & 0o777;
                                if *s {
                                    b |= who & 0o6000;
                                }
                                if *t {
                                    b |= who & 0o1000;
                                }
                                b
                            }
                            Perm::Copy(from) => {
                                let r = match from {
                                    'u' => (m >> 6) & 7,
                                    'g' => (m >> 3) & 7,
                                    _ => m & 7,
                                };
                                (r << 6 | r << 3 | r) & who & 0o777
                            }
                        };
                        m = match op {
                            '+' => m | bits,
                            '-' => m & !bits,
                            // `=` clears the named classes' rwx (and their s/t), then sets.
                            _ => (m & !(who & 0o7777)) | bits,
                        };
                    }
                }
                m
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(v: &str, mode: u32, dir: bool) -> u32 {
        ChmodSpec::parse(v).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(ChmodSpec::parse("755").unwrap(), ChmodSpec::Octal(0o755));
        assert_eq!(ChmodSpec::parse("04755").unwrap(), ChmodSpec::Octal(0o4755));
        assert!(ChmodSpec::parse("8").is_err());
        assert!(ChmodSpec::parse("17777").is_err());
        assert!(ChmodSpec::parse("u+q").is_err());
        assert!(ChmodSpec::parse("").is_err());
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("a=rX", 0o600, false), 0o444);
        assert_eq!(sym("a=rX", 0o700, false), 0o555);
        assert_eq!(sym("a=rX", 0o600, true), 0o555);
        assert_eq!(sym("u=rwx,g=rx,o=", 0o777, false), 0o750);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("g=u", 0o740, false), 0o770);
        assert_eq!(sym("o+t", 0o777, true), 0o1777);
    }
}
