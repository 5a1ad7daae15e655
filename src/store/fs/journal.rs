//! The intent journal's file on a file system: `docker/registry/v2/.regsweep-journal.json`,
//! written atomically (its encoding is the shared `store::journal`).

use std::fs;

use anyhow::{Context, Result, bail};

use crate::core::plan::RepoPlan;
use crate::model::journal::Journal;
use crate::store::fs::layout::Layout;
use crate::store::journal::{MAX_SIZE, decode, encode};

/// Reads the journal an unfinished run left, if any.
pub fn read(layout: &Layout) -> Result<Option<Journal>> {
    let path = layout.journal_file();
    let meta = match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read journal {}", path.display()));
        }
        Ok(m) if !m.is_file() || m.len() > MAX_SIZE => {
            bail!("{} is not a regsweep journal", path.display())
        }
        Ok(m) => m,
    };
    let bytes = fs::read(&path).with_context(|| format!("cannot read journal {}", path.display()))?;
    let mut journal = decode(&bytes, &path.display().to_string())?;
    journal.written = meta.modified().ok();
    Ok(Some(journal))
}

/// Removes the journal once its run has finished.
pub fn remove(layout: &Layout) -> Result<()> {
    let path = layout.journal_file();
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove journal {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Before the first deletion of a plan, writes its journal atomically (a temporary file, fsync,
/// rename, fsync of the folder); nothing when [`encode`] says so.
pub fn write(layout: &Layout, earlier: &Journal, repos: &[RepoPlan]) -> Result<()> {
    let Some(bytes) = encode(earlier, repos) else { return Ok(()) };
    let path = layout.journal_file();
    let tmp = path.with_extension("json.tmp");
    let written = fs::File::create(&tmp)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()
        })
        .and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp); // no empty .tmp left behind (a full disk)
        return Err(e).with_context(|| format!("cannot write journal {}", path.display()));
    }
    fs::File::open(layout.v2())
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", layout.v2().display()))?;
    Ok(())
}
