//! Exclude globs on paths relative to the server directory: `*` matches within one path
//! segment, `?` one character, `**` any number of whole segments. A pattern that matches a
//! directory excludes everything under it.

/// A set of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Globs {
    patterns: Vec<Vec<String>>,
}

impl Globs {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Globs {
        Globs {
            patterns: patterns
                .iter()
                .map(|p| {
                    p.as_ref()
                        .trim_matches('/')
                        .split('/')
                        .filter(|s| !s.is_empty() && *s != ".")
                        .map(str::to_owned)
                        .collect()
                })
                .filter(|p: &Vec<String>| !p.is_empty())
                .collect(),
        }
    }

    /// True when `rel` (a `/`-separated relative path) is excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        let segs: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
        self.patterns.iter().any(|p| match_segs(p, &segs))
    }
}

fn match_segs(pat: &[String], path: &[&str]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|i| match_segs(rest, &path[i..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => {
                match_seg(first.as_bytes(), p.as_bytes()) && match_segs(rest, prest)
            }
            None => false,
        },
    }
}

fn match_seg(pat: &[u8], s: &[u8]) -> bool {
    match pat.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_seg(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_seg(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_seg(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_segments() {
        let g = Globs::new(&["data/cache", "*.log", "**/tmp/*.bin", "user/?.db"]);
        assert!(g.excludes("data/cache"));
        assert!(!g.excludes("data/cache2"));
        assert!(g.excludes("x.log"));
        assert!(!g.excludes("logs/x.log"), "* stays in one segment");
        assert!(g.excludes("a/b/tmp/x.bin"));
        assert!(g.excludes("tmp/x.bin"));
        assert!(g.excludes("user/a.db"));
        assert!(!g.excludes("user/ab.db"));
        assert!(!Globs::default().excludes("anything"));
    }
}
