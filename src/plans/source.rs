//! Where plans come from: a gzipped tarball of a plans repository, a plain HTTP base URL that
//! serves `plans.json` and `<game>/plan.json`, or a local directory (`file://` or a path).

use std::fmt;
use std::path::PathBuf;

use reqwest::Url;

/// A configured plan source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanSource {
    /// A `.tar.gz`/`.tgz` archive of a plans repository; its single top folder is stripped.
    Tarball(Url),
    /// A base URL (always ending in `/`) serving `plans.json`, `<game>/plan.json` and
    /// `<game>/actions/<name>`.
    Http(Url),
    /// A plans repository on this machine.
    Local(PathBuf),
}

impl PlanSource {
    /// Reads a source from its configured form. Only `http`, `https` and `file` URLs are
    /// accepted; anything without a scheme is a path.
    pub fn parse(s: &str) -> Result<PlanSource, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("the plan source is empty".into());
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let url = Url::parse(s).map_err(|e| format!("{s} is not a valid URL: {e}"))?;
            return match scheme.to_ascii_lowercase().as_str() {
                "file" => url
                    .to_file_path()
                    .map(PlanSource::Local)
                    .map_err(|()| format!("{s} is not a local file URL")),
                "http" | "https" => {
                    let path = url.path().to_ascii_lowercase();
                    if path.ends_with(".tar.gz") || path.ends_with(".tgz") {
                        Ok(PlanSource::Tarball(url))
                    } else {
                        let mut base = url;
                        if !base.path().ends_with('/') {
                            let p = format!("{}/", base.path());
                            base.set_path(&p);
                        }
                        Ok(PlanSource::Http(base))
                    }
                }
                other => Err(format!(
                    "{s}: unsupported scheme {other}; use http(s)://, file:// or a path"
                )),
            };
        }
        Ok(PlanSource::Local(PathBuf::from(s)))
    }
}

impl fmt::Display for PlanSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanSource::Tarball(u) | PlanSource::Http(u) => write!(f, "{u}"),
            PlanSource::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_form() {
        assert!(matches!(
            PlanSource::parse(crate::config::DEFAULT_PLANS_URL),
            Ok(PlanSource::Tarball(_))
        ));
        assert_eq!(
            PlanSource::parse("http://127.0.0.1:8080/plans")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080/plans/"
        );
        assert_eq!(
            PlanSource::parse("file:///srv/plans").unwrap(),
            PlanSource::Local("/srv/plans".into())
        );
        assert_eq!(
            PlanSource::parse("./plans").unwrap(),
            PlanSource::Local("./plans".into())
        );
        assert!(PlanSource::parse("ftp://x/plans.tar.gz").is_err());
        assert!(PlanSource::parse(" ").is_err());
    }
}
