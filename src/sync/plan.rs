//! The pure sync plan: from the local snapshot, the pod's snapshot and (when known) the last state both
//! sides agreed on, the ordered list of changes that makes the pod match local without losing anything
//! the pod has on its own.
//!
//! Rules (one-way, local → pod, three-way aware):
//! - local has it, pod lacks it → create it;
//! - both have it and differ → update it; if the pod's copy changed since the last agreed state (or
//!   there is no agreed state and the pod's copy is newer), the pod's copy is first renamed aside to
//!   `<path>.kodama-conflict-<mtime>` so no edit made in the pod is lost;
//! - local lacks it, pod has it → delete it only when the agreed state had it and the pod's copy is
//!   unchanged since (a local deletion). Paths that only ever existed in the pod are left alone, and a
//!   directory is removed only when nothing of the pod's own remains inside it;
//! - a deletion paired with a creation of the same size and mtime becomes a rename.
//!
//! Order: type-change removals, mkdirs (parents first), renames, writes/symlinks/chmods, deletions
//! (children first).
//!
//! May import: sync::scan.

use crate::sync::scan::{subtree, Entry, Kind, Snapshot};
use std::collections::{BTreeSet, HashMap};

/// One change to apply in the pod. Paths are relative to the pod's sync root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Mkdir {
        path: String,
    },
    /// Send the local file's content (read at apply time) with this metadata.
    Write {
        path: String,
        entry: Entry,
    },
    Chmod {
        path: String,
        exec: bool,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// Remove a file or symlink, or an empty directory.
    Delete {
        path: String,
        kind: Kind,
    },
    Rename {
        from: String,
        to: String,
    },
}

impl Change {
    /// The path the change is about (the destination for a rename).
    pub fn path(&self) -> &str {
        match self {
            Change::Mkdir { path }
            | Change::Write { path, .. }
            | Change::Chmod { path, .. }
            | Change::Symlink { path, .. }
            | Change::Delete { path, .. } => path,
            Change::Rename { to, .. } => to,
        }
    }
}

/// The name a pod-side copy is moved to before a conflicting local version replaces it.
pub fn conflict_name(path: &str, mtime: i64) -> String {
    format!("{path}.kodama-conflict-{mtime}")
}

/// True when the local file `l` differs, to the nanosecond, from the state both sides last agreed
/// on (`k`). A pod listing that keeps whole seconds (files written by `tar`) cannot show a same-size
/// edit made within the second of the last sync; the agreed state can.
fn changed_since_agreed(l: &Entry, k: Option<&Entry>) -> bool {
    match k {
        Some(k) if l.kind == Kind::File && k.kind == Kind::File => {
            l.size != k.size
                || l.mtime != k.mtime
                || (l.mtime_nsec != 0 && k.mtime_nsec != 0 && l.mtime_nsec != k.mtime_nsec)
        }
        _ => false,
    }
}

