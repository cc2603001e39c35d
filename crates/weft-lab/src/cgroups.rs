//! The lab's own cgroups (dockerd's and the Kubernetes nodes' parents).

use std::path::{Path, PathBuf};

/// Removes cgroup `parent` (a path below each hierarchy's root, with or
/// without a leading `/`) and anything left in it from every hierarchy;
/// cgroups are directories that `rmdir` removes once empty.
pub(crate) fn remove_tree(parent: &str) {
    let parent = parent.trim_start_matches('/');
    if parent.is_empty() {
        return; // never a hierarchy's root
    }
    fn deepest_first(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    deepest_first(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
    roots.extend(hierarchies.flatten().map(|e| e.path()));
    for root in roots {
        let dir = root.join(parent);
        if dir.is_dir() {
            deepest_first(&dir);
        }
    }
}
