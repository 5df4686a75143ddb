//! The helpers every section of a mapping file is checked with: errors that point at a key,
//! unique names, references resolved after all files are read, and the value rules (names,
//! namespaces, paths, globs, durations).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::{Error, Origin};

/// The mapping file being read, so errors can name it with line and column.
#[derive(Clone, Copy)]
pub(super) struct Source<'a> {
    pub path: &'a Path,
}

impl Source<'_> {
    pub(crate) fn at(self, loc: Location) -> Origin {
        Origin {
            path: self.path.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
        }
    }

    pub(crate) fn invalid(self, loc: Location, message: impl Into<String>) -> Error {
        self.at(loc).invalid(message)
    }

    /// A checked value, or the check's message at the value's position.
    pub(crate) fn check<T>(
        self,
        value: &Spanned<String>,
        rule: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Error> {
        rule(&value.value).map_err(|m| self.invalid(value.referenced, m))
    }
}

impl Origin {
    pub(super) fn invalid(self, message: impl Into<String>) -> Error {
        Error::Invalid {
            path: self.path,
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// The names of one kind of entry (repositories, syncs, …) across all files.
pub(super) struct Names {
    what: &'static str,
    seen: BTreeMap<String, Origin>,
}

impl Names {
    pub(crate) fn new(what: &'static str) -> Self {
        Self {
            what,
            seen: BTreeMap::new(),
        }
    }

    /// Takes a name: it must be a valid name, and not defined before.
    pub(crate) fn claim(
        &mut self,
        src: Source<'_>,
        name: &Spanned<String>,
    ) -> Result<String, Error> {
        let what = self.what;
        src.check(name, |n| check_name(what, n))?;
        if let Some(first) = self
            .seen
            .insert(name.value.clone(), src.at(name.referenced))
        {
            return Err(src.invalid(
                name.referenced,
                format!("{what} {:?} is already defined at {first}", name.value),
            ));
        }
        Ok(name.value.clone())
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.seen.contains_key(name)
    }

    pub(crate) fn known(&self) -> Vec<&str> {
        self.seen.keys().map(String::as_str).collect()
    }
}

/// References to names of another section, checked once every file is read.
#[derive(Default)]
pub(super) struct References(Vec<(String, Origin)>);

impl References {
    pub(crate) fn add(&mut self, src: Source<'_>, name: &Spanned<String>) {
        self.0.push((name.value.clone(), src.at(name.referenced)));
    }

    /// Every reference names a known entry; else an error at the first that does not.
    pub(crate) fn resolve(
        self,
        names: &Names,
        unknown: impl Fn(&str, &Names) -> String,
    ) -> Result<(), Error> {
        match self.0.into_iter().find(|(name, _)| !names.contains(name)) {
            Some((name, origin)) => Err(origin.invalid(unknown(&name, names))),
            None => Ok(()),
        }
    }
}

/// An optional namespace, which must be a DNS label.
pub(super) fn namespace(
    src: Source<'_>,
    ns: Option<Spanned<String>>,
) -> Result<Option<String>, Error> {
    ns.map(|ns| src.check(&ns, |n| check_name("namespace", n).map(|()| n.to_owned())))
        .transpose()
}

/// Names end up in object names (`berth-sync-<name>`), so they must be DNS labels.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 52
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?} must be lowercase letters, digits and '-', at most 52 characters"
        ))
    }
}

pub(super) fn check_glob(pattern: &str) -> Result<(), String> {
    globset::Glob::new(pattern)
        .map(drop)
        .map_err(|e| format!("invalid glob {pattern:?}: {e}"))
}

/// A repository-relative path: no leading `./` or `/`, no trailing `/`, never above the root.
pub(super) fn normalize_path(path: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("path {path:?} must stay inside the repository")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Parses `0`, `90s`, `5m`, `1h30m`, `7d`, `250ms`, with checked arithmetic.
///
/// # Errors
/// A value that is not a sequence of number+unit pairs, or one too long to represent.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?} (examples: 30s, 5m, 1h30m, 7d, 0)");
    let too_long = || format!("duration {text:?} is too long");
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
        let d = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => seconds(1),
            "m" => seconds(60),
            "h" => seconds(3600),
            "d" => seconds(86400),
            _ => return Err(bad()),
        };
        total = d.and_then(|d| total.checked_add(d)).ok_or_else(too_long)?;
    }
    Ok(total)
}

/// The shortest poll interval: more often would hammer the git server.
pub(super) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// The longest poll interval.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// A poll interval: `0` (webhooks and file events only), or between 1s and 24h.
pub(super) fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        Ok(d)
    } else if d < MIN_INTERVAL {
        Err(format!("interval {text:?} must be 0 or at least 1s"))
    } else {
        Err(format!("interval {text:?} must be at most 24h"))
    }
}