/// Plan the changes that make `remote` match `local`. `known` is the last state both sides agreed on
/// (None after a fresh start: then nothing is deleted in the pod).
pub fn plan(local: &Snapshot, remote: &Snapshot, known: Option<&Snapshot>) -> Vec<Change> {
    let mut pre_deletes: Vec<Change> = Vec::new();
    let mut backups: Vec<Change> = Vec::new();
    let mut mkdirs = Vec::new();
    let mut updates = Vec::new();
    let mut creates: Vec<(String, Entry)> = Vec::new();
    let mut deletes: BTreeSet<String> = BTreeSet::new();
    // Remote paths that vanish before the creates (type changes), so the dir check below knows them.
    let mut removed_early: BTreeSet<String> = BTreeSet::new();

    for (path, l) in local {
        let edited = changed_since_agreed(l, known.and_then(|k| k.get(path)));
        match remote.get(path) {
            None => creates.push((path.clone(), l.clone())),
            Some(r) if l.same(r) && !edited => {}
            Some(r) => {
                let pod_changed = match known.and_then(|k| k.get(path)) {
                    Some(k) => !r.same(k),
                    None => known.is_some() || r.mtime > l.mtime,
                };
                if l.kind != r.kind {
                    if pod_changed || r.kind == Kind::Dir {
                        // Keep the pod's version (a directory may hold the pod's own files).
                        backups.push(Change::Rename {
                            from: path.clone(),
                            to: conflict_name(path, r.mtime),
                        });
                    } else {
                        pre_deletes.push(Change::Delete {
                            path: path.clone(),
                            kind: r.kind,
                        });
                    }
                    removed_early.insert(path.clone());
                    creates.push((path.clone(), l.clone()));
                    continue;
                }
                match l.kind {
                    Kind::Dir => {}
                    Kind::Symlink => updates.push(Change::Symlink {
                        path: path.clone(),
                        target: l.target.clone().unwrap_or_default(),
                    }),
                    Kind::File => {
                        if l.same_content(r) && !pod_changed && !edited {
                            updates.push(Change::Chmod {
                                path: path.clone(),
                                exec: l.exec,
                            });
                        } else {
                            if pod_changed && !l.same_content(r) {
                                backups.push(Change::Rename {
                                    from: path.clone(),
                                    to: conflict_name(path, r.mtime),
                                });
                            }
                            updates.push(Change::Write {
                                path: path.clone(),
                                entry: l.clone(),
                            });
                        }
                    }
                }
            }
        }
    }

    if let Some(k) = known {
        for (path, r) in remote {
            if local.contains_key(path) {
                continue;
            }
            if let Some(ke) = k.get(path) {
                if r.same(ke) {
                    deletes.insert(path.clone());
                }
            }
        }
        // A directory goes only if everything the pod has inside it goes too.
        let keep: Vec<String> = deletes
            .iter()
            .filter(|d| remote.get(*d).is_some_and(|e| e.kind == Kind::Dir))
            .filter(|d| {
                subtree(remote, d)
                    .filter(|(p, _)| p.as_str() != d.as_str())
                    .any(|(p, _)| !deletes.contains(p) && !removed_early.contains(p))
            })
            .cloned()
            .collect();
        for d in keep {
            deletes.remove(&d);
        }
    }

    // Renames: a deleted file and a created file with the same size and exact mtime.
    let mut renames = Vec::new();
    {
        let mut by_sig: HashMap<(u64, i64, u32, bool), Vec<&String>> = HashMap::new();
        for d in &deletes {
            if let Some(e) = remote.get(d) {
                if e.kind == Kind::File && e.size > 0 {
                    by_sig
                        .entry((e.size, e.mtime, e.mtime_nsec, e.exec))
                        .or_default()
                        .push(d);
                }
            }
        }
        let mut create_sigs: HashMap<(u64, i64, u32, bool), usize> = HashMap::new();
        for (_, l) in &creates {
            if l.kind == Kind::File {
                *create_sigs
                    .entry((l.size, l.mtime, l.mtime_nsec, l.exec))
                    .or_default() += 1;
            }
        }
        let mut used = BTreeSet::new();
        creates.retain(|(path, l)| {
            if l.kind != Kind::File || removed_early.contains(path) {
                return true;
            }
            let sig = (l.size, l.mtime, l.mtime_nsec, l.exec);
            match by_sig.get(&sig) {
                Some(froms) if froms.len() == 1 && create_sigs.get(&sig) == Some(&1) => {
                    let from = froms[0].clone();
                    if used.insert(from.clone()) {
                        renames.push(Change::Rename {
                            from,
                            to: path.clone(),
                        });
                        false
                    } else {
                        true
                    }
                }
                _ => true,
            }
        });
        for u in &used {
            deletes.remove(u);
        }
    }

    let mut writes = Vec::new();
    for (path, l) in creates {
        match l.kind {
            Kind::Dir => mkdirs.push(Change::Mkdir { path }),
            Kind::File => writes.push(Change::Write { path, entry: l }),
            Kind::Symlink => writes.push(Change::Symlink {
                target: l.target.clone().unwrap_or_default(),
                path,
            }),
        }
    }
    mkdirs.sort_by(|a, b| a.path().cmp(b.path()));
    writes.extend(updates);
    writes.sort_by(|a, b| a.path().cmp(b.path()));

    let mut out = Vec::new();
    out.extend(backups);
    out.extend(pre_deletes);
    out.extend(mkdirs);
    out.extend(renames);
    out.extend(writes);
    for d in deletes.iter().rev() {
        let kind = remote.get(d).map(|e| e.kind).unwrap_or(Kind::File);
        out.push(Change::Delete {
            path: d.clone(),
            kind,
        });
    }
    out
}

