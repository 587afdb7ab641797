//! A small command-line parser: `--name value`, `--name=value` and boolean flags. A
//! subcommand reads the options it knows; [`Args::finish`] then rejects anything left over,
//! so a misspelt option is an error rather than silently ignored.

use std::str::FromStr;
use std::time::Duration;

/// Options that take no value.
pub const FLAGS: &[&str] = &["--no-pin", "--always-wake", "--help", "-h"];

/// Parsed options of one subcommand.
#[derive(Debug, Default)]
pub struct Args {
    items: Vec<(String, Option<String>)>,
    used: Vec<bool>,
}

impl Args {
    /// Parses `args` (the part after the subcommand name).
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut items = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if !a.starts_with('-') {
                return Err(format!("unexpected argument '{a}' (options start with --)"));
            }
            if let Some((k, v)) = a.split_once('=') {
                items.push((k.to_string(), Some(v.to_string())));
            } else if FLAGS.contains(&a.as_str()) {
                items.push((a.clone(), None));
            } else {
                let v = it
                    .next()
                    .ok_or_else(|| format!("option {a} needs a value"))?;
                items.push((a.clone(), Some(v.clone())));
            }
        }
        let used = vec![false; items.len()];
        Ok(Self { items, used })
    }

    fn take(&mut self, name: &str) -> Option<Option<String>> {
        let i = self.items.iter().rposition(|(k, _)| k == name)?;
        for (j, (k, _)) in self.items.iter().enumerate() {
            if k == name {
                self.used[j] = true;
            }
        }
        Some(self.items[i].1.clone())
    }

    /// Whether boolean flag `name` was given.
    pub fn flag(&mut self, name: &str) -> bool {
        self.take(name).is_some()
    }

    /// The value of `name` parsed as `T`, if given.
    pub fn opt<T: FromStr>(&mut self, name: &str) -> Result<Option<T>, String> {
        match self.take(name) {
            None => Ok(None),
            Some(None) => Err(format!("option {name} needs a value")),
            Some(Some(v)) => v
                .parse()
                .map(Some)
                .map_err(|_| format!("option {name}: cannot parse '{v}'")),
        }
    }

    /// The value of `name` parsed as `T`, or `default`.
    pub fn get<T: FromStr>(&mut self, name: &str, default: T) -> Result<T, String> {
        Ok(self.opt(name)?.unwrap_or(default))
    }

    /// A duration given in (fractional) seconds, or `default`.
    pub fn secs(&mut self, name: &str, default: f64) -> Result<Duration, String> {
        let s: f64 = self.get(name, default)?;
        Duration::try_from_secs_f64(s)
            .map_err(|_| format!("option {name}: '{s}' is not a valid number of seconds"))
    }

    /// Fails naming the first option no getter asked for.
    pub fn finish(self) -> Result<(), String> {
        match self.items.iter().zip(&self.used).find(|(_, u)| !**u) {
            Some(((k, _), _)) => Err(format!("unknown option {k} (see --help)")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let v: Vec<String> = ["--samples", "5", "--no-pin", "--size=32"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut a = Args::parse(&v).unwrap();
        assert_eq!(a.get("--samples", 1usize), Ok(5));
        assert_eq!(a.get("--size", 1usize), Ok(32));
        assert!(a.flag("--no-pin"));
        assert_eq!(a.get("--warmup", 7usize), Ok(7));
        assert!(a.finish().is_ok());
        let mut b = Args::parse(&["--bogus".to_string(), "1".to_string()]).unwrap();
        assert!(b.get::<u32>("--x", 0).is_ok());
        assert!(b.finish().is_err());
        assert!(Args::parse(&["--samples".to_string()]).is_err());
    }
}
