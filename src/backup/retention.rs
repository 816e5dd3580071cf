//! Retention: which backups of a server a policy keeps. The newest backup is always kept; the
//! others are kept when any rule keeps them: the last `keep_last`, the newest of each of the last
//! `keep_daily` days (UTC) that have backups, the newest of each of the last `keep_weekly` ISO
//! weeks that have backups. Everything else goes.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

/// A server's retention policy. A rule left out keeps nothing by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
}

impl Policy {
    /// True when no rule is set.
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none() && self.keep_daily.is_none() && self.keep_weekly.is_none()
    }

    /// Of `backups` (id and time, any order), the ids the policy does not keep.
    pub fn expired(&self, backups: &[(String, DateTime<Utc>)]) -> Vec<String> {
        let mut all: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        if let Some(first) = all.first() {
            keep.insert(&first.0);
        }
        for b in all.iter().take(self.keep_last.unwrap_or(0) as usize) {
            keep.insert(&b.0);
        }
        let mut bucket = |n: Option<u32>, key: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
            let mut seen = BTreeSet::new();
            for b in &all {
                if seen.len() >= n.unwrap_or(0) as usize {
                    break;
                }
                if seen.insert(key(&b.1)) {
                    keep.insert(&b.0);
                }
            }
        };
        bucket(self.keep_daily, &|t| (t.year(), t.ordinal()));
        bucket(self.keep_weekly, &|t| {
            let w = t.iso_week();
            (w.year(), w.week())
        });
        all.iter()
            .filter(|b| !keep.contains(b.0.as_str()))
            .map(|b| b.0.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> (String, DateTime<Utc>) {
        let t = Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
        (format!("{d:02}-{h:02}"), t)
    }

    #[test]
    fn rules_keep_their_union_and_always_the_newest() {
        // 2026-03-02 is a Monday.
        let b: Vec<_> = [(2, 1), (2, 5), (3, 1), (4, 9), (9, 1), (9, 2), (10, 3)]
            .iter()
            .map(|(d, h)| at(*d, *h))
            .collect();
        let p = Policy {
            keep_last: Some(2),
            ..Policy::default()
        };
        let mut e = p.expired(&b);
        e.sort();
        assert_eq!(e, ["02-01", "02-05", "03-01", "04-09", "09-01"]);
        let p = Policy {
            keep_daily: Some(3),
            ..Policy::default()
        };
        let mut e = p.expired(&b);
        e.sort();
        assert_eq!(e, ["02-01", "02-05", "03-01", "09-01"]);
        let p = Policy {
            keep_last: Some(1),
            keep_weekly: Some(2),
            ..Policy::default()
        };
        let mut e = p.expired(&b);
        e.sort();
        assert_eq!(e, ["02-01", "02-05", "03-01", "09-01", "09-02"]);
        assert_eq!(Policy::default().expired(&b).len(), 6, "the newest stays");
    }
}