/// Thresholds of the mass-deletion guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeletionGuard {
    /// Stop when more than this fraction of the synced files would be deleted...
    pub max_fraction: f64,
    /// ...and at least this many files were synced.
    pub min_files: usize,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        DeletionGuard {
            max_fraction: 0.5,
            min_files: 20,
        }
    }
}

impl DeletionGuard {
    /// `None` when deleting `deleted` of `total` synced files (with `local_files` left locally) is
    /// fine, else the reason to stop. The whole tree gone (no local files left, something to delete)
    /// always stops.
    pub fn check(&self, deleted: usize, total: usize, local_files: usize) -> Option<String> {
        if deleted == 0 {
            return None;
        }
        if local_files == 0 && total > 0 {
            return Some(format!(
                "every synced file is gone from the local directory ({deleted} deletions pending)"
            ));
        }
        if total >= self.min_files && (deleted as f64) > self.max_fraction * total as f64 {
            return Some(format!(
                "{deleted} of {total} synced files ({:.0}%) were deleted locally, more than the \
                 {:.0}% safety limit",
                100.0 * deleted as f64 / total as f64,
                100.0 * self.max_fraction
            ));
        }
        None
    }
}

/// Number of deletions of files and symlinks in a plan.
pub fn count_file_deletes(changes: &[Change]) -> usize {
    changes
        .iter()
        .filter(|c| matches!(c, Change::Delete { kind, .. } if *kind != Kind::Dir))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(size: u64, mtime: i64) -> Entry {
        Entry {
            kind: Kind::File,
            size,
            mtime,
            mtime_nsec: 5,
            exec: false,
            target: None,
        }
    }
    fn l(t: &str) -> Entry {
        Entry {
            kind: Kind::Symlink,
            size: 0,
            mtime: 1,
            mtime_nsec: 0,
            exec: false,
            target: Some(t.into()),
        }
    }
    fn snap(items: &[(&str, Entry)]) -> Snapshot {
        items
            .iter()
            .map(|(p, e)| (p.to_string(), e.clone()))
            .collect()
    }

    #[test]
    fn a_same_size_edit_within_the_second_of_the_last_sync_is_sent() {
        // The pod's copy came from tar (whole seconds); the agreed state keeps nanoseconds.
        let mut pod = f(3, 100);
        pod.mtime_nsec = 0;
        let mut agreed = f(3, 100);
        agreed.mtime_nsec = 2;
        let edited = f(3, 100); // nanoseconds 5: edited after the sync, same second, same size
        let changes = plan(
            &snap(&[("a", edited.clone())]),
            &snap(&[("a", pod.clone())]),
            Some(&snap(&[("a", agreed)])),
        );
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, Change::Write { path, .. } if path == "a")),
            "{changes:?}"
        );
        // Unchanged since the agreed state: nothing to send.
        let changes = plan(
            &snap(&[("a", edited.clone())]),
            &snap(&[("a", pod)]),
            Some(&snap(&[("a", edited)])),
        );
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn creates_are_ordered_parents_first_and_symlinks_kept() {
        let local = snap(&[
            ("a", Entry::dir()),
            ("a/b", Entry::dir()),
            ("a/b/x.txt", f(3, 10)),
            ("link", l("../outside")),
        ]);
        let p = plan(&local, &Snapshot::new(), None);
        assert_eq!(
            p,
            vec![
                Change::Mkdir { path: "a".into() },
                Change::Mkdir { path: "a/b".into() },
                Change::Write {
                    path: "a/b/x.txt".into(),
                    entry: f(3, 10)
                },
                Change::Symlink {
                    path: "link".into(),
                    target: "../outside".into()
                },
            ]
        );
    }

    #[test]
    fn deletes_only_what_was_agreed_and_children_first() {
        let known = snap(&[("d", Entry::dir()), ("d/a", f(1, 1)), ("d/b", f(1, 2))]);
        let local = Snapshot::new();
        // The pod also has its own file d/own that was never synced: d must stay.
        let mut remote = known.clone();
        remote.insert("d/own".into(), f(9, 9));
        let p = plan(&local, &remote, Some(&known));
        assert_eq!(
            p,
            vec![
                Change::Delete {
                    path: "d/b".into(),
                    kind: Kind::File
                },
                Change::Delete {
                    path: "d/a".into(),
                    kind: Kind::File
                },
            ]
        );
        // Without the pod's own file the directory goes too, after its children.
        let p = plan(&local, &known, Some(&known));
        assert_eq!(
            p.last(),
            Some(&Change::Delete {
                path: "d".into(),
                kind: Kind::Dir
            })
        );
        // Without an agreed state nothing is deleted.
        assert!(plan(&local, &known, None).is_empty());
    }

    #[test]
    fn pod_edits_are_kept_aside_on_conflict() {
        let known = snap(&[("x", f(1, 10))]);
        let remote = snap(&[("x", f(2, 20))]); // edited in the pod
        let local = snap(&[("x", f(3, 30))]); // and edited locally
        let p = plan(&local, &remote, Some(&known));
        assert_eq!(
            p,
            vec![
                Change::Rename {
                    from: "x".into(),
                    to: "x.kodama-conflict-20".into()
                },
                Change::Write {
                    path: "x".into(),
                    entry: f(3, 30)
                }
            ]
        );
        // Pod edited, local unchanged since the agreed state: nothing is deleted, the pod's file is
        // not in the way of anything, and local wins only with a backup.
        let local = snap(&[("x", f(1, 10))]);
        let p = plan(&local, &remote, Some(&known));
        assert!(matches!(&p[0], Change::Rename { to, .. } if to == "x.kodama-conflict-20"));
        // A pod-side deletion candidate that the pod changed is kept.
        let p = plan(&Snapshot::new(), &remote, Some(&known));
        assert!(p.is_empty());
    }

    #[test]
    fn plain_update_chmod_and_symlink_retarget() {
        let known = snap(&[("x", f(1, 10)), ("s", l("a"))]);
        let mut xe = f(1, 10);
        xe.exec = true;
        let local = snap(&[("x", xe), ("s", l("b"))]);
        let p = plan(&local, &known, Some(&known));
        assert_eq!(
            p,
            vec![
                Change::Symlink {
                    path: "s".into(),
                    target: "b".into()
                },
                Change::Chmod {
                    path: "x".into(),
                    exec: true
                },
            ]
        );
    }

    #[test]
    fn rename_is_detected_by_size_and_mtime() {
        let known = snap(&[("old.txt", f(100, 7)), ("other", f(5, 7))]);
        let local = snap(&[("new.txt", f(100, 7)), ("other", f(5, 7))]);
        let p = plan(&local, &known, Some(&known));
        assert_eq!(
            p,
            vec![Change::Rename {
                from: "old.txt".into(),
                to: "new.txt".into()
            }]
        );
    }

    #[test]
    fn type_change_removes_first() {
        let known = snap(&[("p", f(1, 1))]);
        let local = snap(&[("p", Entry::dir()), ("p/c", f(2, 2))]);
        let p = plan(&local, &known, Some(&known));
        assert_eq!(
            p,
            vec![
                Change::Delete {
                    path: "p".into(),
                    kind: Kind::File
                },
                Change::Mkdir { path: "p".into() },
                Change::Write {
                    path: "p/c".into(),
                    entry: f(2, 2)
                },
            ]
        );
    }

    #[test]
    fn guard_table() {
        let g = DeletionGuard::default();
        let cases = [
            (0, 100, 100, false),
            (10, 100, 90, false),
            (50, 100, 50, false),
            (51, 100, 49, true),
            (15, 19, 4, false), // small trees are not guarded by the fraction
            (3, 3, 0, true),    // the whole tree gone
            (1, 1, 0, true),
        ];
        for (deleted, total, left, stop) in cases {
            assert_eq!(
                g.check(deleted, total, left).is_some(),
                stop,
                "{deleted} of {total}, {left} left"
            );
        }
    }
}
