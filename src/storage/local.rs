//! The local-directory driver: objects are files under a root directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{ObjectWriter, Storage, StorageError};
use crate::durable;

/// Marker in the names of files being written; what carries it after a crash is garbage.
const PARTIAL_MARK: &str = ".partial-";

/// Creates `dir` and its missing parents with mode 0700.
fn private_dirs(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Objects as files under `root`, written durably (temp → fsync → rename → fsync dir).
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A store rooted at `root`, which is created if missing.
    pub fn new(root: PathBuf) -> Result<LocalStorage, StorageError> {
        private_dirs(&root).map_err(|source| StorageError::Io {
            op: "create directory",
            key: root.display().to_string(),
            source,
        })?;
        Ok(LocalStorage { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let ok = !key.is_empty()
            && !key.starts_with('/')
            && key
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !key.contains(PARTIAL_MARK);
        if !ok {
            return Err(StorageError::BadKey(key.to_string()));
        }
        Ok(self.root.join(key))
    }
}

fn io_err<'a>(op: &'static str, key: &'a str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        key: key.to_string(),
        source,
    }
}

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local directory {}", self.root.display())
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        private_dirs(&dir).map_err(io_err("create directory for", key))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let suffix = crate::secret::random_hex(6).map_err(io_err("create", key))?;
        let tmp = dir.join(format!(".{name}{PARTIAL_MARK}{suffix}"));
        // Dumps hold all the data: readable by the service's user alone.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", key))?;
        Ok(Box::new(LocalWriter {
            key: key.to_string(),
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            tmp,
            path,
            dir,
        }))
    }

    fn open_at(&self, key: &str, offset: u64) -> Result<Box<dyn Read + Send>, StorageError> {
        let path = self.path(key)?;
        match File::open(&path) {
            Ok(mut f) => {
                if offset > 0 {
                    f.seek(SeekFrom::Start(offset))
                        .map_err(io_err("seek in", key))?;
                }
                Ok(Box::new(f))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(io_err("open", key)(e)),
        }
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.path(key)?) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", key)(e)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {
                let dir = path.parent().unwrap_or(&self.root);
                durable::fsync_dir(dir).map_err(io_err("delete", key))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("delete", key)(e)),
        }
    }

    fn collect_partial(&self) -> Result<usize, StorageError> {
        fn walk(dir: &Path, removed: &mut usize) -> io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let ft = entry.file_type()?;
                if ft.is_dir() {
                    walk(&entry.path(), removed)?;
                } else if entry.file_name().to_string_lossy().contains(PARTIAL_MARK) {
                    fs::remove_file(entry.path())?;
                    *removed += 1;
                }
            }
            Ok(())
        }
        let mut removed = 0;
        walk(&self.root, &mut removed).map_err(io_err("clean up", "partial objects"))?;
        Ok(removed)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        fn walk(root: &Path, dir: &Path, keys: &mut Vec<String>) -> io::Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    walk(root, &path, keys)?;
                } else if !entry.file_name().to_string_lossy().contains(PARTIAL_MARK)
                    && let Ok(rel) = path.strip_prefix(root)
                {
                    keys.push(rel.to_string_lossy().into_owned());
                }
            }
            Ok(())
        }
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut keys = Vec::new();
        walk(&self.root, &dir, &mut keys).map_err(io_err("list", prefix))?;
        keys.sort();
        Ok(keys)
    }
}

/// A file being written under a temporary name.
struct LocalWriter {
    key: String,
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(f) => f.write(buf),
            None => Err(io::Error::other("object already finished")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let key = self.key.clone();
        let writer = self
            .file
            .take()
            .ok_or_else(|| StorageError::BadKey(key.clone()))?;
        let file = writer
            .into_inner()
            .map_err(|e| io_err("write", &key)(e.into_error()))?;
        file.sync_all().map_err(io_err("sync", &key))?;
        let size = file.metadata().map_err(io_err("inspect", &key))?.len();
        drop(file);
        fs::rename(&self.tmp, &self.path).map_err(io_err("rename", &key))?;
        durable::fsync_dir(&self.dir).map_err(io_err("sync directory of", &key))?;
        Ok(size)
    }

    fn abort(mut self: Box<Self>) {
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_appear_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().to_path_buf()).unwrap();
        let mut w = s.create("backups/b001.dump").unwrap();
        w.write_all(b"hello").unwrap();
        assert_eq!(s.size("backups/b001.dump").unwrap(), None);
        assert_eq!(w.commit().unwrap(), 5);
        let mut text = String::new();
        s.open("backups/b001.dump")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello");
        let mut tail = String::new();
        s.open_at("backups/b001.dump", 3)
            .unwrap()
            .read_to_string(&mut tail)
            .unwrap();
        assert_eq!(tail, "lo");

        let mut w = s.create("backups/b002.dump").unwrap();
        w.write_all(b"partial").unwrap();
        w.abort();
        let mut w = s.create("backups/b003.dump").unwrap();
        w.write_all(b"dropped").unwrap();
        drop(w);
        let names: Vec<_> = fs::read_dir(dir.path().join("backups"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b001.dump"]);

        s.delete("backups/b001.dump").unwrap();
        s.delete("backups/b001.dump").unwrap();
        assert!(matches!(
            s.open("backups/b001.dump"),
            Err(StorageError::NotFound(_))
        ));
    }

    #[test]
    fn collects_leftovers_of_a_crash_and_rejects_bad_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().to_path_buf()).unwrap();
        let w = s.create("backups/b001.dump").unwrap();
        std::mem::forget(w); // as if the process died mid-write
        assert_eq!(s.collect_partial().unwrap(), 1);
        for bad in ["", "/etc/passwd", "../x", "a//b", "a/./b"] {
            assert!(
                matches!(s.create(bad), Err(StorageError::BadKey(_))),
                "{bad}"
            );
        }
    }
}
