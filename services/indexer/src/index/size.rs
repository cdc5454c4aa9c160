//! The index's size on disk, for its stats. Separate because it looks at the file system, not
//! at tantivy.

use std::path::Path;

/// The total size of the files in `dir` (tantivy keeps its files in one flat directory).
pub(super) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
